//! The per-call sandbox: fresh instances, and hostile components contained
//! while the host goes on serving other calls.

use std::sync::Arc;
use std::time::Duration;

use compute_bridge::backend::{Backend, BackendError};
use compute_bridge::runtime::ComponentBackend;
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
        assert_eq!(caps.regions, ["hostile-1"]);
    }
}

/// A hostile backend (`attack`, extra host config) beside a healthy fake.
fn hostile_and_fake(
    attack_cfg: &str,
    host_extra: &str,
) -> (tempfile::TempDir, Vec<Arc<ComponentBackend>>) {
    let state = tempfile::tempdir().unwrap();
    let text = [
        backend_toml(
            "hostile",
            components::HOSTILE,
            &format!("memory_limit_mib = 16\ncall_timeout_sec = 1\n{host_extra}\n[backends.config]\n{attack_cfg}\n"),
        ),
        backend_toml("fake", components::FAKE, ""),
    ]
    .concat();
    let cfg = config(state.path(), &text);
    let (rt, backends) = load(&cfg);
    std::mem::forget(rt); // keep the engine's ticker for the test's life
    (state, backends)
}

/// Run the attack in `provision` while the fake keeps answering; return the
/// hostile call's error.
async fn attack(attack_cfg: &str, host_extra: &str) -> String {
    let (_state, b) = hostile_and_fake(attack_cfg, host_extra);
    let (hostile, fake) = (b[0].clone(), b[1].clone());
    let h = tokio::spawn(async move { hostile.provision(&grant("h"), &workload()).await });
    // While the attack runs, the other backend is served.
    for i in 0..5 {
        fake.provision(&grant(&format!("ok{i}")), &workload())
            .await
            .expect("the healthy backend keeps working during the attack");
    }
    let err = h.await.unwrap().expect_err("the attack must fail");
    // And after it, too.
    fake.capabilities().await.expect("healthy after the attack");
    match err {
        BackendError::Internal(m) | BackendError::Config(m) | BackendError::Transient(m) => m,
        other => panic!("unexpected error kind: {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let msg = attack("attack = \"loop\"", "").await;
    assert!(
        msg.contains("exceeded its 1s deadline in provision"),
        "{msg}"
    );
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_cap() {
    let msg = attack("attack = \"memory\"", "").await;
    assert!(
        msg.contains("trapped in provision") && msg.contains("memory"),
        "{msg}"
    );
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack_cleanly() {
    let msg = attack("attack = \"recursion\"", "").await;
    assert!(msg.contains("stack overflow"), "{msg}");
}

#[tokio::test]
async fn a_trap_fails_only_that_call() {
    let msg = attack("attack = \"trap\"", "").await;
    assert!(
        msg.contains("trapped in provision") && msg.contains("unreachable"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let msg = attack("attack = \"panic\"", "").await;
    assert!(
        msg.contains("hostile component panics mid-provision"),
        "{msg}"
    );
}

#[tokio::test]
async fn ssh_to_a_label_not_given_is_refused() {
    let msg = attack("attack = \"ssh\"\nlabel = \"someone-elses-host\"", "").await;
    assert!(
        msg.contains("no SSH host labelled `someone-elses-host`"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_component_importing_sockets_and_files_is_refused_at_load() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml("sneaky", components::HOSTILE_IMPORTS, ""),
    );
    let rt = compute_bridge::runtime::Runtime::new(
        &compute_bridge::runtime::RuntimeOptions::for_config(&cfg),
    )
    .unwrap();
    let err = rt
        .load_backend(&cfg, &cfg.backends[0], "p")
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("wasi:sockets/tcp") && msg.contains("sockets are not available"),
        "{msg}"
    );
    assert!(
        msg.contains("wasi:filesystem/preopens") && msg.contains("files are not available"),
        "{msg}"
    );
}

#[tokio::test]
async fn calls_in_parallel_get_separate_instances() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml("hostile", components::HOSTILE, ""),
    );
    let (_rt, backends) = load(&cfg);
    let calls = (0..16).map(|_| {
        let b = backends[0].clone();
        tokio::spawn(async move { b.capabilities().await.unwrap().regions })
    });
    for c in calls {
        assert_eq!(c.await.unwrap(), ["hostile-1"]);
    }
    let _ = Duration::ZERO;
}
