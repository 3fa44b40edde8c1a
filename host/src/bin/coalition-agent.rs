//! `coalition-agent`: play a coalition requester against a compute-bridge,
//! for smoke tests, demos and the test suite.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use compute_bridge_coalition::NetworkSettings;
use compute_bridge_coalition::attest::{CardVerdict, ChainPolicy, VerifyPolicy};
use compute_bridge_contract::backend::TdxRequirement;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::measurement::{ComponentDigest, Measurement};
use compute_bridge_contract::protocol::{ProviderId, parse_usd};
use compute_bridge_requester::{
    Agent, AgentNetwork, DEFAULT_IMAGE, HostKeyPolicy, Progress, RequestError, RequestSpec,
    write_access,
};

/// Ask a coalition's compute providers for work, the way a coalition agent
/// does: list provider cards, request compute and receive sealed SSH access
/// and a usage report, credit a provider with a settlement.
#[derive(Parser)]
#[command(name = "coalition-agent", version, about, long_about = None)]
#[command(
    after_help = "With a bridge running on this machine (`compute-bridge run`), \
    `coalition-agent request --cpu 100 --ram 64 --duration 30s` reaches it with no other flag; \
    give `--config FILE` when the bridge runs with `--config FILE`."
)]
struct Cli {
    #[command(flatten)]
    net: NetFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct NetFlags {
    /// Take the coalition from this bridge config (for a local coalition:
    /// from the rendezvous file in the state dir it names). Without it and
    /// without --relay, the bridge's embedded default.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Coalition name.
    #[arg(long, global = true, value_name = "NAME")]
    network: Option<String>,
    /// Relay URL (repeatable).
    #[arg(long = "relay", global = true, value_name = "URL")]
    relays: Vec<String>,
    /// Bootstrap peer `PEER_ID@RELAY_URL` (repeatable).
    #[arg(long, global = true, value_name = "PEER")]
    bootstrap: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// List the provider cards on the coalition.
    Providers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to wait for cards to arrive (as long as `request` waits
        /// to find its provider's card; the wait ends once `--at-least`
        /// cards are there, so only an empty coalition waits it out).
        #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Wait (up to --wait) until at least this many cards are there.
        #[arg(long, default_value_t = 1, value_name = "N")]
        at_least: usize,
    },
    /// Request compute from a provider and wait for access and the usage
    /// report.
    Request {
        /// Provider id (optional when the coalition has one provider).
        #[arg(long, value_name = "ID")]
        provider: Option<ProviderId>,
        /// CPU, millicores.
        #[arg(long, value_name = "M")]
        cpu: u32,
        /// Memory, MiB.
        #[arg(long, value_name = "MIB")]
        ram: u32,
        /// Image, pinned by digest (`NAME@sha256:...`).
        #[arg(long, value_name = "REF", default_value = DEFAULT_IMAGE)]
        image: String,
        /// How long the grant is valid (`60s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Region.
        #[arg(long)]
        region: Option<String>,
        /// TDX requirement: none, preferred or required.
        #[arg(long, default_value = "none", value_parser = parse_tdx)]
        tdx: TdxRequirement,
        /// Directory for the access key (created, mode 0700); a fresh
        /// temporary directory if omitted.
        #[arg(long, value_name = "DIR")]
        key_dir: Option<PathBuf>,
        /// Refuse the provider unless its card carries a TDX quote, bound
        /// to the card, whose MR_TD is this (96 hex digits).
        #[arg(long, value_name = "HEX")]
        require_mrtd: Option<Measurement>,
        /// Accept a TDX quote whose certificate chain does not lead to
        /// Intel's root CA (test quotes only; signature, binding and MR_TD
        /// are still checked).
        #[arg(long)]
        allow_untrusted_quote_chain: bool,
        /// `NAME=sha256:HEX`: refuse the provider unless backend NAME's
        /// measured component is this one (repeatable). Every backend the
        /// card offers must then be named, and the card must be attested:
        /// its measurement log must replay to its quote's RTMR3.
        #[arg(long, value_name = "PIN", value_parser = parse_component)]
        require_component: Vec<(String, ComponentDigest)>,
        /// As --require-component, one `NAME=sha256:HEX` a line (blank lines
        /// and `#` comments skipped).
        #[arg(long, value_name = "FILE")]
        require_components: Option<PathBuf>,
        /// Accept an access that names no SSH host key for the workload
        /// (cloud backends cannot know it before the machine boots):
        /// trust the key the first connection sees and pin it from then on
        /// (OpenSSH's StrictHostKeyChecking=accept-new, in the key
        /// directory's known_hosts). Without it such an access is refused.
        #[arg(long)]
        accept_new_host_key: bool,
        /// Write this requester's identity as the provider could learn it
        /// (its peer id, the reply key's public half, the request id) to
        /// FILE as JSON once the grant is sent, mode 0600: for privacy
        /// tests that look for it on the provider's side.
        #[arg(long, value_name = "FILE")]
        debug_identity_file: Option<PathBuf>,
    },
    /// Credit a provider with settled revenue.
    Settle {
        /// Provider id (optional when the coalition has one provider).
        #[arg(long, value_name = "ID")]
        provider: Option<ProviderId>,
        /// Amount in US dollars.
        #[arg(long, value_name = "X", value_parser = parse_usd)]
        usd: u64,
        /// The period it covers, ending now.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        window: Duration,
    },
}

/// How a card's verification reads after the request line.
fn describe(verdict: &CardVerdict) -> String {
    match verdict {
        CardVerdict::Unattested => "card not attested".into(),
        CardVerdict::Attested {
            measurements,
            chain_verified: true,
        } => format!("card attested: MR_TD {}", measurements.mrtd),
        CardVerdict::Attested {
            measurements,
            chain_verified: false,
        } => format!(
            "card attested WITHOUT a verified Intel chain: MR_TD {}",
            measurements.mrtd
        ),
    }
}

/// Write `text` to `file`, readable by its owner only.
fn write_private(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing the debug identity file {}", file.display()))
}

/// `NAME=sha256:HEX`.
fn parse_component(s: &str) -> Result<(String, ComponentDigest), String> {
    let (name, digest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use NAME=sha256:HEX"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{s:?}: the backend name is empty"));
    }
    Ok((name.to_string(), digest.parse()?))
}

