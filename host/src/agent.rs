//! The requester's side, as `coalition-agent` runs it: find a provider's
//! card, send it a sealed grant, open the access bundle with the one-time
//! reply key, wait for the usage report; and send settlements.
//!
//! Which coalition to join comes from flags or from a bridge's config file
//! ([`AgentNetwork`]); for a local coalition it is read from the rendezvous
//! file the bridge writes in its state dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::attest::{self, CardRejected, CardVerdict, VerifyPolicy};
use crate::backend::TdxRequirement;
use crate::coalition::link::{ProviderSession, Reply, RequesterLink};
use crate::coalition::protocol::{
    AccessBundle, ComputeGrant, DeclineReason, Manifest, PROTOCOL_VERSION, ProviderCard,
    ProviderId, RequestId, Settlement, UsageReport, Window,
};
use crate::coalition::relay::Rendezvous;
use crate::coalition::{self, NetworkSettings};
use crate::envelope::{self, EnvelopeKey};
use crate::fleet::now_unix;

/// The image a request runs when none is given: the empty image (its digest
/// is SHA-256 of nothing). Backends that hand out a plain SSH account (bare
/// metal, the fake) do not look at the image.
pub const DEFAULT_IMAGE: &str =
    "scratch@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How long to wait for a provider's card and subscriptions.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(45);

/// The parts of a bridge config the agent reads. Unknown keys are ignored
/// and nothing is validated or expanded beyond them, so the agent can take
/// a bridge's production config without its secrets.
#[derive(Debug, Default, Deserialize)]
struct BridgeView {
    #[serde(default)]
    bridge: BridgeSection,
    #[serde(default)]
    coalition: CoalitionSection,
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

#[derive(Debug, Default, Deserialize)]
struct CoalitionSection {
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    local: Option<bool>,
    #[serde(default)]
    relays: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    bind: Option<std::net::IpAddr>,
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
                toml::from_str(crate::config::LOCAL_TOML).expect("the embedded default parses"),
                PathBuf::from("."),
            ),
        };
        let network = self
            .network
            .clone()
            .or(view.coalition.network.clone())
            .unwrap_or_else(|| "local.dev".to_string());
        if !self.relays.is_empty() {
            let bootstrap = if self.bootstrap.is_empty() {
                &view.coalition.bootstrap
            } else {
                &self.bootstrap
            };
            return NetworkSettings::parse(&network, &self.relays, bootstrap, false);
        }
        let c = &view.coalition;
        let local = c.local.unwrap_or(c.relays.is_empty());
        if local {
            let state_dir = if view.bridge.state_dir.is_absolute() {
                view.bridge.state_dir.clone()
            } else {
                base.join(&view.bridge.state_dir)
            };
            let r = Rendezvous::read(&state_dir)?;
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
            return NetworkSettings::parse(&network, &[r.relay], &bootstrap, true);
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

/// A requester on the coalition.
pub struct Agent {
    link: RequesterLink,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
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
        Ok(Self {
            link: RequesterLink::open(Arc::new(network)),
        })
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
        let node = card.node;
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
                    coalition::sync(&network, &[coalition::catalog_addr(&network, &node)]).await;
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
        let session = self.link.session(card.node);
        let network = self.link.network();
        coalition::sync(network, &[coalition::catalog_addr(network, &card.node)]).await;
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

/// Write an access bundle's private key to `dir/id_ed25519` (mode 0600, in
/// a directory of mode 0700) and, if the host key is known, a
/// `known_hosts` beside it; returns the ready-to-run `ssh` command.
pub fn write_access(dir: &Path, bundle: &AccessBundle) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
    let target = if bundle.host.contains(':') {
        format!("[{}]", bundle.host)
    } else {
        bundle.host.clone()
    };
    let host_check = if bundle.host_key.trim().is_empty() {
        // The backend could not tell us the host key: the first connection
        // has to trust it.
        "-o StrictHostKeyChecking=accept-new".to_string()
    } else {
        let known = dir.join("known_hosts");
        let entry = if bundle.port == 22 {
            format!("{target} {}\n", bundle.host_key.trim())
        } else {
            format!(
                "[{}]:{} {}\n",
                bundle.host,
                bundle.port,
                bundle.host_key.trim()
            )
        };
        std::fs::write(&known, entry).with_context(|| format!("writing {}", known.display()))?;
        format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            shell_quote(&known.display().to_string())
        )
    };
    Ok(format!(
        "ssh -i {} -o IdentitiesOnly=yes {host_check} -p {} {}@{}",
        shell_quote(&key.display().to_string()),
        bundle.port,
        bundle.user,
        bundle.host
    ))
}

fn shell_quote(s: &str) -> String {
    if s.chars()
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

    fn bundle(host_key: &str) -> AccessBundle {
        AccessBundle {
            host: "127.0.0.1".into(),
            port: 2222,
            user: "cb-1234".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n".into(),
            host_key: host_key.into(),
        }
    }

    #[test]
    fn access_is_written_private_with_a_pinned_host_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("access");
        let cmd = write_access(&d, &bundle("ssh-ed25519 AAAAC3Nza")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("id_ed25519")), 0o600);
        assert_eq!(mode(&d), 0o700);
        assert!(cmd.contains("-p 2222 cb-1234@127.0.0.1"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        let known = std::fs::read_to_string(d.join("known_hosts")).unwrap();
        assert_eq!(known, "[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nza\n");
        // Never overwrites an existing key.
        assert!(write_access(&d, &bundle("")).is_err());
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
