//! Start-up: config → identity and journal → runtime → components → fleet,
//! and the routing table; then [`Bridge::serve`] joins the coalition and runs
//! the provider loop until a signal.
//!
//! `compute-bridge run` builds a [`Bridge`] and serves; the dashboard
//! attaches through the event sink and the fleet.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use compute_bridge_sandbox::BootView;
use mosaik::Network;

use crate::attest::{Attested, Attester, ConfigfsTsm, EmulatedTdx, QuoteSource};
use crate::config::{AttestationMode, BootConfig};
use crate::fleet::{Fleet, MemberView, WatchPolicy};
use crate::grant::{ACCESS_WAIT, LoopSettings, ProviderLoop};
use crate::identity::Identity;
use crate::journal::Journal;
use crate::measure::{
    EmulatedRtmr, MeasurementRegister, Measurer, SharedMeasurer, SysfsRtmr3, measurement_of,
};
use crate::swap::Swapper;
use compute_bridge_coalition::attest::CardIdentity;
use compute_bridge_coalition::link::ProviderLink;
use compute_bridge_coalition::relay::{LocalRelay, Rendezvous};
use compute_bridge_coalition::{self as coalition, NetworkSettings};
use compute_bridge_contract::backend::Backend;
use compute_bridge_contract::events::EventSink;
use compute_bridge_sandbox::{ComponentBackend, Runtime, RuntimeOptions};

/// A started bridge.
pub struct Bridge {
    /// The validated config.
    pub config: BootConfig,
    /// This provider's id (as the components see it).
    pub provider_id: String,
    /// The keys and id.
    pub identity: Identity,
    /// The journal (held exclusively: a second bridge on this state dir is
    /// refused at start).
    pub journal: Journal,
    /// The component host.
    pub runtime: Arc<Runtime>,
    /// The sandboxed backends as loaded at start, in config order (a live
    /// swap changes the fleet's, not these).
    pub backends: Vec<Arc<ComponentBackend>>,
    /// The router over them.
    pub fleet: Fleet,
    /// In `tdx` mode, the quote taken at start (bound to the card) and the
    /// attester that refreshes it with every card; `None` in `none` mode.
    pub attestation: Option<(Attester, Attested)>,
    /// The measurement log of the backend components (extended into RTMR3
    /// in `tdx` mode), which the card carries beside the quote.
    pub measurer: SharedMeasurer,
    /// Swaps a backend's component live (`compute-bridge components
    /// swap`).
    pub swapper: Swapper,
}

impl Bridge {
    /// Create the state dir, the runtime, every backend and the fleet,
    /// measure each backend, and ask each for its capabilities. In `tdx`
    /// mode TDX is the kernel's, unless [`crate::measure::EMULATED_RTMR3_ENV`]
    /// names an emulated register.
    pub async fn start(config: BootConfig) -> anyhow::Result<Self> {
        let emulated = match config.attestation.mode {
            AttestationMode::None => None,
            AttestationMode::Tdx => crate::measure::emulated_register()
                .context("attestation.mode = \"tdx\" in the boot config")?,
        };
        Self::start_with(config, emulated).await
    }

