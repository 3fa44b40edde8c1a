//! The per-call sandbox: fresh instances, and hostile components contained.

use compute_bridge::backend::Backend;
use compute_bridge_testkit::components;

use crate::support::*;

#[tokio::test]
async fn a_global_set_in_one_call_is_gone_in_the_next() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml("hostile", components::HOSTILE, ""),
    );
    let (_rt, backends) = load(&cfg);
    // The hostile component counts its calls in a static and reports the
    // count: a fresh instance per call must always report 1.
    for _ in 0..3 {
        let caps = backends[0].capabilities().await.unwrap();
        assert_eq!(caps.max_cpu_millicores, 1);
    }
}
