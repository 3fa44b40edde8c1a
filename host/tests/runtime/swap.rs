//! Live swap (issue 20) on a started bridge over an emulated RTMR3: a swap
//! under running watchers goes live, is measured so the log replays to the
//! new RTMR3, and places new grants with the new component (journaled by
//! its digest); a component whose check disagrees is refused and nothing
//! is measured; a component whose calls fail after going live is rolled
//! back by itself, measured again, and the watchers still end once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use compute_bridge_contract::backend::{
    Backend, BackendError, GrantSpec, Instance, InstanceState, Offer, Usage, Workload,
};
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::{Event, EventSink, SwapOutcome, digest_prefix};
use compute_bridge_contract::measurement::ComponentDigest;
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_daemon::bridge::Bridge;
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::fleet::{WatchOutcome, WatchPolicy};
use compute_bridge_daemon::measure::{EmulatedRtmr, MeasurementRegister, measurement_of};
use compute_bridge_daemon::swap::{Probation, Step, SwapError, Swapper};
use compute_bridge_sandbox::BootView;
use compute_bridge_testkit::components;

use crate::support::*;

/// Two fakes in `tdx` mode, rolling back after 2 bad polls; `fake_a` is
/// fake-a's `[backends.config]` body.
fn swap_config(state: &std::path::Path, fake_a: &str) -> BootConfig {
    let text = format!(
        "[bridge]\nstate_dir = {:?}\nconcurrency_cap = 16\nswap_rollback_polls = 2\n\n\
         {}{}\n[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"{}\"\n",
        state.display().to_string(),
        backend_toml(
            "fake-a",
            components::FAKE,
            &format!("[backends.config]\n{fake_a}")
        ),
        backend_toml(
            "fake-b",
            components::FAKE,
            "[backends.config]\nregions = [\"r2\"]\n"
        ),
        "00".repeat(48)
    );
    BootConfig::from_source(&Source::embedded("swap.toml", &text), &|_: &str| None)
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

const FAKE_A: &str = "regions = [\"r1\"]\n";

/// The fake component under another digest.
fn rebuilt_fake(dir: &std::path::Path, tag: &str) -> (std::path::PathBuf, Vec<u8>) {
    compute_bridge_testkit::rebuilt_component(components::FAKE, dir, tag)
}

struct Started {
    state: tempfile::TempDir,
    bridge: Bridge,
    rtmr3: Arc<EmulatedRtmr>,
    swapper: Swapper,
}

async fn start(fake_a: &str) -> Started {
    let state = tempfile::tempdir().unwrap();
    let rtmr3 = Arc::new(EmulatedRtmr::open(&state.path().join("rtmr3")).unwrap());
    let bridge = Bridge::start_with(swap_config(state.path(), fake_a), Some(rtmr3.clone()))
        .await
        .expect("the bridge starts");
    let swapper = bridge
        .swapper
        .clone()
        .with_poll_interval(Duration::from_millis(100));
    Started {
        state,
        bridge,
        rtmr3,
        swapper,
    }
}

/// `n` grants placed on fake-a, each watched until `valid_to` (a few
/// seconds away): the watchers' outcomes.
async fn watched_grants(
    s: &Started,
    n: usize,
    secs: u64,
) -> Vec<tokio::task::JoinHandle<WatchOutcome>> {
    let mut watchers = Vec::new();
    for k in 0..n {
        let g = GrantSpec {
            region: Some("r1".into()),
            ..grant(&format!("{k:032x}"))
        };
        let p = s.bridge.fleet.provision(&g, &workload()).await.unwrap();
        assert_eq!(p.backend, "fake-a");
        let fleet = s.bridge.fleet.clone();
        let valid_to = now_unix() + secs;
        watchers.push(tokio::spawn(async move {
            fleet
                .watch_until_exit(
                    &p.reservation,
                    &p.instance,
                    valid_to,
                    WatchPolicy {
                        initial: Duration::from_millis(50),
                        max: Duration::from_millis(200),
                        attempts: 2,
                    },
                )
                .await
        }));
    }
    let fleet = s.bridge.fleet.clone();
    until("the watchers to start", Duration::from_secs(30), || {
        fleet.watched("fake-a").len() == n
    })
    .await;
    watchers
}

/// Every watcher ends once, at `valid_to`, with usage and a terminate.
async fn each_ends_once(watchers: Vec<tokio::task::JoinHandle<WatchOutcome>>) {
    for w in watchers {
        let o = w.await.expect("the watcher ends once");
        assert_eq!(o.ending, WorkloadEnding::Expired);
        assert_eq!(o.usage_error, None);
        assert_eq!(o.terminate_error, None);
        assert!(o.usage.ram_mib_seconds > 0, "{o:?}");
    }
}

fn log_of(s: &Started) -> compute_bridge_contract::measurement::MeasurementLog {
    s.bridge.measurer.lock().unwrap().log().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_under_running_watchers_is_checked_measured_and_live() {
    let s = start(FAKE_A).await;
    let files = tempfile::tempdir().unwrap();
    let (path, bytes) = rebuilt_fake(files.path(), "v2");
    let old = s
        .bridge
        .fleet
        .component("fake-a")
        .expect("measured at start");
    let new = ComponentDigest::of(&bytes).to_string();
    assert_ne!(old, new);
    let watchers = watched_grants(&s, 3, 4).await;

    let mut steps = Vec::new();
    let swapped = s
        .swapper
        .swap_file("fake-a", &path, |st| steps.push(st.clone()))
        .await
        .expect("the swap goes live");
    assert_eq!(
        steps,
        [
            Step::Loaded {
                component: new.clone()
            },
            Step::Checked { instances: 3 },
            Step::Measured {
                seq: 2,
                extended: true
            },
            Step::Live
        ]
    );
    assert_eq!(swapped.previous.as_deref(), Some(old.as_str()));
    assert_eq!(s.bridge.fleet.component("fake-a"), Some(new.clone()));

    // Measured as at start: the log replays to the register, fake-a's
    // current event is the new component under the same policy.
    let log = log_of(&s);
    assert_eq!(log.events.len(), 3);
    assert_eq!(log.verify(&s.rtmr3.read().unwrap()), Ok(()));
    let current = log.current("fake-a").unwrap();
    assert_eq!(current.component_sha256.to_string(), new);
    assert_eq!(current.policy, log.events[0].event.policy);

    // New grants are placed by the new component, which the journal
    // entry then names.
    let g = GrantSpec {
        region: Some("r1".into()),
        ..grant(&"ff".repeat(16))
    };
    let p = s.bridge.fleet.provision(&g, &workload()).await.unwrap();
    assert_eq!(p.component.as_deref(), Some(new.as_str()));

    // A second swap waits for the probation.
    let (again, _) = rebuilt_fake(files.path(), "v3");
    assert_eq!(
        s.swapper
            .swap_file("fake-a", &again, |_| {})
            .await
            .err()
            .expect("busy"),
        SwapError::Busy
    );
    assert_eq!(
        swapped.probation.await.unwrap(),
        Probation::Passed { polls: 4 }
    );
    each_ends_once(watchers).await;
    assert_eq!(s.bridge.fleet.watched("fake-a"), Vec::<Instance>::new());

    // The same component again is no swap; an unknown backend names the
    // ones there are.
    let err = s.swapper.swap_file("fake-a", &path, |_| {}).await.err();
    assert!(matches!(err, Some(SwapError::Same { .. })), "{err:?}");
    let err = s
        .swapper
        .swap_file("nope", &path, |_| {})
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("fake-a, fake-b"),
        "{err}"
    );
}

/// The events a swapper tells, in order.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<Event>>);

impl EventSink for Told {
    fn record(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_disagrees_is_refused_and_nothing_is_measured() {
    let s = start(FAKE_A).await;
    let watchers = watched_grants(&s, 2, 3).await;
    let before = log_of(&s);
    let register = s.rtmr3.read().unwrap();
    let old = s.bridge.fleet.component("fake-a");

    // A component that says every instance has exited: the fake told so
    // by its config (run_seconds = 0), under another digest.
    let files = tempfile::tempdir().unwrap();
    let (_, bytes) = rebuilt_fake(files.path(), "exits");
    let other = swap_config(s.state.path(), "regions = [\"r1\"]\nrun_seconds = 0\n");
    let mut spec = other
        .backend_spec(&other.backends[0], &s.bridge.provider_id)
        .unwrap();
    spec.bytes = bytes.clone();
    // The operator's view is told of the refusal.
    let told = Arc::new(Told::default());
    s.swapper.send_events_to(told.clone());
    let mut steps = Vec::new();
    let err = s
        .swapper
        .swap_spec(spec, |st| steps.push(st.clone()))
        .await
        .err()
        .expect("refused");
    let SwapError::Check { backend, why } = &err else {
        panic!("{err}")
    };
    assert_eq!(backend, "fake-a");
    assert!(
        why.contains("status of running instance #1 of 2 (region r1) disagrees")
            && why.contains("Running")
            && why.contains("Exited(0)"),
        "{why}"
    );
    assert!(
        !why.contains(&"0".repeat(31)),
        "no instance id (it may carry the request id): {why}"
    );
    assert_eq!(steps.len(), 1, "loaded, never checked: {steps:?}");
    assert_eq!(
        *told.0.lock().unwrap(),
        vec![Event::ComponentSwap {
            backend: "fake-a".into(),
            from: digest_prefix(old.as_deref().unwrap()),
            to: digest_prefix(&ComponentDigest::of(&bytes).to_string()),
            outcome: SwapOutcome::Refused,
        }]
    );
    assert_eq!(s.bridge.fleet.component("fake-a"), old, "the old one stays");
    assert_eq!(log_of(&s), before, "nothing measured");
    assert_eq!(s.rtmr3.read().unwrap(), register);
    each_ends_once(watchers).await;

    // A component that does not load is refused with the loader's reason.
    let junk = files.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    let err = s.swapper.swap_file("fake-a", &junk, |_| {}).await.err();
    assert!(matches!(err, Some(SwapError::Load { .. })), "{err:?}");
    assert_eq!(log_of(&s), before);
}

/// A component whose `status` fails once `broken` is set, counting the
/// calls it gets.
struct BreaksLater {
    inner: Arc<dyn Backend>,
    broken: AtomicBool,
    status_calls: AtomicU32,
}

#[async_trait::async_trait]
impl Backend for BreaksLater {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn capabilities(&self) -> Result<Offer, BackendError> {
        self.inner.capabilities().await
    }
    async fn can_satisfy(&self, grant: &GrantSpec) -> bool {
        self.inner.can_satisfy(grant).await
    }
    async fn provision(
        &self,
        grant: &GrantSpec,
        workload: &Workload,
    ) -> Result<Instance, BackendError> {
        self.inner.provision(grant, workload).await
    }
    async fn status(&self, instance: &Instance) -> Result<InstanceState, BackendError> {
        self.status_calls.fetch_add(1, Ordering::Relaxed);
        if self.broken.load(Ordering::Relaxed) {
            return Err(BackendError::Internal("status broke after the swap".into()));
        }
        self.inner.status(instance).await
    }
    async fn usage(&self, instance: &Instance) -> Result<Usage, BackendError> {
        self.inner.usage(instance).await
    }
    async fn terminate(&self, instance: &Instance) -> Result<(), BackendError> {
        self.inner.terminate(instance).await
    }
    async fn list_instances(&self) -> Result<Vec<Instance>, BackendError> {
        self.inner.list_instances().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_fails_after_going_live_is_rolled_back_and_measured_again() {
    let s = start(FAKE_A).await;
    let watchers = watched_grants(&s, 3, 5).await;
    let old = s.bridge.fleet.component("fake-a").unwrap();
    let old_event = log_of(&s).current("fake-a").unwrap().clone();

    let files = tempfile::tempdir().unwrap();
    let (_, bytes) = rebuilt_fake(files.path(), "breaks");
    let cfg = &s.bridge.config;
    let mut spec = cfg
        .backend_spec(&cfg.backends[0], &s.bridge.provider_id)
        .unwrap();
    spec.bytes = bytes;
    let measurement = measurement_of(&spec);
    let (loaded, _) = s.bridge.runtime.load(&spec).unwrap();
    let breaks = Arc::new(BreaksLater {
        inner: Arc::new(loaded),
        broken: AtomicBool::new(false),
        status_calls: AtomicU32::new(0),
    });
    // Probation polls a second apart, so that for the first second only
    // the watchers call it.
    let swapped = s
        .swapper
        .clone()
        .with_poll_interval(Duration::from_secs(1))
        .swap_loaded(breaks.clone(), measurement.clone(), |_| {})
        .await
        .expect("it passes its check");
    breaks.broken.store(true, Ordering::Relaxed);
    let calls_at_live = breaks.status_calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        breaks.status_calls.load(Ordering::Relaxed) > calls_at_live,
        "the running watchers' next calls go to the new component"
    );

    let Probation::RolledBack { why, seq } = swapped.probation.await.unwrap() else {
        panic!("not rolled back")
    };
    assert!(why.contains("status broke after the swap"), "{why}");
    assert_eq!(seq, Some(3), "the old component is a new event");
    assert_eq!(s.bridge.fleet.component("fake-a"), Some(old));
    let log = log_of(&s);
    let components: Vec<String> = log
        .events
        .iter()
        .map(|e| format!("{}={}", e.event.backend, e.event.component_sha256))
        .collect();
    assert_eq!(log.events.len(), 4, "{components:?}");
    assert_eq!(log.events[2].event, measurement);
    assert_eq!(log.events[3].event, old_event, "the log only grows");
    assert_eq!(log.verify(&s.rtmr3.read().unwrap()), Ok(()));

    // The running watchers kept polling through its failures, and end
    // once, on the old component again.
    each_ends_once(watchers).await;
}
