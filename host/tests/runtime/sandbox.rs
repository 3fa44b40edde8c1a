//! The per-call sandbox: fresh instances, one memory budget per component,
//! call slots no backend can take from another, a bounded log, and hostile
//! components contained while the host goes on serving other calls.

use std::sync::Arc;
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, BackendError};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_sandbox::{ComponentBackend, Runtime, RuntimeOptions};
use compute_bridge_testkit::components;
use compute_bridge_testkit::http_server::HttpServer;

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

/// Sockets and files are linked, because language runtimes import them,
/// and grant nothing: the component loads, finds no file to read (not even
/// `/`) and no connect goes out, not even to a listener on loopback.
#[tokio::test]
async fn a_component_reaching_for_sockets_and_files_loads_and_gets_neither() {
    let state = tempfile::tempdir().unwrap();
    let secret = state.path().join("secret.txt");
    std::fs::write(&secret, "operator-secret-7f3a").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml(
            "sneaky",
            components::HOSTILE_IMPORTS,
            &format!(
                "[backends.config]\nsecret_path = \"{}\"\nconnect = \"{addr}\"\n",
                secret.display()
            ),
        ),
    );
    let (_rt, backends) = load(&cfg);
    let err = backends[0]
        .provision(&grant("s"), &workload())
        .await
        .expect_err("the sneaky backend always fails, saying what it got");
    let msg = err.to_string();
    assert!(msg.contains("read failed"), "{msg}");
    assert!(!msg.contains("operator-secret-7f3a"), "{msg}");
    assert!(msg.contains("connect failed"), "{msg}");
    assert!(msg.contains("listing / failed"), "{msg}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener was reached: {other:?}"),
    }
}

