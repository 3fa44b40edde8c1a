//! Scale: is the bridge ever the bottleneck? Drives grant lifecycles
//! (accept → provision → watch → terminate → usage report) against the fake
//! backend configured for zero latency (`run_seconds = 0`: the first
//! `status` says it exited), sandboxed and native in the same run:
//!
//! 1. **fleet path**: straight into [`Fleet`] — `provision`, then
//!    `watch_until_exit` (status, usage, terminate), reservation released —
//!    from `SCALE_CONCURRENCY` tasks at once;
//! 2. **coalition path**: the real [`ProviderLoop`] on a mosaik node behind
//!    an in-process iroh relay, with the journal (redb, fsync'd), HPKE
//!    sealing and the dashboard as its event sink; a requester node in the
//!    same process sends sealed grants (a) at `SCALE_RATE` per second,
//!    timing grant sent → sealed access received, then (b) as fast as the
//!    loop takes them, counting usage reports. The sandboxed and the native
//!    coalition are up at once and (b) runs in `SCALE_ROUNDS` rounds that
//!    alternate between them, so the per-round ratio sees the same load;
//! 3. **10,000 watched** (sandboxed): `SCALE_WATCHED` grants that run for an
//!    hour, all watched at once by the loop; RSS before and after, CPU
//!    while they are watched, and `/snapshot.json` latency from a client
//!    thread throughout.
//!
//! ```sh
//! cargo bench -p compute-bridge --bench scale
//! # knobs: SCALE_LIFECYCLES (20000) SCALE_CONCURRENCY (64) SCALE_RATE (100)
//! #        SCALE_RATE_GRANTS (1000) SCALE_BURST (5000) SCALE_ROUNDS (10)
//! #        SCALE_WATCHED (10000) SCALE_WATCH_SECONDS (10) BENCH_LOG (off)
//! ```
//!
//! As in production: the bridge's log subscriber writes every line to a
//! file (`BENCH_LOG=off` runs the same bench without it, to state what
//! logging costs), the provider card is refreshed at the default
//! `capacity_refresh_sec`, and the dashboard keeps its lifetime counters in
//! the state directory.
//!
//! The requester, the relay and both nodes share the process (and its RSS
//! and CPU) with the bridge's side, so those figures are upper bounds.

#[path = "native_fake.rs"]
mod native_fake;

mod common;
use common::{BenchLog, knob, loadavg, production_logging, workload};

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compute_bridge_coalition::envelope::{self, EnvelopeKey};
use compute_bridge_coalition::link::{ProviderLink, ProviderSession, Reply, RequesterLink};
use compute_bridge_coalition::relay::LocalRelay;
use compute_bridge_coalition::{self as coalition, NetworkSettings};
use compute_bridge_contract::backend::{Backend, GrantSpec, TdxRequirement};
use compute_bridge_contract::clock::SystemClock;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::EventSink;
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_contract::protocol::{
    ComputeGrant, GRANTS_STREAM, Manifest, ProviderCard, RequestId,
};
use compute_bridge_daemon::config::{AttestationMode, BootConfig, BridgeConfig, Source};
use compute_bridge_daemon::dashboard::{Dashboard, DashboardServer, Settings};
use compute_bridge_daemon::fleet::{Fleet, WatchPolicy};
use compute_bridge_daemon::grant::{ACCESS_WAIT, LoopSettings, ProviderLoop};
use compute_bridge_daemon::journal::Journal;
use compute_bridge_sandbox::{Runtime, RuntimeOptions};
use futures::SinkExt;

/// Two fakes: `zero` ends at the first `status`; `long` runs an hour.
const ZERO: &str = r#"{"regions": ["zero"], "run_seconds": 0, "max_cpu_millicores": 4000000000, "max_ram_mib": 4000000000}"#;
const LONG: &str = r#"{"regions": ["long"], "run_seconds": 3600, "max_cpu_millicores": 4000000000, "max_ram_mib": 4000000000}"#;

