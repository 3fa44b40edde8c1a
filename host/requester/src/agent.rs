//! The requester's side, as `coalition-agent` runs it: find a provider's
//! card, send it a sealed grant, open the access bundle with the one-time
//! reply key, wait for the usage report; and send settlements.
//!
//! Which coalition to join comes from flags or from a bridge's config file
//! ([`AgentNetwork`]); for a local coalition it is read from the rendezvous
//! file the bridge writes in its state dir.
//!
//! The requester trusts no provider with its shell: an opened access bundle
//! is checked field by field ([`AccessBundle::check`]) before anything is
//! written or printed, the `ssh` command it prints has every field quoted
//! for a POSIX shell, and the workload's host key is pinned in a
//! `known_hosts` file of the access's own. An access without a host key
//! (a cloud backend cannot know it before the machine boots) is refused
//! unless the requester asked to trust the first key seen
//! ([`HostKeyPolicy::AcceptNew`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use compute_bridge_coalition::attest::{self, CardRejected, CardVerdict, VerifyPolicy};
use compute_bridge_coalition::envelope::{self, EnvelopeKey};
use compute_bridge_coalition::link::{ProviderSession, Reply, RequesterLink};
use compute_bridge_coalition::relay::Rendezvous;
use compute_bridge_coalition::{self as coalition, CoalitionConfig, NetworkSettings};
use compute_bridge_contract::backend::TdxRequirement;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::{
    AccessBundle, ComputeGrant, DeclineReason, Manifest, PROTOCOL_VERSION, ProviderCard,
    ProviderId, RequestId, Settlement, UsageReport, Window,
};

/// The image a request runs when none is given: the empty image (its digest
/// is SHA-256 of nothing). Backends that hand out a plain SSH account (bare
/// metal, the fake) do not look at the image.
pub const DEFAULT_IMAGE: &str =
    "scratch@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How long to wait for a provider's card and subscriptions.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(45);

/// The bridge's embedded default config (`config/local.toml`), which the
/// agent follows when given neither a config nor a relay. The file itself,
/// embedded here as the daemon embeds it for `compute-bridge run`, so the
/// two cannot disagree on where a default bridge is; the requester does not
/// depend on the daemon's config to get it.
const BRIDGE_DEFAULT_CONFIG: &str = include_str!("../../../config/local.toml");

/// The parts of a bridge config the agent reads: the `[coalition]` section,
/// through the coalition floor's own type (the one the daemon reads), and
/// `[bridge] state_dir`, where a local bridge's rendezvous file is. Other
/// sections and keys are ignored and nothing is validated or expanded
/// beyond them, so the agent can take a bridge's production config without
/// its secrets.
#[derive(Debug, Default, Deserialize)]
struct BridgeView {
    #[serde(default)]
    bridge: BridgeSection,
    #[serde(default)]
    coalition: CoalitionConfig,
}

#[derive(Debug, Deserialize)]
struct BridgeSection {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
}

impl Default for BridgeSection {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".compute-bridge")
}

/// Where the agent finds the coalition.
#[derive(Debug, Clone, Default)]
pub struct AgentNetwork {
    /// A bridge config to take the coalition from (the embedded default if
    /// `None` and no relay is given).
    pub config: Option<PathBuf>,
    /// Coalition name (overrides the config's).
    pub network: Option<String>,
    /// Relay URLs (override the config's).
    pub relays: Vec<String>,
    /// Bootstrap peers (override the config's).
    pub bootstrap: Vec<String>,
    /// For a local coalition: how long to wait for the bridge to write its
    /// rendezvous file (a bridge just started writes it once its node is
    /// up). Zero: do not wait.
    pub wait_for_bridge: Duration,
}