/// The flags' and the file's requirements, one per backend.
fn required_components(
    flags: Vec<(String, ComponentDigest)>,
    file: Option<PathBuf>,
) -> anyhow::Result<std::collections::BTreeMap<String, ComponentDigest>> {
    use anyhow::Context;
    let mut all = flags;
    if let Some(file) = file {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading --require-components {}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            all.push(parse_component(line).map_err(|e| {
                anyhow::anyhow!(
                    "--require-components {} line {}: {e}",
                    file.display(),
                    i + 1
                )
            })?);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, digest) in all {
        if let Some(other) = out.insert(name.clone(), digest)
            && other != digest
        {
            anyhow::bail!("backend {name} is required to run two components: {other} and {digest}");
        }
    }
    Ok(out)
}

fn parse_tdx(s: &str) -> Result<TdxRequirement, String> {
    match s {
        "none" => Ok(TdxRequirement::None),
        "preferred" => Ok(TdxRequirement::Preferred),
        "required" => Ok(TdxRequirement::Required),
        _ => Err(format!("{s:?}: use none, preferred or required")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COALITION_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,iroh=error"));
    // Colours only on a terminal and without NO_COLOR, as the bridge's: a
    // log redirected to a file or a pipe gets plain lines.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match network_settings(&cli).and_then(|settings| rt.block_on(run(cli, settings))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the coalition is, from the command line and the config. For a
/// local coalition this waits (blocking, up to `providers --wait` or the
/// card deadline) for the bridge's rendezvous file, so it runs before the
/// async runtime starts rather than inside it.
fn network_settings(cli: &Cli) -> anyhow::Result<NetworkSettings> {
    AgentNetwork {
        config: cli.net.config.clone(),
        network: cli.net.network.clone(),
        relays: cli.net.relays.clone(),
        bootstrap: cli.net.bootstrap.clone(),
        // A local bridge still starting (or not started yet) is waited
        // for: as long as `providers --wait`, or as `request` waits for
        // its provider's card.
        wait_for_bridge: match &cli.command {
            Command::Providers { wait, .. } => *wait,
            _ => compute_bridge_requester::FIND_TIMEOUT,
        },
    }
    .resolve()
}

async fn run(cli: Cli, settings: NetworkSettings) -> anyhow::Result<ExitCode> {
    let agent = Agent::join(&settings).await?;
    let result = command(&agent, &settings, cli.command).await;
    agent.close().await;
    result
}

async fn command(
    agent: &Agent,
    settings: &NetworkSettings,
    command: Command,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Providers {
            json,
            wait,
            at_least,
        } => {
            let cards = agent.providers(wait, at_least).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&cards)?);
                return Ok(ExitCode::SUCCESS);
            }
            if cards.is_empty() {
                println!(
                    "no provider cards on {} (waited {wait:?})",
                    settings.network
                );
                return Ok(ExitCode::FAILURE);
            }
            for c in cards {
                println!(
                    "{}  coalition={} version={} grants={}/{} attestation={} refreshed {}s ago{}",
                    c.provider_id,
                    c.coalition,
                    c.module_version,
                    c.active_grants,
                    c.concurrency_cap,
                    match c.attestation {
                        compute_bridge_contract::protocol::Attestation::None => "none",
                        compute_bridge_contract::protocol::Attestation::Tdx { .. } => "tdx",
                    },
                    now_unix().saturating_sub(c.refreshed_at),
                    if c.is_self_consistent() {
                        ""
                    } else {
                        "  (INCONSISTENT: id does not match its envelope key)"
                    }
                );
                // The log replayed against the quote (test chains accepted
                // here: this is a listing; `request` applies the policy).
                let lenient = VerifyPolicy {
                    chain: ChainPolicy::AllowUntrusted,
                    ..Default::default()
                };
                println!(
                    "  measurements: {} event(s), {}",
                    c.measurements.events.len(),
                    match compute_bridge_coalition::attest::verify_card(&c, &lenient) {
                        Ok(CardVerdict::Attested { .. }) => {
                            "the log replays to the quote's RTMR3".to_string()
                        }
                        Ok(CardVerdict::Unattested) => {
                            "not extended (attestation = none): the log proves nothing".to_string()
                        }
                        Err(e) => format!("REFUSED: {e}"),
                    }
                );
                for b in &c.backends {
                    println!(
                        "    {:<12} {:<8} regions=[{}] tdx={} cpu {}/{}m ram {}/{}MiB",
                        b.name,
                        if b.enabled { "enabled" } else { "disabled" },
                        b.regions.join(","),
                        if b.tdx_capable { "yes" } else { "no" },
                        b.used_cpu_millicores,
                        b.max_cpu_millicores,
                        b.used_ram_mib,
                        b.max_ram_mib
                    );
                    for m in &b.td_measurements {
                        println!("      TD guests in {}: mrtd={}", m.region, m.mrtd);
                    }
                    match c.measurements.current(&b.name) {
                        Some(e) => println!(
                            "      measured{}: component {} {}",
                            if c.measurements.extended {
                                ""
                            } else {
                                " (log only, not extended)"
                            },
                            e.component_sha256,
                            e.policy.summary()
                        ),
                        None => println!("      not measured"),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Request {
            provider,
            cpu,
            ram,
            image,
            duration,
            region,
            tdx,
            key_dir,
            require_mrtd,
            allow_untrusted_quote_chain,
            require_component,
            require_components,
            accept_new_host_key,
            debug_identity_file,
        } => {
            let require_components = required_components(require_component, require_components)?;
            let spec = RequestSpec {
                provider,
                cpu_millicores: cpu,
                ram_mib: ram,
                image,
                duration,
                region,
                tdx,
                verify: VerifyPolicy {
                    require_mrtd,
                    chain: if allow_untrusted_quote_chain {
                        ChainPolicy::AllowUntrusted
                    } else {
                        ChainPolicy::IntelRoot
                    },
                    require_components,
                },
                host_key: if accept_new_host_key {
                    HostKeyPolicy::AcceptNew
                } else {
                    HostKeyPolicy::Require
                },
            };
            let started = std::time::Instant::now();
            let mut failure: Option<anyhow::Error> = None;
            let result = agent
                .request(&spec, |p| match p {
                    Progress::Sent {
                        request_id,
                        provider,
                        verdict,
                        reply_key,
                    } => {
                        println!(
                            "request {request_id} sent to provider {} ({})",
                            provider.provider_id,
                            describe(&verdict)
                        );
                        if let Some(file) = &debug_identity_file {
                            let identity = serde_json::json!({
                                "peer_id": agent.peer_id().to_string(),
                                "reply_key": hex::encode(reply_key),
                                "request_id": request_id.to_string(),
                            });
                            if let Err(e) = write_private(file, &identity.to_string()) {
                                failure = Some(e);
                            }
                        }
                    }
                    Progress::Access { bundle, after } => {
                        let dir = key_dir.clone().unwrap_or_else(|| {
                            std::env::temp_dir()
                                .join(format!("coalition-agent-{}", hex::encode(rand::random::<[u8; 6]>())))
                        });
                        match write_access(&dir, &bundle) {
                            Ok(cmd) => {
                                println!(
                                    "access opened with the reply key {} ms after the grant was sent \
                                     ({} ms after start); log in with:",
                                    after.as_millis(),
                                    started.elapsed().as_millis()
                                );
                                println!("  {cmd}");
                                println!("waiting for the usage report (the grant ends in at most {duration:?})");
                            }
                            Err(e) => failure = Some(e),
                        }
                    }
                    Progress::Usage(r) => {
                        println!(
                            "usage report: {} cpu_core_seconds={} ram_mib_seconds={} net_bytes={}",
                            r.ending,
                            r.usage.cpu_core_seconds,
                            r.usage.ram_mib_seconds,
                            r.usage.net_bytes
                        );
                    }
                })
                .await;
            if let Some(e) = failure {
                return Err(e);
            }
            match result {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(RequestError::Declined(reason)) => {
                    println!("declined: {}", reason.as_str());
                    Ok(ExitCode::from(3))
                }
                Err(e @ RequestError::Refused { .. }) => {
                    println!("{e}; no grant sent");
                    Ok(ExitCode::from(4))
                }
                Err(e @ RequestError::AccessRefused { .. }) => {
                    println!("{e}");
                    Ok(ExitCode::from(5))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Settle {
            provider,
            usd,
            window,
        } => {
            let card = agent.settle(provider, usd, window).await?;
            println!(
                "settlement of ${:.6} sent to provider {}",
                usd as f64 / 1e6,
                card.provider_id
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
