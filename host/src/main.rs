//! `compute-bridge`: the daemon and its operator commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use compute_bridge::bridge::Bridge;
use compute_bridge::config::{BootConfig, ConfigError, LOCAL_NAME, Seg, Source, parse_path};
use compute_bridge::dashboard::{Dashboard, DashboardServer};
use compute_bridge::events::EventSink;
use compute_bridge::runtime::{CompileCache, Runtime, RuntimeOptions, policy};

/// Sell compute from your clouds and bare-metal hosts to a coalition, from
/// inside a TDX guest. Every provider backend runs as a sandboxed
/// WebAssembly component.
#[derive(Parser)]
#[command(name = "compute-bridge", version, about, long_about = None)]
#[command(
    after_help = "Start with `compute-bridge run` (the embedded local default) and \
                        `compute-bridge check-config --config FILE` for your own config."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until SIGINT or SIGTERM.
    Run {
        /// Boot config (TOML). Without it, the embedded config/local.toml:
        /// the bare-metal backend on this machine and a local coalition.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Serve the dashboard on this port instead of the config's
        /// `[dashboard] port` (0 picks a free one; the address stays
        /// 127.0.0.1).
        #[arg(long, value_name = "PORT")]
        dashboard_port: Option<u16>,
    },
    /// Validate a config and print the routing table it describes.
    CheckConfig {
        /// Boot config (TOML); the embedded default if omitted.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Take a TDX quote bound to this bridge's provider card and print its
    /// measurements and the quote (base64); fails on a machine without
    /// TDX, saying what is missing.
    Attest {
        /// Boot config (TOML); the embedded default if omitted. Its state
        /// dir gives the identity and its coalition the name the quote
        /// binds; `expected_mrtd` is compared if set.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Work with backend components.
    #[command(subcommand)]
    Components(ComponentsCommand),
}

#[derive(Subcommand)]
enum ComponentsCommand {
    /// Show a component's imports and exports and whether the bridge will
    /// load it (non-zero exit if not).
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Scaffold a new backend project from the template.
    New {
        /// Backend name (lower-case letters, digits, '-'), e.g. `hetzner`.
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Use this compute-bridge-sdk checkout instead of the one this
        /// binary was built from.
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
    /// Run the conformance checks on a component, with the capabilities and
    /// peers a boot config gives it (non-zero exit if any check fails).
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Boot config with a `[[backends]]` entry for it (its `component`
        /// is replaced by FILE).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Which `[[backends]]` entry to use when the config has several.
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,
    },
    /// Swap a backend's component in the running bridge, with rollback.
    ///
    /// The bridge loads FILE under the backend's config and limits, checks
    /// it against the running one (read-only calls), measures it into
    /// RTMR3, makes it live, and rolls back by itself if it then fails
    /// `bridge.swap_rollback_polls` polls in a row. Talks to the bridge
    /// over `state_dir/control.sock` (never the network). Exit 1 if the
    /// swap was refused, 3 if it rolled back.
    Swap {
        /// The backend's name in the config.
        backend: String,
        /// The new component (`.wasm`).
        file: PathBuf,
        /// The running bridge's boot config (for its state dir); the
        /// embedded default if omitted.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = init_tracing();
    let result = match cli.command {
        Command::Run {
            config,
            dashboard_port,
        } => run(config.as_deref(), dashboard_port),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Attest { config } => attest(config.as_deref()),
        Command::Components(ComponentsCommand::Inspect { file }) => inspect(&file),
        Command::Components(ComponentsCommand::New {
            name,
            dir,
            sdk_path,
        }) => scaffold(&name, dir.as_deref(), sdk_path.as_deref()),
        Command::Components(ComponentsCommand::Test {
            file,
            config,
            backend,
        }) => conformance(&file, &config, backend.as_deref()),
        Command::Components(ComponentsCommand::Swap {
            backend,
            file,
            config,
        }) => swap(&backend, &file, config.as_deref()),
    };
    // Every line logged is out before the error (or the exit).
    drop(log);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Our crates at the level `COMPUTE_BRIDGE_LOG` (or `RUST_LOG`) asks for,
/// `info` by default; third-party crates, whose lines can name requesters
/// (peer ids, addresses), at `error` unless named
/// ([`compute_bridge::logging`]). Lines reach stderr from a thread of
/// their own; the guard returned waits for them when dropped.
fn init_tracing() -> compute_bridge::logging::Flush {
    let spec = std::env::var("COMPUTE_BRIDGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (warning, flush) = compute_bridge::logging::init(spec.as_deref(), ansi, std::io::stderr());
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    flush
}

fn load_config(path: Option<&Path>) -> anyhow::Result<BootConfig> {
    match path {
        Some(p) => BootConfig::load(p).map_err(Into::into),
        None => BootConfig::local().map_err(Into::into),
    }
}

/// `components swap`: ask the running bridge, print its progress lines.
fn swap(backend: &str, file: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use compute_bridge::control::{Reply, Request, ask};
    let cfg = load_config(config)?;
    let file =
        std::fs::canonicalize(file).with_context(|| format!("the component {}", file.display()))?;
    let request = Request::Swap {
        backend: backend.to_string(),
        file,
    };
    let last = ask(&cfg.state_dir(), &request, |r| {
        if let Reply::Progress(p) = r {
            println!("{p}");
        }
    })?;
    Ok(match last {
        Reply::Passed(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Reply::RolledBack(s) => {
            eprintln!("error: {s}");
            ExitCode::from(3)
        }
        Reply::Error(s) | Reply::Progress(s) => {
            eprintln!("error: {s}");
            ExitCode::FAILURE
        }
    })
}

fn run(config: Option<&Path>, dashboard_port: Option<u16>) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(config)?;
    if let Some(port) = dashboard_port {
        cfg.dashboard.port = port;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Before start-up, so a signal while starting is not lost.
        let signal = shutdown_signal()?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %if config.is_some() { cfg.source_name.clone() } else { LOCAL_NAME.to_string() },
            state_dir = %cfg.state_dir().display(),
            "compute-bridge starting"
        );
        let bridge = Bridge::start(cfg).await?;
        tracing::info!(provider_id = %bridge.provider_id, "provider identity");
        bridge.log_routing_table();
        let dashboard = Dashboard::for_bridge(&bridge);
        let server = DashboardServer::start(
            dashboard.clone(),
            &bridge.config.dashboard.bind,
            bridge.config.dashboard.port,
        )
        .await
        .context("starting the dashboard")?;
        tracing::info!(
            url = %server.url(),
            "dashboard listening on 127.0.0.1:{p}; from your workstation: ssh -L {p}:localhost:{p} <this host>",
            p = server.local_addr().port()
        );
        let events: Arc<dyn EventSink> = Arc::new(dashboard);
        let shutdown = async {
            signal.await;
            tracing::info!("shutting down");
        };
        tracing::info!("ready; stop with Ctrl-C or SIGTERM");
        bridge.serve(events, shutdown).await?;
        server.stop().await;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal during start-up is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn check_config(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config)?;
    println!("{}: ok", cfg.source_name);
    println!(
        "state dir {}; concurrency cap {}; dashboard http://{}:{}/dashboard",
        cfg.state_dir().display(),
        cfg.bridge.concurrency_cap,
        cfg.dashboard.bind,
        cfg.dashboard.port
    );
    let c = &cfg.coalition;
    println!(
        "coalition {:?}: {}",
        c.network,
        if c.is_local() {
            "local (its relay runs in the bridge)".to_string()
        } else {
            format!("relays {}", c.relays.join(", "))
        }
    );
    println!(
        "coalition node listens on {}",
        compute_bridge::coalition::describe_bind(c.node_bind())
    );
    if c.is_local() {
        println!(
            "local relay listens on {} (TCP, an ephemeral port)",
            c.node_bind().expect("a local coalition binds an address")
        );
    }
    println!("backends in routing order:");
    for (i, b) in cfg.backends.iter().enumerate() {
        println!(
            "  {}. {} ({}){}",
            i + 1,
            b.name,
            b.component,
            if b.enabled { "" } else { " [disabled]" }
        );
        println!(
            "       memory cap {} MiB, call deadline {} s",
            b.memory_limit_mib, b.call_timeout_sec
        );
        for (section, granted) in b.sections.summaries() {
            println!("       {section}: {granted}");
        }
    }
    let source = BootConfig::source_of(config)?;
    let refused = probe_backends(&cfg, &source)?;
    if refused.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &refused {
        eprintln!("error: {e}");
    }
    Ok(ExitCode::FAILURE)
}

/// Load each enabled backend in the sandbox and ask it for its offer. A
/// backend reads its own `[backends.config]` section only when it runs, so
/// this is where a section it refuses is found: its `config` errors come
/// back located at the key they name (a message that starts with a
/// backticked key path, `` `subnetworks.europe-west4`: … ``, points there;
/// any other at the section). Other failures (a host or an API that does
/// not answer) are printed and do not fail the check: they are asked again
/// at start.
fn probe_backends(cfg: &BootConfig, source: &Source) -> anyhow::Result<Vec<ConfigError>> {
    use compute_bridge::backend::{Backend, BackendError};
    let state_dir = cfg.state_dir();
    let opts = RuntimeOptions {
        // Reuse the bridge's compile cache when there is one; never create
        // a state dir just to check a config.
        cache_dir: state_dir.is_dir().then(|| state_dir.join("compiled")),
        ..RuntimeOptions::for_config(cfg)
    };
    let runtime = Runtime::new(&opts)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut refused = Vec::new();
    println!("offers (each enabled backend asked in its sandbox):");
    for (i, b) in cfg.backends.iter().enumerate().filter(|(_, b)| b.enabled) {
        let (backend, _) = runtime
            .load_backend(cfg, b, "check-config")
            .with_context(|| format!("loading backend {}", b.name))?;
        match rt.block_on(backend.capabilities()) {
            Ok(offer) => {
                println!(
                    "  {}: regions {}; TDX {}; up to {} millicores, {} MiB",
                    b.name,
                    if offer.regions.is_empty() {
                        "none".to_string()
                    } else {
                        offer.regions.join(", ")
                    },
                    if offer.tdx_capable { "yes" } else { "no" },
                    offer.max_cpu_millicores,
                    offer.max_ram_mib
                );
                for m in &offer.td_measurements {
                    println!("    TD guests in {}: mrtd {}", m.region, m.mrtd);
                }
            }
            Err(BackendError::Config(message)) => {
                println!("  {}: refuses its config (below)", b.name);
                refused.push(locate_backend_error(source, i, &message));
            }
            Err(e) => println!(
                "  {}: did not answer ({e}); it is asked again at start",
                b.name
            ),
        }
    }
    Ok(refused)
}

/// A backend's `config` error at the key it names under `backends[i].config`.
fn locate_backend_error(source: &Source, i: usize, message: &str) -> ConfigError {
    let mut path: Vec<Seg> = vec!["backends".into(), i.into(), "config".into()];
    let named = message
        .strip_prefix('`')
        .and_then(|rest| rest.split_once('`'))
        .and_then(|(key, rest)| Some((parse_path(key)?, rest)));
    let message = match named {
        Some((key, rest)) => {
            path.extend(key);
            rest.trim_start_matches(':').trim_start().to_string()
        }
        None => message.to_string(),
    };
    source.error_at_path(&path, message)
}

fn attest(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    use compute_bridge::attest::{Attester, CardIdentity, ConfigfsTsm};
    let cfg = load_config(config)?;
    let state_dir = cfg.state_dir();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let identity = compute_bridge::identity::Identity::load_or_create(&state_dir)?;
    let id = CardIdentity {
        provider_id: identity.provider_id,
        envelope_key: identity.envelope.public(),
        coalition: cfg.coalition.network.clone(),
    };
    let expected = cfg.attestation.expected();
    let a = Attester::new(Arc::new(ConfigfsTsm), expected).attest(&id)?;
    let m = &a.measurements;
    println!(
        "TDX quote for provider {} on coalition {:?}",
        id.provider_id, id.coalition
    );
    println!(
        "MR_TD  {}  {}",
        m.mrtd,
        match (a.mrtd_ok, expected) {
            (Some(true), _) => "ok (matches attestation.expected_mrtd)".to_string(),
            (Some(false), Some(e)) => format!("MISMATCH: attestation.expected_mrtd is {e}"),
            _ => "(no attestation.expected_mrtd to compare with)".to_string(),
        }
    );
    for (i, r) in m.rtmr.iter().enumerate() {
        println!("RTMR{i}  {r}");
    }
    println!(
        "report data  {} (SHA-512 of the card identity; see README, Attestation)",
        hex::encode(id.report_data())
    );
    println!("quote ({} bytes, base64):", a.quote.len());
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&a.quote)
    );
    Ok(if a.mrtd_ok == Some(false) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn inspect(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: None,
        max_concurrent_calls: 1,
        max_memory_mib: 64,
    })?;
    let header = || {
        println!("{}", file.display());
        println!(
            "  size {} bytes, sha256 {}",
            bytes.len(),
            CompileCache::digest(&bytes)
        );
    };
    let component = match wasmtime::component::Component::new(runtime.engine(), &bytes) {
        Ok(c) => c,
        Err(e) => {
            let e = anyhow::Error::from(e);
            // The sandbox's per-component limits refuse it before it can
            // be looked at: say so, with the reason, as a refusal.
            if let Some(why) = policy::explain_pool_refusal(&e) {
                header();
                println!("verdict: REFUSED");
                println!("  - {why}");
                return Ok(ExitCode::FAILURE);
            }
            return Err(e.context(format!(
                "{} is not a valid WebAssembly component",
                file.display()
            )));
        }
    };
    let report = policy::check(runtime.engine(), &component);
    header();
    if let Some(r) = &report.resources {
        println!(
            "  sandbox: {} linear memor{}, {} table{} per instance (at most {} and {})",
            r.memories,
            if r.memories == 1 { "y" } else { "ies" },
            r.tables,
            if r.tables == 1 { "" } else { "s" },
            policy::MAX_MEMORIES,
            policy::MAX_TABLES
        );
    }
    println!(
        "  world: {}",
        if report.conforms() {
            policy::WORLD
        } else {
            "(does not conform to the backend world)"
        }
    );
    println!("  imports:");
    for i in &report.imports {
        match &i.refused {
            None => println!("    ok      {}  ({})", i.name, i.purpose),
            Some(why) => println!("    REFUSED {}  ({why})", i.name),
        }
    }
    println!("  exports:");
    for e in &report.exports {
        println!("    {e}");
    }
    if report.conforms() {
        println!("verdict: the bridge will load this component");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verdict: REFUSED");
        for v in &report.violations {
            println!("  - {v}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn scaffold(name: &str, dir: Option<&Path>, sdk_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    let sdk = match sdk_path {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/sdk");
            built_from.is_dir().then_some(built_from)
        }
    };
    let files = compute_bridge::template::render(name, sdk.as_deref())?;
    compute_bridge::template::write(&dir, &files)?;
    println!("created {} ({} files)", dir.display(), files.len());
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --release");
    println!(
        "  compute-bridge components inspect target/wasm32-wasip2/release/{}.wasm",
        compute_bridge::template::wasm_stem(name)
    );
    Ok(ExitCode::SUCCESS)
}

fn conformance(file: &Path, config: &Path, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut cfg = BootConfig::load(config)?;
    let index = match backend {
        Some(name) => cfg
            .backends
            .iter()
            .position(|b| b.name == name)
            .with_context(|| {
                format!("{}: no [[backends]] entry named {name:?}", config.display())
            })?,
        None if cfg.backends.len() == 1 => 0,
        None => anyhow::bail!(
            "{} has {} backends; choose one with --backend NAME",
            config.display(),
            cfg.backends.len()
        ),
    };
    let file =
        std::fs::canonicalize(file).with_context(|| format!("reading {}", file.display()))?;
    cfg.backends[index].component = file.display().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let entry = cfg.backends[index].clone();
    let report = rt.block_on(async {
        let runtime = Runtime::new(&RuntimeOptions::for_config(&cfg))?;
        let (backend, _) = runtime.load_backend(&cfg, &entry, "conformance")?;
        let opts = compute_bridge::conformance::Options {
            deadline: std::time::Duration::from_secs(entry.call_timeout_sec),
            start_timeout: std::time::Duration::from_secs(entry.call_timeout_sec.max(30)),
            workload: compute_bridge::conformance::sample_workload(),
        };
        Ok::<_, anyhow::Error>(compute_bridge::conformance::run(&backend, &opts).await)
    })?;
    println!(
        "conformance of {} as backend {:?}",
        file.display(),
        entry.name
    );
    print!("{}", report.render());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