impl AgentNetwork {
    /// Resolve into network settings.
    pub fn resolve(&self) -> anyhow::Result<NetworkSettings> {
        let (view, base) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let view: BridgeView = toml::from_str(&text)
                    .with_context(|| format!("reading the coalition from {}", path.display()))?;
                let base = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (view, base)
            }
            None if !self.relays.is_empty() => (BridgeView::default(), PathBuf::from(".")),
            None => (
                toml::from_str(BRIDGE_DEFAULT_CONFIG).expect("the embedded default parses"),
                PathBuf::from("."),
            ),
        };
        let network = self
            .network
            .clone()
            .unwrap_or_else(|| view.coalition.network.clone());
        if !self.relays.is_empty() {
            let bootstrap = if self.bootstrap.is_empty() {
                &view.coalition.bootstrap
            } else {
                &self.bootstrap
            };
            return NetworkSettings::parse(&network, &self.relays, bootstrap, false);
        }
        let c = &view.coalition;
        if c.is_local() {
            let state_dir = if view.bridge.state_dir.is_absolute() {
                view.bridge.state_dir.clone()
            } else {
                base.join(&view.bridge.state_dir)
            };
            let r = Rendezvous::read_waiting(&state_dir, self.wait_for_bridge)?;
            if r.network != network {
                anyhow::bail!(
                    "the local bridge in {} serves coalition {:?}, not {network:?}",
                    state_dir.display(),
                    r.network
                );
            }
            let bootstrap = if self.bootstrap.is_empty() {
                vec![r.bootstrap]
            } else {
                self.bootstrap.clone()
            };
            return Ok(
                NetworkSettings::parse(&network, &[r.relay], &bootstrap, true)?
                    .with_rendezvous(state_dir),
            );
        }
        let bootstrap = if self.bootstrap.is_empty() {
            &c.bootstrap
        } else {
            &self.bootstrap
        };
        NetworkSettings::parse(
            &network,
            &c.relays,
            bootstrap,
            c.bind.is_some_and(|ip| ip.is_loopback()),
        )
    }
}

/// A local coalition's rendezvous file as an agent follows it: the state
/// dir, the relay the file named when last read, and whether the node has
/// moved to another relay since it joined.
struct FollowedRendezvous {
    state_dir: PathBuf,
    relay: std::sync::Mutex<(Option<mosaik::iroh::RelayUrl>, bool)>,
}

/// A requester on the coalition.
pub struct Agent {
    link: RequesterLink,
    /// For a local coalition, its rendezvous file as followed (see
    /// [`Self::follow_rendezvous`]).
    rendezvous: Option<FollowedRendezvous>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
}

/// What to do with an access that names no host key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse it: the `ssh` command would trust whatever host answers.
    #[default]
    Require,
    /// Trust the key the first connection sees and pin it from then on
    /// (OpenSSH's `StrictHostKeyChecking=accept-new`, into the access's
    /// own `known_hosts`).
    AcceptNew,
}

/// What to ask for.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The provider (any, if there is exactly one).
    pub provider: Option<ProviderId>,
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// Image pinned by digest.
    pub image: String,
    /// How long.
    pub duration: Duration,
    /// Region.
    pub region: Option<String>,
    /// TDX requirement.
    pub tdx: TdxRequirement,
    /// What the provider's card must prove before a grant is sent.
    pub verify: VerifyPolicy,
    /// What to do with an access that names no host key.
    pub host_key: HostKeyPolicy,
}

/// Something that happened to a request, in order.
#[derive(Debug)]
pub enum Progress {
    /// The provider was found and the grant sent.
    Sent {
        /// The grant.
        request_id: RequestId,
        /// The provider.
        provider: ProviderCard,
        /// What its card proved.
        verdict: CardVerdict,
        /// The public half of the one-time reply key sealed into the grant
        /// (the requester's own secret to keep; `--debug-identity-file`
        /// hands it to a test).
        reply_key: [u8; 32],
    },
    /// Access arrived and opened with the reply key.
    Access {
        /// The bundle.
        bundle: AccessBundle,
        /// Time from sending the grant to opening the access.
        after: Duration,
    },
    /// The usage report.
    Usage(UsageReport),
}

