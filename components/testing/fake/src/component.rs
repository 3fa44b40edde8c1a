//! The wasm glue: the configuration from the host, [`Fake`] over the
//! host's capabilities, and one test-only switch ([`FLAKY_SWITCH`]).

use crate::Fake;
use compute_bridge_sdk::WasmHost;
use compute_bridge_sdk::prelude::*;

struct FakeBackend;

fn fake() -> Result<Fake<'static, WasmHost>> {
    Ok(Fake::new(config::load()?, &WasmHost))
}

/// **Test only.** The live-swap rollback test needs a component that passes
/// the bridge's pre-swap check and fails afterwards, while the component it
/// replaces, under the very same `[backends.config]`, keeps working; so the
/// difference cannot live in the config. It lives in these bytes instead:
/// as built, the last one is `0` and the fake behaves as documented;
/// `compute_bridge_testkit::flaky_fake` writes a copy of the `.wasm` with
/// it set to `1` (found by [`crate::FLAKY_MARKER`]), and that copy's
/// `status` fails from 2 s after its first `status` call (the time of that
/// call is kept in the host's cache, the only state a call can leave).
#[used]
static FLAKY_SWITCH: [u8; crate::FLAKY_MARKER.len() + 1] = {
    let mut b = [b'0'; crate::FLAKY_MARKER.len() + 1];
    let mut k = 0;
    while k < crate::FLAKY_MARKER.len() {
        b[k] = crate::FLAKY_MARKER[k];
        k += 1;
    }
    b
};

/// Seconds after its first `status` call from which a flaky copy fails.
const FLAKY_AFTER_SECONDS: u64 = 2;

/// Whether this is a flaky copy whose `status` fails now.
fn flaky_status_fails() -> bool {
    // black_box: read the byte from the module's memory, not a folded
    // constant, so that the patched copy sees its `1`.
    let switch = std::hint::black_box(&FLAKY_SWITCH);
    if switch[crate::FLAKY_MARKER.len()] != b'1' {
        return false;
    }
    const KEY: &str = "test-flaky-first-status";
    let now = WasmHost.now();
    let first = cache::get_string(KEY)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            cache::set(KEY, now.to_string().as_bytes(), 3600);
            now
        });
    now >= first + FLAKY_AFTER_SECONDS
}

impl Backend for FakeBackend {
    fn capabilities() -> Result<Offer> {
        Ok(fake()?.offer())
    }
    fn can_satisfy(g: &GrantSpec) -> bool {
        fake().is_ok_and(|f| f.can_satisfy(g))
    }
    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        fake()?.provision(&g, &w)
    }
    fn status(i: Instance) -> Result<InstanceState> {
        if flaky_status_fails() {
            return Err(BackendError::Internal(
                "test-only flaky fake: status fails 2 s after its first status call".into(),
            ));
        }
        fake()?.status(&i)
    }
    fn usage(i: Instance) -> Result<ResourceUsage> {
        fake()?.usage(&i)
    }
    fn terminate(i: Instance) -> Result<()> {
        fake()?.terminate(&i)
    }
    fn list_instances() -> Result<Vec<Instance>> {
        fake()?.list_instances()
    }
}

compute_bridge_sdk::export_backend!(FakeBackend);