#[tokio::test]
async fn a_component_built_for_the_0_1_0_world_is_refused_with_the_fix() {
    // A backend built against the WIT before `offer` gained
    // `td-measurements`: it would hand the host an offer of the old shape.
    let state = tempfile::tempdir().unwrap();
    let file = components::CRAFTED_BUILT_FOR_0_1_0;
    let cfg = config(state.path(), &backend_toml("old", file, ""));
    let rt = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let err = match rt.load_backend(&cfg, &cfg.backends[0], "p") {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a component of the 0.1.0 world loaded"),
    };
    let why = "was built for compute-bridge:backend@0.1.0; this bridge loads \
               compute-bridge:backend@0.3.0 only (0.3.0 replaced our http and log with \
               wasi:http and wasi:logging): rebuild it against the 0.3.0 WIT in wit/";
    assert!(err.contains(why), "{err}");
    // `components inspect` says the same.
    let (ok, text) = inspect(file);
    assert!(
        !ok && text.contains("verdict: REFUSED") && text.contains(why),
        "{text}"
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

/// Peak resident memory of this process so far, KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_component_with_a_memory_in_each_of_many_core_modules_is_refused_at_load() {
    // The attack that used 887 MB in one call under a 64 MiB cap: 13 more
    // core modules, each with its own 15 MiB memory that its start function
    // fills, under a 16 MiB cap. It imports nothing and exports the
    // provider, so the import policy lets it through.
    let state = tempfile::tempdir().unwrap();
    let file = components::CRAFTED_MANY_MEMORIES;
    let cfg = config(
        state.path(),
        &backend_toml("hoarder", file, "memory_limit_mib = 16\n"),
    );
    let rt = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let err = match rt.load_backend(&cfg, &cfg.backends[0], "p") {
        Err(e) => format!("{e:#}"),
        Ok((b, _)) => {
            let before = peak_rss_kib();
            let called = b.capabilities().await;
            panic!(
                "a component with 14 memories loaded under a 16 MiB cap, and its call {} \
                 (this process's peak RSS went from {} to {} MiB)",
                match called {
                    Ok(_) => "ran to its end".to_string(),
                    Err(e) => format!("failed: {e}"),
                },
                before / 1024,
                peak_rss_kib() / 1024
            );
        }
    };
    assert!(
        err.contains("14 Wasm linear memories")
            && err.contains("a backend runs in one linear memory"),
        "{err}"
    );
    // `components inspect` refuses it too, with the same reason.
    let (ok, text) = inspect(file);
    assert!(
        !ok && text.contains("verdict: REFUSED")
            && text.contains("14 Wasm linear memories")
            && text.contains("a backend runs in one linear memory"),
        "{text}"
    );
}

#[tokio::test]
async fn memory_and_tables_share_one_budget() {
    // Its one memory grown to 64 KiB short of the 16 MiB cap, then its
    // table by 10,000 elements (78 KiB): each within a cap of its own, both
    // together past the component's budget.
    let state = tempfile::tempdir().unwrap();
    let file = components::CRAFTED_MEMORY_AND_TABLE;
    let cfg = config(
        state.path(),
        &backend_toml("grower", file, "memory_limit_mib = 16\n"),
    );
    let (_rt, b) = load(&cfg);
    let err = b[0]
        .capabilities()
        .await
        .expect_err("16 MiB of memory and table together are over a 16 MiB budget");
    let msg = err.to_string();
    assert!(
        msg.contains("trapped in capabilities")
            && msg.contains("memory budget of 16 MiB for the whole component reached"),
        "{msg}"
    );
    let peak = b[0]
        .stats
        .peak_memory_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(peak <= 16 << 20, "the call held {peak} bytes");
    // The same component under a budget with room for both answers.
    let cfg = config(
        state.path(),
        &backend_toml("grower", file, "memory_limit_mib = 17\n"),
    );
    let (_rt, b) = load(&cfg);
    b[0].capabilities().await.expect("within its budget");
}

/// A boot config with `[bridge] max_concurrent_calls = slots`.
fn config_with_slots(state: &std::path::Path, slots: u32, backends: &str) -> BootConfig {
    let text = format!(
        "[bridge]\nstate_dir = {:?}\nmax_concurrent_calls = {slots}\n\n{backends}",
        state.display().to_string()
    );
    BootConfig::from_source(&Source::embedded("test.toml", &text), &|_| None)
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

#[tokio::test]
async fn one_backends_calls_cannot_take_the_call_slots_of_another() {
    // Four call slots in all. A hostile backend's provision calls hold
    // theirs (a request its server does not answer), eight at once: no more
    // than its share may be held, and the other backend's calls go on.
    let hold = HttpServer::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_slots(
        state.path(),
        4,
        &[
            backend_toml(
                "hog",
                components::HOSTILE_SANDBOX,
                &format!(
                    "call_timeout_sec = 600\n[backends.http]\nallowed_hosts = [{origin:?}]\ntimeout_sec = 600\n\
                     [backends.config]\nattack = \"hold\"\nslow = \"provision\"\nurl = \"{origin}/hold\"\n",
                    origin = hold.origin()
                ),
            ),
            backend_toml("fake", components::FAKE, ""),
        ]
        .concat(),
    );
    let (_rt, b) = load(&cfg);
    let (hog, fake) = (b[0].clone(), b[1].clone());
    let mut hogging = tokio::task::JoinSet::new();
    for i in 0..8 {
        let hog = hog.clone();
        hogging.spawn(async move {
            hog.provision(&grant(&format!("hog-{i}")), &workload())
                .await
        });
    }
    until(
        "the hog's calls to hold their slots",
        Duration::from_secs(60),
        || hold.held() >= 2,
    )
    .await;
    // Give the other six every chance to take a slot too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = hold.held();
    // The other backend is served while the hog holds all it can.
    let served = tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..5 {
            fake.provision(&grant(&format!("ok-{i}")), &workload())
                .await
                .expect("the other backend is served");
        }
    })
    .await;
    assert!(
        served.is_ok(),
        "the other backend's calls waited 60 s for a call slot: the hog's {held} held calls took them"
    );
    assert_eq!(held, 2, "the hog held more than its half of the 4 slots");
    hold.release();
    while let Some(r) = hogging.join_next().await {
        r.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_log_flood_is_cut_at_the_call_budget_and_one_line_says_how_much() {
    let (log, _capture) = capture_log();
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml(
            "flood",
            components::HOSTILE_SANDBOX,
            "[backends.config]\nattack = \"log-flood\"\nlog_mib = 64\n",
        ),
    );
    let (_rt, b) = load(&cfg);
    let err = b[0]
        .provision(&grant("g"), &workload())
        .await
        .expect_err("the flood reports what it logged");
    assert!(err.to_string().contains("logged 67108864 bytes"), "{err}");
    let text = log.text();
    assert!(
        text.len() < 256 * 1024,
        "one call put {} bytes into the host's log",
        text.len()
    );
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("log records") && l.contains("dropped"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    // A record costs its message (4,096 bytes) and its wasi:logging
    // context (the SDK's "backend", 7 bytes): 15 of the 16,384 fit in
    // 65,536 bytes, 16,369 × 4,103 bytes are dropped.
    assert!(
        said[0].contains("dropped 16369 log records (67162007 bytes) of this provision call")
            && said[0].contains("65536 bytes a call"),
        "{}",
        said[0]
    );
}

#[tokio::test]
async fn a_newline_in_a_log_record_or_an_error_cannot_forge_a_host_log_line() {
    let (log, _capture) = capture_log();
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml(
            "forger",
            components::HOSTILE_SANDBOX,
            "[backends.config]\nattack = \"log-forge\"\n",
        ),
    );
    let (_rt, b) = load(&cfg);
    // Through the fleet, which logs the error text it gets back.
    let fleet = compute_bridge_daemon::fleet::Fleet::new(fleet_members(&cfg, &b), 8);
    fleet.refresh_capabilities().await;
    let declined = fleet
        .provision(&grant("g"), &workload())
        .await
        .err()
        .expect("the forger fails its provision");
    let text = log.text();
    let forged = cb_hostile_sandbox::FORGED_LINE;
    for line in text.lines() {
        assert!(
            !line.starts_with(forged),
            "a forged line in the host's log:\n{text}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "a terminal escape in the host's log:\n{text}"
        );
    }
    // What the component said is all there, escaped, on the lines the host
    // wrote for it.
    let escaped = format!("ok\\n{forged}");
    assert!(text.contains(&escaped), "{text}");
    assert!(declined.to_string().contains(&escaped), "{declined}");
}