/// How a request ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The provider declined.
    #[error("the provider declined the grant: {}", .0.as_str())]
    Declined(DeclineReason),
    /// The provider's card failed verification; no grant was sent.
    #[error("refusing provider {provider}: {reason}")]
    Refused {
        /// The provider.
        provider: ProviderId,
        /// Why.
        reason: CardRejected,
    },
    /// Access arrived but did not open with the reply key.
    #[error("the access bundle did not open with this request's reply key")]
    AccessUnopenable,
    /// Access opened, but handing it over would not be safe; nothing was
    /// written or printed. The workload runs until its grant ends.
    #[error("refusing the access from provider {provider}: {reason}")]
    AccessRefused {
        /// The provider.
        provider: ProviderId,
        /// Why (values escaped and cut short).
        reason: String,
    },
    /// Nothing came back in time.
    #[error("{0}")]
    Timeout(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Agent {
    /// Join the coalition (a fresh, throwaway node identity).
    pub async fn join(settings: &NetworkSettings) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let network = coalition::join(settings, None).await?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "joined the coalition"
        );
        let rendezvous = settings
            .rendezvous
            .clone()
            .map(|state_dir| FollowedRendezvous {
                state_dir,
                relay: std::sync::Mutex::new((settings.relays.first().cloned(), false)),
            });
        Ok(Self {
            link: RequesterLink::open(Arc::new(network), settings.bootstrap.clone()),
            rendezvous,
        })
    }

    /// For a local coalition: read the bridge's rendezvous file again and,
    /// if a live bridge now names another relay than the one in use (its
    /// relay's port was taken when it restarted), move this node to that
    /// relay. Returns the live bridge's bootstrap address once the node has
    /// moved (this time or before), to sync with: the catalog's address for
    /// the provider names the old relay until a sync over the new one
    /// succeeds. A file left by a crashed bridge changes nothing.
    async fn follow_rendezvous(&self) -> Option<mosaik::iroh::EndpointAddr> {
        let followed = self.rendezvous.as_ref()?;
        let in_use = &followed.relay;
        let r = Rendezvous::read_live(&followed.state_dir)?;
        let new = coalition::parse_relay_url(&r.relay).ok()?;
        let boot = coalition::parse_peer_addr(&r.bootstrap).ok()?;
        let (old, moved) = in_use.lock().expect("not poisoned").clone();
        if old.as_ref() == Some(&new) {
            return moved.then_some(boot);
        }
        tracing::info!(relay = %new, "the local bridge's relay moved; following it");
        let endpoint = self.link.network().local().endpoint().clone();
        endpoint
            .insert_relay(new.clone(), Arc::new(coalition::relay_config(&new)))
            .await;
        if let Some(old) = &old {
            endpoint.remove_relay(old).await;
        }
        *in_use.lock().expect("not poisoned") = (Some(new), true);
        Some(boot)
    }

    /// This agent's node (peer) id on the coalition: what the provider's
    /// node sees it as.
    pub fn peer_id(&self) -> mosaik::PeerId {
        self.link.network().local().id()
    }

    /// Leave the coalition gracefully.
    pub async fn close(self) {
        self.link.network().local().endpoint().close().await;
    }

    /// The provider cards, waiting up to `wait` for at least `at_least`.
    pub async fn providers(&self, wait: Duration, at_least: usize) -> Vec<ProviderCard> {
        self.link
            .wait_for_cards(wait, |c| c.len() >= at_least.max(1))
            .await
    }

    /// The card of `provider` (or the only provider there is).
    pub async fn find(&self, provider: Option<ProviderId>) -> anyhow::Result<ProviderCard> {
        let cards = self
            .link
            .wait_for_cards(FIND_TIMEOUT, |cards| match provider {
                Some(id) => cards.iter().any(|c| c.provider_id == id),
                None => !cards.is_empty(),
            })
            .await;
        let card = match provider {
            Some(id) => cards
                .into_iter()
                .find(|c| c.provider_id == id)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "provider {id} has no card on this coalition (waited {}s)",
                        FIND_TIMEOUT.as_secs()
                    )
                })?,
            None => match cards.len() {
                0 => anyhow::bail!(
                    "no provider card on this coalition (waited {}s): is a bridge running?",
                    FIND_TIMEOUT.as_secs()
                ),
                1 => cards.into_iter().next().expect("one card"),
                _ => anyhow::bail!(
                    "{} providers on this coalition; choose one with --provider: {}",
                    cards.len(),
                    cards
                        .iter()
                        .map(|c| c.provider_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        if !card.is_self_consistent() {
            anyhow::bail!(
                "the card of {} names an envelope key that does not belong to that id; refusing it",
                card.provider_id
            );
        }
        Ok(card)
    }

    /// Subscribe to a provider's node and wait until the subscriptions are
    /// up in both directions.
    pub async fn connect(&self, card: &ProviderCard) -> anyhow::Result<ProviderSession> {
        self.link
            .connect(card.node, FIND_TIMEOUT)
            .await
            .with_context(|| format!("subscribing to provider {}", card.provider_id))
    }

    /// Request compute: `on` is told of each step; returns the usage report.
    pub async fn request(
        &self,
        spec: &RequestSpec,
        mut on: impl FnMut(Progress),
    ) -> Result<UsageReport, RequestError> {
        let started = std::time::Instant::now();
        let card = self.find(spec.provider).await?;
        tracing::info!(ms = started.elapsed().as_millis() as u64, provider = %card.provider_id, "found the provider's card");
        // Before anything is sent: a card that fails is refused.
        let verdict =
            attest::verify_card(&card, &spec.verify).map_err(|reason| RequestError::Refused {
                provider: card.provider_id,
                reason,
            })?;
        let mut session = self.connect(&card).await?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "subscribed to the provider"
        );
        let reply = EnvelopeKey::generate();
        let template = ComputeGrant::unsealed(
            card.provider_id,
            Manifest {
                image: spec.image.clone(),
                cpu_millicores: spec.cpu_millicores,
                ram_mib: spec.ram_mib,
                region: spec.region.clone(),
                tdx: spec.tdx,
            },
            0,
            0,
        );
        // The window starts when the grant goes out, not before a wait for
        // the provider's subscription (see `send_stamped_grant`).
        let stamp = |now: u64| {
            let mut g = template.clone();
            g.valid_from = now;
            g.valid_to = now + spec.duration.as_secs().max(1);
            envelope::seal_grant(&card.envelope_key, &g, &reply.public()).map(|e| {
                g.envelope = e;
                g
            })
        };
        // Sealing fails only on a bad card key: find out before sending.
        stamp(now_unix()).map_err(|e| anyhow::anyhow!("sealing the grant: {e}"))?;
        let sent_at = std::time::Instant::now();
        let grant = session
            .send_stamped_grant(|| {
                stamp(now_unix()).expect("this card's key sealed a grant a moment ago")
            })
            .await
            .map_err(|e| anyhow::anyhow!("sending the grant: {e}"))?;
        tracing::debug!(ms = sent_at.elapsed().as_millis() as u64, "grant sent");
        let request_id = grant.request_id;
        let (now, valid_to) = (grant.valid_from, grant.valid_to);
        on(Progress::Sent {
            request_id,
            provider: card.clone(),
            verdict,
            reply_key: reply.public(),
        });
        // Access comes first; the usage report after the workload ends (at
        // the latest at valid_to, plus time to tear down).
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(valid_to.saturating_sub(now))
            + Duration::from_secs(120);
        let mut have_access = false;
        // A provider that restarts comes back with the same node id but new
        // connections; notice it through its catalog entry and subscribe
        // again, rather than wait for the old connections to time out.
        let network = self.link.network().clone();
        let node = coalition::peer_id(&card.node)?;
        let started_at = || {
            network
                .discovery()
                .catalog()
                .get(&node)
                .map(|e| e.started_at())
        };
        let mut provider_started = started_at();
        let mut check = tokio::time::interval(Duration::from_secs(5));
        check.tick().await;
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout_at(deadline, session.next_reply(request_id)) => r,
                _ = check.tick() => {
                    // A restarted local bridge whose relay port was taken
                    // is on another relay: follow its rendezvous file.
                    let mut peers = vec![coalition::catalog_addr(&network, &node)];
                    peers.extend(self.follow_rendezvous().await.filter(|b| b.id == node));
                    coalition::sync(&network, &peers).await;
                    let now = started_at();
                    if now != provider_started {
                        provider_started = now;
                        tracing::info!("the provider restarted; subscribing again");
                        // The old connections may take a while to be
                        // noticed as gone; keep trying until the deadline.
                        session = loop {
                            match self.connect(&card).await {
                                Ok(s) => break s,
                                Err(e) if tokio::time::Instant::now() < deadline => {
                                    tracing::warn!("{e:#}; trying again");
                                }
                                Err(e) => return Err(e.into()),
                            }
                        };
                        // Its report may have gone out before we were back:
                        // a repeated grant asks for it (a running workload's
                        // repeat is declined as a duplicate, which we ignore).
                        if let Err(e) = session.send_grant(grant.clone()).await {
                            tracing::warn!("could not ask the provider again: {e}");
                        }
                    }
                    continue;
                }
            };
            let reply_msg = next
                .map_err(|_| {
                    RequestError::Timeout(if have_access {
                        "no usage report arrived by valid_to + 120 s".into()
                    } else {
                        "no access arrived by valid_to + 120 s".into()
                    })
                })?
                .ok_or_else(|| anyhow::anyhow!("the coalition link closed"))?;
            match reply_msg {
                Reply::Access(sealed) => {
                    if have_access {
                        continue;
                    }
                    let bundle = reply
                        .open_access(&sealed)
                        .map_err(|_| RequestError::AccessUnopenable)?;
                    check_access(&bundle, spec.host_key).map_err(|reason| {
                        RequestError::AccessRefused {
                            provider: card.provider_id,
                            reason,
                        }
                    })?;
                    have_access = true;
                    on(Progress::Access {
                        bundle,
                        after: sent_at.elapsed(),
                    });
                }
                Reply::Usage(report) => {
                    on(Progress::Usage(report.clone()));
                    return Ok(report);
                }
                // A replay of our grant by someone else; ours stands.
                Reply::Decline(d) if d.reason == DeclineReason::Duplicate => {}
                // Once access arrived our grant stands: a decline can only
                // answer a repeat (ours, sent after the provider restarted,
                // may arrive at `valid_to` while the workload is being torn
                // down, and be declined as expired before its report is
                // journaled). Keep waiting for the report.
                Reply::Decline(d) if have_access => {
                    tracing::debug!(
                        reason = %d.reason.as_str(),
                        "a repeat of the grant was declined; waiting for its usage report"
                    );
                }
                Reply::Decline(d) => return Err(RequestError::Declined(d.reason)),
            }
        }
    }

    /// Credit `micro_usd` to a provider for the last `window`.
    pub async fn settle(
        &self,
        provider: Option<ProviderId>,
        micro_usd: u64,
        window: Duration,
    ) -> anyhow::Result<ProviderCard> {
        let card = self.find(provider).await?;
        let node = coalition::peer_id(&card.node)?;
        let session = self.link.session(node);
        let network = self.link.network();
        coalition::sync(network, &[coalition::catalog_addr(network, &node)]).await;
        tokio::time::timeout(FIND_TIMEOUT, session.settlements_ready())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "provider {} did not subscribe to settlements",
                    card.provider_id
                )
            })?;
        let now = now_unix();
        session
            .send_settlement(Settlement {
                version: PROTOCOL_VERSION,
                provider_id: card.provider_id,
                amount_micro_usd: micro_usd,
                window: Window {
                    from: now.saturating_sub(window.as_secs()),
                    to: now,
                },
            })
            .await
            .map_err(|e| anyhow::anyhow!("sending the settlement: {e}"))?;
        Ok(card)
    }
}