    /// [`Self::start`] with TDX emulated over `emulated` (`tdx` mode only;
    /// `None`: the kernel's).
    pub async fn start_with(
        config: BootConfig,
        emulated: Option<Arc<EmulatedRtmr>>,
    ) -> anyhow::Result<Self> {
        let state_dir = config.state_dir();
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
        let identity = Identity::load_or_create(&state_dir)?;
        let provider_id = identity.provider_id.to_string();
        let (register, mut attestation) = match config.attestation.mode {
            AttestationMode::None => (None, None),
            AttestationMode::Tdx => {
                let tdx = "attestation.mode = \"tdx\" in the boot config";
                let source: Arc<dyn QuoteSource> = match &emulated {
                    Some(r) => {
                        tracing::warn!(
                            register = %r.describe(),
                            "EMULATED TDX ({}): RTMR3 is a file and quotes are mock quotes \
                             signed by a test key; requesters refuse them unless they accept \
                             untrusted quote chains. For tests only",
                            crate::measure::EMULATED_RTMR3_ENV
                        );
                        Arc::new(EmulatedTdx { rtmr3: r.clone() })
                    }
                    None => Arc::new(ConfigfsTsm),
                };
                let first = first_quote(&config, &identity, source).await?;
                let register: Arc<dyn MeasurementRegister> = match emulated {
                    Some(r) => r,
                    None => Arc::new(SysfsRtmr3::open().context(tdx)?),
                };
                (Some(register), Some(first))
            }
        };
        let mut measurer = Measurer::open(&state_dir, register)
            .context("opening the measurement log of the backend components")?;
        let journal = Journal::open(&state_dir).context(
            "opening the journal (is another compute-bridge running on this state dir?)",
        )?;
        let runtime = Runtime::new(&RuntimeOptions::for_config(&config))?;
        let mut backends = Vec::new();
        let mut digests = Vec::new();
        for b in &config.backends {
            let spec = config
                .backend_spec(b, &provider_id)
                .with_context(|| format!("starting backend {}", b.name))?;
            let (backend, _) = runtime
                .load(&spec)
                .with_context(|| format!("starting backend {}", b.name))?;
            // Measured before the component serves its first call (the
            // capabilities call below).
            let logged = measurer
                .measure(measurement_of(&spec))
                .with_context(|| format!("measuring backend {}", b.name))?;
            tracing::info!(
                backend = %b.name,
                component = %logged.event.component_sha256,
                policy = %logged.event.policy.summary(),
                event = logged.seq,
                extended = measurer.log().extended,
                "backend measured"
            );
            digests.push(logged.event.component_sha256.to_string());
            backends.push(Arc::new(backend));
        }
        if !measurer.log().extended {
            tracing::info!(
                "attestation.mode = \"none\": the measurement log is kept, nothing is extended \
                 into RTMR3, and the card says so"
            );
        }
        // The card's first quote is taken over the measured register.
        if let Some((attester, _)) = &attestation {
            let attester = attester.clone();
            let id = card_identity(&config, &identity);
            let a = attester.clone();
            let quoted = tokio::task::spawn_blocking(move || a.attest(&id))
                .await
                .context("the quote task")?
                .context("attestation.mode = \"tdx\" in the boot config")?;
            attestation = Some((attester, quoted));
        }
        let measurer = Arc::new(std::sync::Mutex::new(measurer));
        let fleet = Fleet::new(
            backends
                .iter()
                .zip(&config.backends)
                .map(|(b, c)| (b.clone() as Arc<dyn Backend>, c.enabled))
                .collect(),
            config.bridge.concurrency_cap,
        );
        for (b, digest) in config.backends.iter().zip(digests) {
            fleet.set_component(&b.name, digest);
        }
        fleet.refresh_capabilities().await;
        let runtime = Arc::new(runtime);
        let swapper = Swapper::new(
            config.clone(),
            provider_id.clone(),
            runtime.clone(),
            fleet.clone(),
            measurer.clone(),
            Arc::new(tokio::sync::Notify::new()),
        );
        Ok(Self {
            config,
            provider_id,
            identity,
            journal,
            runtime,
            backends,
            fleet,
            attestation,
            measurer,
            swapper,
        })
    }

    /// The identity the card carries and its quote binds.
    pub fn card_identity(&self) -> CardIdentity {
        card_identity(&self.config, &self.identity)
    }

