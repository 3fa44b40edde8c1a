//! `compute-bridge`: the daemon and its operator commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod commands;

use commands::components;

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

/// The language of a new backend.
#[derive(Clone, Copy, ValueEnum)]
enum Lang {
    Rust,
    Python,
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
        /// The backend's language: `rust` (a crate over compute-bridge-sdk)
        /// or `python` (built with componentize-py, with the bridge_sdk
        /// module and the world's WIT).
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Use this compute-bridge-sdk checkout instead of the one this
        /// binary was built from (Rust only).
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
        } => commands::run::run(config.as_deref(), dashboard_port),
        Command::CheckConfig { config } => commands::check_config::run(config.as_deref()),
        Command::Attest { config } => commands::attest::run(config.as_deref()),
        Command::Components(ComponentsCommand::Inspect { file }) => components::inspect::run(&file),
        Command::Components(ComponentsCommand::New {
            name,
            dir,
            lang,
            sdk_path,
        }) => components::new::run(
            &name,
            dir.as_deref(),
            match lang {
                Lang::Rust => compute_bridge_daemon::template::Lang::Rust,
                Lang::Python => compute_bridge_daemon::template::Lang::Python,
            },
            sdk_path.as_deref(),
        ),
        Command::Components(ComponentsCommand::Test {
            file,
            config,
            backend,
        }) => components::test::run(&file, &config, backend.as_deref()),
        Command::Components(ComponentsCommand::Swap {
            backend,
            file,
            config,
        }) => components::swap::run(&backend, &file, config.as_deref()),
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
/// ([`compute_bridge_daemon::logging`]). Lines reach stderr from a thread of
/// their own; the guard returned waits for them when dropped.
fn init_tracing() -> compute_bridge_daemon::logging::Flush {
    let spec = std::env::var("COMPUTE_BRIDGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (warning, flush) =
        compute_bridge_daemon::logging::init(spec.as_deref(), ansi, std::io::stderr());
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    flush
}