/// Whether `bundle` is safe to hand over under `policy`: every field
/// checked ([`AccessBundle::check`]), and a host key present unless the
/// policy trusts the first one seen.
pub fn check_access(bundle: &AccessBundle, policy: HostKeyPolicy) -> Result<(), String> {
    bundle.check().map_err(|e| {
        format!("{e}; nothing was written and no ssh command is printed (the workload runs until its grant ends)")
    })?;
    if bundle.host_key.is_empty() && policy == HostKeyPolicy::Require {
        return Err(
            "it names no SSH host key for the workload (a cloud backend cannot know it before \
             the machine boots), so an ssh command would trust whatever host answers; nothing was \
             written and no ssh command is printed (the workload runs until its grant ends). Pass \
             --accept-new-host-key to trust the key the first connection sees and pin it from \
             then on (OpenSSH's StrictHostKeyChecking=accept-new, in the key directory's \
             known_hosts)"
                .into(),
        );
    }
    Ok(())
}

/// Write an access bundle's private key to `dir/id_ed25519` (mode 0600, in
/// a directory of mode 0700) and a `known_hosts` beside it holding the
/// workload's host key (empty, for ssh to fill on first use, when the
/// bundle has none); returns the ready-to-run `ssh` command, every field
/// quoted for a POSIX shell. A bundle that fails [`AccessBundle::check`]
/// is refused before anything is written.
pub fn write_access(dir: &Path, bundle: &AccessBundle) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    bundle
        .check()
        .map_err(|e| anyhow::anyhow!("refusing the access bundle: {e}"))?;
    let host_key = match bundle.host_key.as_str() {
        "" => None,
        k => Some(
            compute_bridge_contract::protocol::check_host_key(k)
                .map_err(|e| anyhow::anyhow!("refusing the access bundle's host key: {e}"))?,
        ),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let key = dir.join("id_ed25519");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .with_context(|| format!("writing {}", key.display()))?;
    f.write_all(bundle.private_key.as_bytes())
        .with_context(|| format!("writing {}", key.display()))?;
    // known_hosts(5): `[host]:port` for a port other than 22, and an IPv6
    // address in brackets either way.
    let entry_host = match (bundle.port, bundle.host.contains(':')) {
        (22, false) => bundle.host.clone(),
        (22, true) => format!("[{}]", bundle.host),
        (port, _) => format!("[{}]:{port}", bundle.host),
    };
    let known = dir.join("known_hosts");
    let entry = match &host_key {
        Some(k) => format!("{entry_host} {k}\n"),
        None => String::new(),
    };
    std::fs::write(&known, entry).with_context(|| format!("writing {}", known.display()))?;
    let checking = if host_key.is_some() {
        "yes"
    } else {
        "accept-new"
    };
    Ok(format!(
        "ssh -i {} -o IdentitiesOnly=yes -o {} -o StrictHostKeyChecking={checking} -p {} {}",
        shell_quote(&ssh_path(&key, false)?),
        shell_quote(&format!("UserKnownHostsFile={}", ssh_path(&known, true)?)),
        bundle.port,
        shell_quote(&format!("{}@{}", bundle.user, bundle.host)),
    ))
}