    /// Join the coalition and run the provider loop until `shutdown`,
    /// recording events into `events`. On return the node has left the
    /// coalition and a local relay is stopped.
    pub async fn serve(
        self,
        events: Arc<dyn EventSink>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let state_dir = self.config.state_dir();
        let started = std::time::Instant::now();
        // Before the coalition: `components swap` reaches a bridge that is
        // still joining.
        let control = crate::control::ControlServer::start(&state_dir, self.swapper.clone())
            .context("starting the control socket (`compute-bridge components swap`)")?;
        tokio::pin!(shutdown);
        let node = tokio::select! {
            n = CoalitionNode::join(&self.config, &self.identity) => match n {
                Ok(n) => n,
                Err(e) => {
                    control.stop();
                    return Err(e);
                }
            },
            () = &mut shutdown => {
                control.stop();
                return Ok(());
            }
        };
        tracing::info!(
            network = %self.config.coalition.network,
            peer = %node.network.local().id(),
            listening = %compute_bridge_coalition::describe_bind(self.config.coalition.node_bind()),
            ms = started.elapsed().as_millis() as u64,
            "joined the coalition"
        );
        let link = ProviderLink::open(
            node.network.clone(),
            node.bootstrap.clone(),
            self.identity.provider_id,
        );
        let settings = LoopSettings {
            coalition: self.config.coalition.network.clone(),
            capacity_refresh: Duration::from_secs(self.config.bridge.capacity_refresh_sec),
            watch: WatchPolicy::default(),
            access_wait: ACCESS_WAIT,
            attestation: self.attestation.clone(),
            measurer: Some(self.measurer.clone()),
            sweep_backends: self
                .config
                .backends
                .iter()
                .filter(|b| b.sweep_orphans)
                .map(|b| b.name.clone())
                .collect(),
        };
        let provider = ProviderLoop::new(
            self.identity.envelope,
            self.fleet,
            self.journal,
            link,
            events,
            settings,
        )
        .with_card_trigger(self.swapper.card_trigger());
        let relays = tokio::spawn(compute_bridge_coalition::watch_relays(
            node.network.local().endpoint().clone(),
        ));
        let result = provider.run(shutdown).await;
        control.stop();
        relays.abort();
        node.leave(&state_dir).await;
        result
    }

    /// Log the routing table, one line per backend in routing order.
    pub fn log_routing_table(&self) {
        tracing::info!(
            cap = self.config.bridge.concurrency_cap,
            "routing table: grants try these backends in order"
        );
        for (i, (m, cfg)) in self
            .fleet
            .members()
            .iter()
            .zip(&self.config.backends)
            .enumerate()
        {
            tracing::info!("  {}. {}", i + 1, routing_line(m, &cfg.sections.routing()));
        }
    }
}

/// The identity the card of `identity` on `config`'s coalition carries.
fn card_identity(config: &BootConfig, identity: &Identity) -> CardIdentity {
    CardIdentity {
        provider_id: identity.provider_id,
        envelope_key: identity.envelope.public(),
        coalition: config.coalition.network.clone(),
    }
}

/// Take the first quote (through configfs-tsm unless TDX is emulated), so a `tdx` bridge on a
/// machine without TDX stops at start with what is missing.
async fn first_quote(
    config: &BootConfig,
    identity: &Identity,
    source: Arc<dyn QuoteSource>,
) -> anyhow::Result<(Attester, Attested)> {
    let attester = Attester::new(source, config.attestation.expected());
    let id = card_identity(config, identity);
    let a = attester.clone();
    let attested = tokio::task::spawn_blocking(move || a.attest(&id))
        .await
        .context("the quote task")?
        .context("attestation.mode = \"tdx\" in the boot config")?;
    let m = &attested.measurements;
    match attested.mrtd_ok {
        Some(false) => tracing::error!(
            mrtd = %m.mrtd,
            expected = %config.attestation.expected_mrtd.as_deref().unwrap_or_default(),
            "MR_TD MISMATCH: this guest is not the image attestation.expected_mrtd names; \
             requesters that require that MR_TD will refuse this provider"
        ),
        _ => tracing::info!(mrtd = %m.mrtd, "TDX quote taken; MR_TD as expected"),
    }
    Ok((attester, attested))
}

/// One routing-table line: name, state, regions, TDX, capacity, and what
/// each capability lists of what it grants (`Sections::routing`, in the
/// capabilities' list order: `http=[…] ssh=[…]`).
pub fn routing_line(m: &MemberView, granted: &[(&str, Vec<String>)]) -> String {
    let offer = match &m.offer {
        Some(c) => format!(
            "regions=[{}] tdx={} capacity={}m/{}MiB",
            c.regions.join(","),
            if c.tdx_capable { "yes" } else { "no" },
            c.max_cpu_millicores,
            c.max_ram_mib
        ),
        None => "capabilities=unavailable".to_string(),
    };
    let mut line = format!(
        "{:<12} {:<8} {offer}",
        m.name,
        if m.enabled { "enabled" } else { "disabled" },
    );
    for (section, words) in granted {
        line.push_str(&format!(" {section}=[{}]", words.join(",")));
    }
    line
}