/// `VmRSS` or `VmHWM` of this process, bytes.
fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// User + system CPU time of this process (all threads).
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 Hz on Linux).
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

fn spec(i: usize) -> GrantSpec {
    GrantSpec {
        request_id: format!("bench-{i}"),
        cpu_millicores: 100,
        ram_mib: 64,
        region: Some("zero".into()),
        tdx: TdxRequirement::None,
        image: "registry.example/app@sha256:0000".into(),
        valid_to: now_unix() + 3600,
    }
}

/// The two fakes as sandboxed components in the real runtime, and natively.
struct Backends {
    sandboxed: Vec<Arc<dyn Backend>>,
    native: Vec<Arc<dyn Backend>>,
    _runtime: Runtime,
    _state: tempfile::TempDir,
}

fn backends() -> Backends {
    let state = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[bridge]\nstate_dir = {:?}\nconcurrency_cap = 100000\n",
        state.path().display().to_string()
    );
    for (name, cfg) in [("zero", ZERO), ("long", LONG)] {
        let v: serde_json::Value = serde_json::from_str(cfg).unwrap();
        text.push_str(&format!(
            "[[backends]]\nname = {name:?}\ncomponent = {:?}\n[backends.config]\n",
            compute_bridge_testkit::components::FAKE
        ));
        for (k, v) in v.as_object().unwrap() {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    let cfg = BootConfig::from_source(&Source::embedded("scale.toml", &text), &|_| None).unwrap();
    let runtime = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let sandboxed = cfg
        .backends
        .iter()
        .map(|b| Arc::new(runtime.load_backend(&cfg, b, "bench").unwrap().0) as Arc<dyn Backend>)
        .collect();
    let native = [("zero", ZERO), ("long", LONG)]
        .into_iter()
        .map(|(n, c)| Arc::new(native_fake::NativeFake::new(n, c)) as Arc<dyn Backend>)
        .collect();
    Backends {
        sandboxed,
        native,
        _runtime: runtime,
        _state: state,
    }
}

async fn fleet_of(backends: &[Arc<dyn Backend>]) -> Fleet {
    let fleet = Fleet::new(
        backends.iter().map(|b| (b.clone(), true)).collect(),
        100_000,
    );
    fleet.refresh_capabilities().await;
    fleet
}

struct Throughput {
    n: usize,
    wall: Duration,
    cpu: Duration,
    /// Log lines written while it ran.
    lines: usize,
}

impl Throughput {
    fn per_sec(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }
    fn cpu_per(&self) -> Duration {
        self.cpu / self.n.max(1) as u32
    }
    fn lines_per(&self) -> f64 {
        self.lines as f64 / self.n.max(1) as f64
    }
}

/// Phase 1: lifecycles straight through the fleet.
async fn fleet_path(
    backends: &[Arc<dyn Backend>],
    n: usize,
    conc: usize,
    log: &BenchLog,
) -> Throughput {
    let fleet = fleet_of(backends).await;
    let next = Arc::new(AtomicUsize::new(0));
    let lines0 = log.written().0;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (fleet, next) = (fleet.clone(), next.clone());
            tokio::spawn(async move {
                let w = workload();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let s = spec(i);
                    let p = fleet.provision(&s, &w).await.expect("placed");
                    let out = fleet
                        .watch_until_exit(
                            &p.reservation,
                            &p.instance,
                            s.valid_to,
                            WatchPolicy::default(),
                        )
                        .await;
                    assert_eq!(out.ending, WorkloadEnding::Exited(0));
                    assert!(out.terminate_error.is_none());
                    drop(p.reservation);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let t = Throughput {
        n,
        wall: t0.elapsed(),
        cpu: cpu_time() - cpu0,
        lines: log.written().0 - lines0,
    };
    assert_eq!(fleet.active(), 0);
    t
}

/// A running provider loop on its own node, a requester node subscribed to
/// it, and the dashboard it reports to.
struct Coalition {
    relay: Option<LocalRelay>,
    stop: tokio_util::sync::CancellationToken,
    provider: tokio::task::JoinHandle<()>,
    dashboard: DashboardServer,
    card: ProviderCard,
    grants: mosaik::streams::Producer<ComputeGrant>,
    /// Request id → when its grant was sent.
    sent: Arc<Mutex<HashMap<RequestId, Instant>>>,
    /// Grant sent → sealed access received.
    to_access: Arc<Mutex<Vec<Duration>>>,
    accesses: Arc<AtomicUsize>,
    reports: Arc<AtomicUsize>,
    declines: Arc<AtomicUsize>,
    _requester: Arc<RequesterLink>,
    _state: tempfile::TempDir,
}

impl Coalition {
    async fn start(name: &str, backends: &[Arc<dyn Backend>]) -> Self {
        let relay = LocalRelay::spawn().await.unwrap();
        let settings = NetworkSettings::parse(name, &[relay.url().to_string()], &[], true).unwrap();
        let pnet = coalition::join(&settings, None).await.unwrap();
        let boot = coalition::format_peer_addr(&pnet.local().addr(), settings.relays.first());
        let rsettings =
            NetworkSettings::parse(name, &[relay.url().to_string()], &[boot], true).unwrap();
        let rnet = coalition::join(&rsettings, None).await.unwrap();

        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        let envelope = EnvelopeKey::generate();
        let fleet = fleet_of(backends).await;
        // The production defaults: the card refreshed every
        // `capacity_refresh_sec`, the dashboard's counters kept on disk.
        let refresh = BridgeConfig::default().capacity_refresh_sec;
        let dashboard = Dashboard::new(
            Settings {
                coalition: name.into(),
                refresh_sec: refresh,
                rates: BTreeMap::new(),
                state_dir: Some(state.path().to_path_buf()),
                attestation: AttestationMode::None,
            },
            fleet.clone(),
            Arc::new(SystemClock),
        );
        let server = DashboardServer::start(dashboard.clone(), "127.0.0.1", 0)
            .await
            .unwrap();
        let provider_id = envelope.provider_id();
        let link = ProviderLink::open(Arc::new(pnet), Vec::new(), provider_id);
        let lp = ProviderLoop::new(
            envelope,
            fleet,
            journal,
            link,
            Arc::new(dashboard) as Arc<dyn EventSink>,
            LoopSettings {
                coalition: name.into(),
                capacity_refresh: Duration::from_secs(refresh),
                watch: WatchPolicy::default(),
                access_wait: ACCESS_WAIT,
                attestation: None,
                measurer: None,
                sweep_backends: Default::default(),
            },
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let provider = tokio::spawn(async move {
            lp.run(s.cancelled_owned()).await.unwrap();
        });

        let requester = Arc::new(RequesterLink::open(
            Arc::new(rnet),
            rsettings.bootstrap.clone(),
        ));
        let card = requester
            .wait_for_cards(Duration::from_secs(120), |c| {
                c.iter().any(|c| c.provider_id == provider_id)
            })
            .await
            .into_iter()
            .find(|c| c.provider_id == provider_id)
            .expect("the provider's card");
        let session = requester
            .connect(card.node, Duration::from_secs(120))
            .await
            .expect("subscribed to the provider");
        // The session's grant producer is the node's one producer for the
        // stream; take a handle to it so the session can move to the
        // receiving task.
        let grants = match requester
            .network()
            .streams()
            .producer::<ComputeGrant>()
            .with_stream_id(GRANTS_STREAM)
            .build()
        {
            Ok(p) => p,
            Err(mosaik::streams::producer::BuilderError::AlreadyExists(p)) => p,
        };
        let c = Self {
            relay: Some(relay),
            stop,
            provider,
            dashboard: server,
            card,
            grants,
            sent: Default::default(),
            to_access: Default::default(),
            accesses: Default::default(),
            reports: Default::default(),
            declines: Default::default(),
            _requester: requester,
            _state: state,
        };
        tokio::spawn(receive(
            session,
            c.sent.clone(),
            c.to_access.clone(),
            c.accesses.clone(),
            c.reports.clone(),
            c.declines.clone(),
        ));
        c
    }

    async fn send(&mut self, region: &str, seconds: u64) {
        let reply = [7u8; 32];
        let now = now_unix();
        let mut g = ComputeGrant::unsealed(
            self.card.provider_id,
            Manifest {
                image: format!("registry.example/app@sha256:{}", "0".repeat(64)),
                cpu_millicores: 100,
                ram_mib: 64,
                region: Some(region.into()),
                tdx: TdxRequirement::None,
            },
            now,
            now + seconds,
        );
        g.envelope = envelope::seal_grant(&self.card.envelope_key, &g, &reply).unwrap();
        self.sent
            .lock()
            .unwrap()
            .insert(g.request_id, Instant::now());
        self.grants.send(g).await.expect("grant sent");
    }

    async fn wait(&self, what: &str, counter: &AtomicUsize, n: usize, timeout: Duration) {
        let start = Instant::now();
        while counter.load(Ordering::Relaxed) + self.declines.load(Ordering::Relaxed) < n {
            assert!(
                start.elapsed() < timeout,
                "{what}: {} of {n} after {timeout:?}",
                counter.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        let _ = self.provider.await;
        self.dashboard.stop().await;
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
    }
}

async fn receive(
    mut session: ProviderSession,
    sent: Arc<Mutex<HashMap<RequestId, Instant>>>,
    to_access: Arc<Mutex<Vec<Duration>>>,
    accesses: Arc<AtomicUsize>,
    reports: Arc<AtomicUsize>,
    declines: Arc<AtomicUsize>,
) {
    while let Some(r) = session.next_any().await {
        match r {
            Reply::Access(a) => {
                if let Some(t) = sent.lock().unwrap().get(&a.request_id) {
                    to_access.lock().unwrap().push(t.elapsed());
                }
                accesses.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Usage(u) => {
                sent.lock().unwrap().remove(&u.request_id);
                reports.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Decline(d) => {
                eprintln!("declined: {}", d.reason.as_str());
                declines.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct RatePhase {
    p50: Duration,
    p99: Duration,
    max: Duration,
    achieved: f64,
}

/// Phase 2a: `n` grants at `rate` per second; grant sent → access received.
async fn at_rate(c: &mut Coalition, n: usize, rate: usize) -> RatePhase {
    c.to_access.lock().unwrap().clear();
    let base = c.accesses.load(Ordering::Relaxed);
    let reports = c.reports.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = Instant::now();
    for _ in 0..n {
        tick.tick().await;
        c.send("zero", 60).await;
    }
    let achieved = n as f64 / t0.elapsed().as_secs_f64();
    c.wait("accesses", &c.accesses, base + n, Duration::from_secs(120))
        .await;
    c.wait("reports", &c.reports, reports + n, Duration::from_secs(120))
        .await;
    let mut s = std::mem::take(&mut *c.to_access.lock().unwrap());
    RatePhase {
        p50: pct(&mut s, 0.50),
        p99: pct(&mut s, 0.99),
        max: s.last().copied().unwrap_or_default(),
        achieved,
    }
}

/// Phase 2b: `n` grants as fast as the loop finishes them (at most
/// `window` unfinished at a time); lifecycles end at the usage report.
async fn burst(c: &mut Coalition, n: usize, window: usize, log: &BenchLog) -> Throughput {
    let reports = c.reports.load(Ordering::Relaxed);
    let lines0 = log.written().0;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for i in 0..n {
        while i >= window
            && c.reports.load(Ordering::Relaxed) + c.declines.load(Ordering::Relaxed)
                < reports + i - window
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        c.send("zero", 60).await;
    }
    c.wait("reports", &c.reports, reports + n, Duration::from_secs(300))
        .await;
    Throughput {
        n,
        wall: t0.elapsed(),
        cpu: cpu_time() - cpu0,
        lines: log.written().0 - lines0,
    }
}

/// `/snapshot.json` over one keep-alive connection, timed, until `stop`.
/// Each sample is (when it started, how long it took).
fn snapshot_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, Duration)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_nodelay(true).unwrap();
        let req = format!(
            "GET /snapshot.json HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            addr.port()
        );
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            conn.write_all(req.as_bytes()).unwrap();
            // Read the head, then the body by its Content-Length.
            let mut got = 0;
            let (head_end, len) = loop {
                let n = conn.read(&mut buf[got..]).unwrap();
                assert!(n > 0, "the dashboard closed the connection");
                got += n;
                if let Some(p) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    assert!(head.starts_with("http/1.1 200"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .expect("content-length");
                    break (p + 4, len);
                }
            };
            while got < head_end + len {
                let n = conn.read(&mut buf[got..]).unwrap();
                assert!(n > 0);
                got += n;
            }
            samples.push((t, t.elapsed()));
            std::thread::sleep(Duration::from_millis(2));
        }
        samples
    })
}

/// Phase 3: `n` hour-long workloads, all watched at once.
async fn watched(c: &mut Coalition, n: usize, steady: Duration, log: &BenchLog) {
    let rss0 = proc_status("VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let client = snapshot_client(c.dashboard.local_addr(), stop.clone());
    let base = c.accesses.load(Ordering::Relaxed);
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for i in 0..n {
        while i >= 512 && c.accesses.load(Ordering::Relaxed) + 512 < base + i {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        c.send("long", 3600).await;
    }
    c.wait("accesses", &c.accesses, base + n, Duration::from_secs(600))
        .await;
    let (fill, fill_cpu) = (t0.elapsed(), cpu_time() - cpu0);
    let rss1 = proc_status("VmRSS:");
    let lines1 = log.written().0;
    let (cpu1, t1) = (cpu_time(), Instant::now());
    tokio::time::sleep(steady).await;
    let watch_cpu = (cpu_time() - cpu1).as_secs_f64() / t1.elapsed().as_secs_f64();
    let watch_lines = log.written().0 - lines1;
    let rss2 = proc_status("VmRSS:");
    stop.store(true, Ordering::Relaxed);
    let snap = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let placed_at = t0 + fill;
    let (mut placing, mut watching): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (at, d) in snap {
        if at < placed_at {
            placing.push(d);
        } else {
            watching.push(d);
        }
    }
    println!(
        "watched: {n} workloads placed in {} ({:.0}/s, CPU {} per grant)",
        ms(fill),
        n as f64 / fill.as_secs_f64(),
        ms(fill_cpu / n as u32)
    );
    println!(
        "watched: RSS {} before, {} with all {n} watched, {} after {}s more; {:.1} KiB per watched workload",
        mib(rss0),
        mib(rss1),
        mib(rss2),
        steady.as_secs(),
        (rss2.max(rss1) - rss0) as f64 / 1024.0 / n as f64
    );
    println!(
        "watched: CPU while watching {n}: {:.1}% of one core (status polls back off 0.5 s → 30 s); {watch_lines} log lines in those {}s",
        watch_cpu * 100.0,
        steady.as_secs()
    );
    for (when, s) in [
        ("while placing them", &mut placing),
        ("while only watching", &mut watching),
    ] {
        println!(
            "watched: /snapshot.json {when}: {} requests, p50 {}, p99 {}, max {}",
            s.len(),
            ms(pct(s, 0.50)),
            ms(pct(s, 0.99)),
            ms(s.last().copied().unwrap_or_default())
        );
    }
}

fn main() {
    let lifecycles = knob("SCALE_LIFECYCLES", 20_000);
    let conc = knob("SCALE_CONCURRENCY", 64);
    let rate = knob("SCALE_RATE", 100);
    let rate_grants = knob("SCALE_RATE_GRANTS", 1_000);
    let burst_n = knob("SCALE_BURST", 5_000);
    let watched_n = knob("SCALE_WATCHED", 10_000);
    let steady = Duration::from_secs(knob("SCALE_WATCH_SECONDS", 10) as u64);
    let rounds = knob("SCALE_ROUNDS", 10usize).max(1);
    let mut log = production_logging("scale");
    // The bridge's own runtime shape: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "scale bench: {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    rt.block_on(async {
        let b = backends();
        println!("\n## fleet path: {lifecycles} lifecycles, {conc} at a time");
        println!("| backend | lifecycles/s | CPU per lifecycle | log lines per lifecycle | load avg |");
        println!("|---|---|---|---|---|");
        let mut fleet_cpu = Vec::new();
        for (side, set) in [("sandboxed", &b.sandboxed), ("native", &b.native)] {
            // Warm up (instance pools, allocator), then measure.
            fleet_path(set, lifecycles / 10, conc, &log).await;
            let t = fleet_path(set, lifecycles, conc, &log).await;
            println!(
                "| {side} | {:.0} | {} | {:.1} | {} |",
                t.per_sec(),
                ms(t.cpu_per()),
                t.lines_per(),
                loadavg()
            );
            fleet_cpu.push(t.wall.as_secs_f64() / t.n as f64);
        }
        println!(
            "fleet path: sandboxed time per lifecycle is {:.2}x native",
            fleet_cpu[0] / fleet_cpu[1]
        );

        // Both coalitions up at once, so their lifecycles can be
        // interleaved: a sandboxed ÷ native ratio from two coalitions run
        // one after the other measured the machine's load as much as the
        // sandbox.
        let mut sides = Vec::new();
        for (side, set) in [("sandboxed", &b.sandboxed), ("native", &b.native)] {
            let t0 = Instant::now();
            let c = Coalition::start(&format!("scale-{side}"), set).await;
            eprintln!("{side}: coalition up in {}", ms(t0.elapsed()));
            sides.push((side, c));
        }
        println!(
            "\n## coalition path: {rate_grants} grants at {rate}/s per side, then {burst_n} per side as fast as they go, in {rounds} interleaved rounds"
        );
        let mut rates = Vec::new();
        for (_, c) in &mut sides {
            rates.push(at_rate(c, rate_grants, rate).await);
        }
        let mut totals: Vec<Throughput> = (0..2)
            .map(|_| Throughput {
                n: 0,
                wall: Duration::ZERO,
                cpu: Duration::ZERO,
                lines: 0,
            })
            .collect();
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let mut per = [0.0; 2];
            for i in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let t = burst(&mut sides[i].1, burst_n / rounds, 256, &log).await;
                per[i] = t.wall.as_secs_f64() / t.n as f64;
                let sum = &mut totals[i];
                sum.n += t.n;
                sum.wall += t.wall;
                sum.cpu += t.cpu;
                sum.lines += t.lines;
            }
            ratios.push(per[0] / per[1]);
        }
        println!(
            "| backend | sent/s | grant→access p50 | p99 | max | lifecycles/s (burst) | CPU per lifecycle | log lines per lifecycle | load avg |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for ((side, _), (r, t)) in sides.iter().zip(rates.iter().zip(&totals)) {
            println!(
                "| {side} | {:.0} | {} | {} | {} | {:.0} | {} | {:.1} | {} |",
                r.achieved,
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                t.per_sec(),
                ms(t.cpu_per()),
                t.lines_per(),
                loadavg()
            );
        }
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "coalition path: sandboxed ÷ native wall time per lifecycle, per round: min {:.2}x, median {:.2}x, max {:.2}x ({} rounds of {} lifecycles per side: {})",
            sorted[0],
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
            rounds,
            burst_n / rounds,
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
        );
        if watched_n > 0 {
            println!(
                "\n## {watched_n} workloads watched at once (sandboxed, coalition path; the native coalition idle beside it)"
            );
            watched(&mut sides[0].1, watched_n, steady, &log).await;
            println!();
        }
        for (_, c) in sides {
            c.stop().await;
        }
    });
    println!(
        "\npeak RSS of the whole run: {}; load average at end {}; {}",
        mib(proc_status("VmHWM:")),
        loadavg(),
        log.summary()
    );
}