/// `path` as ssh reads a file name from its command line (ssh_config(5),
/// TOKENS and ENVIRONMENT VARIABLES): `%` starts a token (doubled to mean
/// itself), `${` an environment variable, a leading `~` a home directory,
/// and in an `-o` option's value whitespace separates files unless the
/// value is in double quotes. A path ssh would read as something else is
/// refused.
fn ssh_path(path: &Path, in_option: bool) -> anyhow::Result<String> {
    let p = path.display().to_string();
    if p.contains('"') || p.contains("${") || p.starts_with('~') || p.chars().any(char::is_control)
    {
        anyhow::bail!(
            "ssh would not read {} as one file name: choose a key directory (--key-dir) without \
             a double quote, `${{`, a leading ~ or control characters",
            compute_bridge_contract::protocol::shown(&p)
        );
    }
    let p = p.replace('%', "%%");
    Ok(if in_option && p.chars().any(char::is_whitespace) {
        format!("\"{p}\"")
    } else {
        p
    })
}

/// `s` as one word for a POSIX shell: as it is when every character is one
/// no shell treats specially (and it does not start with `~`), otherwise
/// in single quotes, each `'` in it written `'\''` (POSIX.1-2017 XCU
/// 2.2.2: nothing inside single quotes is special).
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";

    fn bundle(host_key: &str) -> AccessBundle {
        use ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
        AccessBundle {
            host: "127.0.0.1".into(),
            port: 2222,
            user: "cb-1234".into(),
            private_key: PrivateKey::from(Ed25519Keypair::from_seed(&[3; 32]))
                .to_openssh(LineEnding::LF)
                .unwrap()
                .to_string(),
            host_key: host_key.into(),
        }
    }

    #[test]
    fn access_is_written_private_with_a_pinned_host_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("access");
        let cmd = write_access(&d, &bundle(&format!("{HOST_KEY} a comment"))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("id_ed25519")), 0o600);
        assert_eq!(mode(&d), 0o700);
        assert!(cmd.contains("-p 2222 cb-1234@127.0.0.1"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        let known = std::fs::read_to_string(d.join("known_hosts")).unwrap();
        assert_eq!(known, format!("[127.0.0.1]:2222 {HOST_KEY}\n"));
        // Never overwrites an existing key.
        assert!(write_access(&d, &bundle(HOST_KEY)).is_err());
    }

    #[test]
    fn every_field_of_the_command_is_one_shell_word() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("keys $(id) `id` 'q' 100%");
        let cmd = write_access(&d, &bundle("")).unwrap();
        assert!(cmd.contains("StrictHostKeyChecking=accept-new"), "{cmd}");
        // What sh makes of it: exactly the intended words, no expansion.
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {}", &cmd["ssh ".len()..])])
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let key = d
            .join("id_ed25519")
            .display()
            .to_string()
            .replace('%', "%%");
        let known = d
            .join("known_hosts")
            .display()
            .to_string()
            .replace('%', "%%");
        assert_eq!(
            words,
            [
                "-i".to_string(),
                key,
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile=\"{known}\""),
                "-o".into(),
                "StrictHostKeyChecking=accept-new".into(),
                "-p".into(),
                "2222".into(),
                "cb-1234@127.0.0.1".into(),
            ]
        );
        assert_eq!(std::fs::read_to_string(d.join("known_hosts")).unwrap(), "");
    }

    #[test]
    fn an_access_is_handed_over_only_when_safe() {
        assert_eq!(
            check_access(&bundle(HOST_KEY), HostKeyPolicy::Require),
            Ok(())
        );
        let e = check_access(&bundle(""), HostKeyPolicy::Require).unwrap_err();
        assert!(e.contains("--accept-new-host-key"), "{e}");
        assert_eq!(check_access(&bundle(""), HostKeyPolicy::AcceptNew), Ok(()));
        let mut b = bundle(HOST_KEY);
        b.user = "x $(touch ~/pwned)".into();
        let e = check_access(&b, HostKeyPolicy::AcceptNew).unwrap_err();
        assert!(e.contains("`user`") && e.contains("POSIX"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(write_access(dir.path(), &b).is_err());
        assert!(!dir.path().join("id_ed25519").exists());
    }

    #[test]
    fn the_embedded_default_is_a_local_coalition_found_through_its_state_dir() {
        let e = AgentNetwork::default().resolve().unwrap_err();
        assert!(e.to_string().contains("no local bridge found"), "{e}");
        assert!(e.to_string().contains(".compute-bridge"), "{e}");
    }

    #[test]
    fn flags_need_no_config() {
        let s = AgentNetwork {
            relays: vec!["http://127.0.0.1:9/".into()],
            network: Some("n".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.network, "n");
        assert_eq!(s.relays.len(), 1);
    }
}