/// The bridge's node on the coalition, and the relay it runs for a local
/// coalition.
struct CoalitionNode {
    network: Arc<Network>,
    bootstrap: Vec<mosaik::iroh::EndpointAddr>,
    relay: Option<LocalRelay>,
}

impl CoalitionNode {
    async fn join(config: &BootConfig, identity: &Identity) -> anyhow::Result<Self> {
        let c = &config.coalition;
        let bind = c.node_bind();
        let joined = |settings: NetworkSettings| async move {
            coalition::join(&settings, Some(identity.node_key.clone()))
                .await
                .with_context(|| match bind {
                    Some(ip) => format!(
                        "the coalition node binds to {ip} (coalition.bind): is that an \
                         address of this machine?"
                    ),
                    None => "joining the coalition".into(),
                })
        };
        if !c.is_local() {
            let settings =
                NetworkSettings::parse(&c.network, &c.relays, &c.bootstrap, false)?.with_bind(bind);
            let network = joined(settings.clone()).await?;
            return Ok(Self {
                network: Arc::new(network),
                bootstrap: settings.bootstrap,
                relay: None,
            });
        }
        let relay = LocalRelay::spawn_keeping_port(
            &config.state_dir(),
            bind.expect("a local coalition binds an address"),
        )
        .await?;
        let settings = NetworkSettings::parse(&c.network, &[relay.url().to_string()], &[], false)?
            .with_bind(bind);
        let network = joined(settings.clone()).await?;
        let bootstrap =
            coalition::format_peer_addr(&network.local().addr(), settings.relays.first());
        Rendezvous {
            network: c.network.clone(),
            relay: relay.url().to_string(),
            bootstrap: bootstrap.clone(),
            pid: std::process::id(),
        }
        .write(&config.state_dir())?;
        tracing::info!(
            relay = relay.url(),
            bootstrap = %bootstrap,
            rendezvous = %Rendezvous::path(&config.state_dir()).display(),
            "local coalition: agents on this machine join with the same config \
             (`coalition-agent request --config FILE ...`), or with \
             `--relay RELAY --bootstrap BOOTSTRAP`"
        );
        Ok(Self {
            network: Arc::new(network),
            bootstrap: Vec::new(),
            relay: Some(relay),
        })
    }

    async fn leave(self, state_dir: &std::path::Path) {
        if self.relay.is_some() {
            Rendezvous::remove_if_mine(state_dir);
        }
        // Close the endpoint before dropping it: peers see a clean goodbye
        // instead of a timeout, and iroh does not log an abort.
        let endpoint = self.network.local().endpoint().clone();
        drop(self.network);
        if tokio::time::timeout(std::time::Duration::from_secs(5), endpoint.close())
            .await
            .is_err()
        {
            tracing::debug!("the coalition endpoint took over 5 s to close; dropping it");
        }
        if let Some(r) = self.relay {
            r.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::backend::Offer;

    /// The routing table's lines, word for word: the re-cut into crates
    /// (issue 18) must not change what the operator reads in the log.
    #[test]
    fn routing_lines_read_as_pinned() {
        let answered = MemberView {
            name: "rack-1".into(),
            enabled: true,
            offer: Some(Offer {
                regions: vec!["eu-west-1".into(), "home-01".into()],
                tdx_capable: true,
                max_cpu_millicores: 48_000,
                max_ram_mib: 196_608,
                td_measurements: vec![],
            }),
            used_cpu_millicores: 0,
            used_ram_mib: 0,
            active_grants: 0,
        };
        assert_eq!(
            routing_line(
                &answered,
                &[
                    (
                        "http",
                        vec!["https://api.example.com".into(), "https://b.example".into()]
                    ),
                    ("ssh", vec!["rack-01 (ssh)".into()]),
                ]
            ),
            "rack-1       enabled  regions=[eu-west-1,home-01] tdx=yes capacity=48000m/196608MiB \
             http=[https://api.example.com,https://b.example] ssh=[rack-01 (ssh)]"
        );
        let silent = MemberView {
            name: "a-very-long-backend".into(),
            enabled: false,
            offer: None,
            ..answered
        };
        assert_eq!(
            routing_line(&silent, &[("http", vec![]), ("ssh", vec![])]),
            "a-very-long-backend disabled capabilities=unavailable http=[] ssh=[]"
        );
    }
}
