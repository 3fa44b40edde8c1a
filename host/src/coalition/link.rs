//! The mosaik link: the streams and the card map, from both ends.
//!
//! [`ProviderLink`] is the bridge's end: it writes the card into
//! `compute.providers`, consumes `compute.grants` and
//! `compute.settlements`, produces `compute.access`, `compute.usage` and
//! `compute.declines`, and reports who is subscribed to those.
//!
//! [`RequesterLink`] is the requester's end (`coalition-agent`, tests): it
//! reads the cards, produces grants and settlements, and consumes access,
//! usage and declines *only from the provider's own node*, so nothing
//! another peer publishes under a provider's name is believed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mosaik::collections::{MapReader, MapWriter};
use mosaik::streams::{Consumer, Producer};
use mosaik::{Network, PeerId};

use super::protocol::{
    ACCESS_STREAM, AccessSealed, ComputeGrant, DECLINES_STREAM, Decline, GRANTS_STREAM, NodeId,
    PROVIDERS_STORE, ProviderCard, ProviderId, RequestId, SETTLEMENTS_STREAM, Settlement,
    USAGE_STREAM, UsageReport,
};

/// How long a card write may wait for the card map to come online.
pub const CARD_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a requester waiting for cards syncs its catalog with the
/// bootstrap peers again (the same period as a subscription's re-sync).
const CARD_RESYNC: Duration = Duration::from_secs(3);

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Nobody subscribed before the deadline.
    #[error("no subscriber within the deadline")]
    NoSubscriber,
    /// The node is shutting down.
    #[error("the coalition link is closed")]
    Closed,
}

/// How often a wait for a subscription looks at it again (see
/// [`producer`]); the first look is immediate.
const SUBSCRIPTION_POLL: Duration = Duration::from_millis(25);

/// The producer of `stream` on this node, shared by every caller.
///
/// It is always "online" to mosaik (`online_when` a minimum of 0
/// subscribers); [`send_made`] itself waits for a connected subscriber.
/// mosaik 0.4.2's own online flag is re-evaluated only when a subscription
/// is added or removed (`streams/producer/worker.rs`: the `online_when`
/// condition watches the `active` map), while a subscription is added as
/// connecting and becomes connected later on its own state watch
/// (`producer/sender.rs`): so a producer whose only subscriber had just
/// been added stayed offline until some unrelated wake-up, such as a
/// catalog change. Access, usage and grants then waited for a peer's next
/// catalog sync (3 s, or for ever: access never handed out in 3 of 5 e2e
/// runs once nodes joined in 0.2 s). A subscription's state is read
/// directly instead ([`has_subscriber`]).
fn producer<D: mosaik::Datum>(network: &Network, stream: &str) -> Producer<D> {
    match network
        .streams()
        .producer::<D>()
        .with_stream_id(stream)
        .online_when(|c| c.minimum_of(0))
        .build()
    {
        Ok(p) => p,
        // One producer per stream per node: share the existing one.
        Err(mosaik::streams::producer::BuilderError::AlreadyExists(p)) => p,
    }
}

/// True when a subscriber is connected to `p` now (read from each
/// subscription's own state, not from mosaik's online flag: see
/// [`producer`]).
fn has_subscriber<D: mosaik::Datum>(p: &Producer<D>) -> bool {
    p.consumers().any(|c| c.is_connected())
}

/// Resolves once a subscriber is connected to `p`, looked at every 25 ms
/// for as long as it takes: a requester that reconnects after a restart
/// may stay only tens of milliseconds (it repeats its grant, takes its
/// report and leaves), and a usage report waiting for it must not miss
/// that window.
async fn subscribed<D: mosaik::Datum>(p: &Producer<D>) {
    while !has_subscriber(p) {
        tokio::time::sleep(SUBSCRIPTION_POLL).await;
    }
}

/// Resolves once `cond` holds, looked at every 25 ms: mosaik 0.4.2's
/// `ChannelConditions` future wakes only when a channel is added or
/// removed, not when one goes from connecting to connected (see
/// [`producer`]), while [`ChannelConditions::is_condition_met`] reads each
/// channel's state now.
///
/// [`ChannelConditions::is_condition_met`]: mosaik::streams::status::ChannelConditions::is_condition_met
async fn met(cond: &mosaik::streams::status::ChannelConditions) {
    while !cond.is_condition_met() {
        tokio::time::sleep(SUBSCRIPTION_POLL).await;
    }
}

/// Send `item` once a subscriber is connected, waiting at most `deadline`.
///
/// Not `SinkExt::send`: mosaik 0.4.2's `poll_ready` builds a fresh
/// "online" waiter on every poll and drops it, so a send started while
/// nobody is subscribed is never woken when someone subscribes (it hung a
/// usage report for ever after a restart). [`subscribed`] waits;
/// `try_send` then queues without waiting.
async fn send<D: mosaik::Datum>(
    p: &Producer<D>,
    item: D,
    deadline: Option<Duration>,
) -> Result<(), SendError> {
    let mut item = Some(item);
    send_made(
        p,
        |refused| {
            refused
                .or_else(|| item.take())
                .expect("taken once; after that a refused item is handed back")
        },
        deadline,
    )
    .await
}

/// The loop behind [`send`]: right after the producer is seen online,
/// `make` is given the item refused last time (if any) and returns the
/// item to offer now, the same one or a fresh one.
async fn send_made<D: mosaik::Datum>(
    p: &Producer<D>,
    mut make: impl FnMut(Option<D>) -> D,
    deadline: Option<Duration>,
) -> Result<(), SendError> {
    use mosaik::streams::producer::Error;
    let fut = async move {
        let mut refused = None;
        loop {
            subscribed(p).await;
            match p.try_send(make(refused.take())) {
                Ok(()) => return Ok(()),
                // Not taken (mosaik's own flag): look again shortly.
                Err(Error::Offline(d)) => {
                    refused = Some(d);
                    tokio::time::sleep(SUBSCRIPTION_POLL).await;
                }
                // The buffer is full: give it a moment.
                Err(Error::Full(d)) => {
                    refused = Some(d);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => return Err(SendError::Closed),
            }
        }
    };
    match deadline {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .map_err(|_| SendError::NoSubscriber)?,
        None => fut.await,
    }
}

/// The bridge's end of the coalition.
pub struct ProviderLink {
    network: Arc<Network>,
    bootstrap: Vec<mosaik::iroh::EndpointAddr>,
    provider_id: ProviderId,
    cards: MapWriter<ProviderId, ProviderCard>,
    access: Producer<AccessSealed>,
    usage: Producer<UsageReport>,
    declines: Producer<Decline>,
}

impl std::fmt::Debug for ProviderLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderLink({})", self.provider_id)
    }
}

impl ProviderLink {
    /// Open the provider's streams and card map on `network`, which joined
    /// through `bootstrap`.
    pub fn open(
        network: Arc<Network>,
        bootstrap: Vec<mosaik::iroh::EndpointAddr>,
        provider_id: ProviderId,
    ) -> Self {
        let cards = MapWriter::<ProviderId, ProviderCard>::writer(&network, PROVIDERS_STORE);
        Self {
            cards,
            access: producer(&network, ACCESS_STREAM),
            usage: producer(&network, USAGE_STREAM),
            declines: producer(&network, DECLINES_STREAM),
            network,
            bootstrap,
            provider_id,
        }
    }

    /// The node's id (published in the card).
    pub fn node(&self) -> NodeId {
        super::node_id(&self.network.local().id())
    }

    /// The node.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// A consumer of every grant on the coalition; the caller keeps those
    /// addressed to this provider.
    pub fn grants(&self) -> Consumer<ComputeGrant> {
        self.network
            .streams()
            .consumer::<ComputeGrant>()
            .with_stream_id(GRANTS_STREAM)
            .build()
    }

    /// A consumer of every settlement; the caller keeps this provider's.
    pub fn settlements(&self) -> Consumer<Settlement> {
        self.network
            .streams()
            .consumer::<Settlement>()
            .with_stream_id(SETTLEMENTS_STREAM)
            .build()
    }

    /// Tell the bootstrap peers about this node's streams now (call after
    /// opening the consumers).
    pub async fn announce(&self) {
        super::sync(&self.network, &self.bootstrap).await;
    }

    /// Write the card (waiting for the map to come online).
    pub async fn publish_card(&self, card: ProviderCard) -> anyhow::Result<()> {
        tokio::time::timeout(CARD_WRITE_TIMEOUT, async {
            self.cards.when().online().await;
            let v = self
                .cards
                .insert(card.provider_id, card)
                .await
                .map_err(|e| anyhow::anyhow!("writing the provider card: {e}"))?;
            self.cards.when().reaches(v).await;
            Ok::<_, anyhow::Error>(())
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the provider map did not accept the card within {}s",
                CARD_WRITE_TIMEOUT.as_secs()
            )
        })?
    }

    /// Publish a sealed access bundle, waiting up to `deadline` for a
    /// subscriber.
    pub async fn send_access(&self, a: AccessSealed, deadline: Duration) -> Result<(), SendError> {
        send(&self.access, a, Some(deadline)).await
    }

    /// Publish a usage report, waiting as long as it takes for a subscriber.
    pub async fn send_usage(&self, r: UsageReport) -> Result<(), SendError> {
        send(&self.usage, r, None).await
    }

    /// Publish a decline, waiting up to `deadline` for a subscriber.
    pub async fn send_decline(&self, d: Decline, deadline: Duration) -> Result<(), SendError> {
        send(&self.declines, d, Some(deadline)).await
    }

    /// True when someone is subscribed to access bundles now.
    pub fn access_has_subscriber(&self) -> bool {
        has_subscriber(&self.access)
    }

    /// The peers subscribed to any of this provider's streams now: the
    /// coalition agents listening to it.
    pub fn subscribers(&self) -> BTreeSet<PeerId> {
        let connected = |it: &mut dyn Iterator<Item = mosaik::streams::status::ChannelInfo>| {
            it.filter(|c| c.is_connected())
                .map(|c| *c.consumer_id())
                .collect::<Vec<_>>()
        };
        let mut set = BTreeSet::new();
        set.extend(connected(&mut self.access.consumers()));
        set.extend(connected(&mut self.usage.consumers()));
        set.extend(connected(&mut self.declines.consumers()));
        set
    }

    /// Resolves when the peers subscribed to this provider's streams
    /// ([`Self::subscribers`]) differ from what they were at the call, or
    /// after `at_most`. Looked at every 100 ms: mosaik's own subscription
    /// waiters miss a subscription going from connecting to connected (see
    /// [`producer`]).
    pub async fn subscriptions_changed(&self, at_most: Duration) {
        let before = self.subscribers();
        let until = tokio::time::Instant::now() + at_most;
        while self.subscribers() == before {
            let now = tokio::time::Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100).min(until - now)).await;
        }
    }
}

/// The requester's end of the coalition.
pub struct RequesterLink {
    network: Arc<Network>,
    cards: MapReader<ProviderId, ProviderCard>,
    /// The coalition's bootstrap peers, re-synced while waiting for cards.
    bootstrap: Vec<mosaik::iroh::EndpointAddr>,
}

impl std::fmt::Debug for RequesterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequesterLink")
    }
}

/// What came back for a grant.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Sealed access.
    Access(AccessSealed),
    /// The usage report.
    Usage(UsageReport),
    /// A decline.
    Decline(Decline),
}

impl Reply {
    /// The request it is about.
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Access(a) => a.request_id,
            Self::Usage(u) => u.request_id,
            Self::Decline(d) => d.request_id,
        }
    }
}

/// A requester's subscriptions to one provider's node.
pub struct ProviderSession {
    node: PeerId,
    grants: Producer<ComputeGrant>,
    settlements: Producer<Settlement>,
    access: Consumer<AccessSealed>,
    usage: Consumer<UsageReport>,
    declines: Consumer<Decline>,
}

impl std::fmt::Debug for ProviderSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderSession({})", self.node)
    }
}

impl RequesterLink {
    /// Open the card map on `network` (as a reader); `bootstrap` are the
    /// peers [`join`](super::join) synced with, synced again while
    /// [`wait_for_cards`](Self::wait_for_cards) waits.
    pub fn open(network: Arc<Network>, bootstrap: Vec<mosaik::iroh::EndpointAddr>) -> Self {
        let cards = MapReader::<ProviderId, ProviderCard>::reader(&network, PROVIDERS_STORE);
        Self {
            network,
            cards,
            bootstrap,
        }
    }

    /// The node.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// The cards now, but for any whose node is not a valid peer id (a peer
    /// id would not even have decoded; such a card cannot be answered).
    pub fn cards(&self) -> Vec<ProviderCard> {
        let mut v: Vec<ProviderCard> = self
            .cards
            .values()
            .filter(|c| super::peer_id(&c.node).is_ok())
            .collect();
        v.sort_by_key(|c| c.provider_id);
        v
    }

    /// Wait (up to `timeout`) until the card map is online and `ready`
    /// holds for the cards; returns the cards then, whatever they are.
    pub async fn wait_for_cards(
        &self,
        timeout: Duration,
        ready: impl Fn(&[ProviderCard]) -> bool,
    ) -> Vec<ProviderCard> {
        // The card map's group is found through the discovery catalog. A
        // provider that joined its group after this node's first sync is
        // otherwise only learned of at its next gossip announcement, 22 to
        // 45 s later (mosaik 0.4 `discovery::Config::announce_interval`,
        // 45 s with jitter 0.5): cards took 44 s to appear in a loaded e2e
        // run. So the catalogs are synced with the bootstrap peers again
        // every few seconds until the cards are there.
        let resync = async {
            loop {
                tokio::time::sleep(CARD_RESYNC).await;
                super::sync(&self.network, &self.bootstrap).await;
            }
        };
        let wait = async {
            self.cards.when().online().await;
            loop {
                if ready(&self.cards()) {
                    return;
                }
                tokio::select! {
                    () = self.cards.when().updated() => {}
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        };
        let _ = tokio::time::timeout(timeout, async {
            tokio::select! {
                () = wait => {}
                () = resync => {}
            }
        })
        .await;
        self.cards()
    }

    /// Subscribe to the provider whose node is `node` and wait (up to
    /// `timeout`) until the subscriptions are up in both directions.
    ///
    /// The subscriptions are made one at a time, and the catalogs are
    /// synced with the provider's node while waiting, so a subscription
    /// does not wait for the next gossip round to be noticed.
    pub async fn connect(
        &self,
        node: NodeId,
        timeout: Duration,
    ) -> anyhow::Result<ProviderSession> {
        let node = super::peer_id(&node)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let net = &self.network;
        let only = move |peer: &mosaik::discovery::PeerInfo| *peer.id() == node;
        let is_node = move |p: &mosaik::discovery::PeerEntry| *p.id() == node;
        let grants = producer(net, GRANTS_STREAM);
        let settlements = producer(net, SETTLEMENTS_STREAM);
        let streams = net.streams();
        let access = streams
            .consumer::<AccessSealed>()
            .with_stream_id(ACCESS_STREAM)
            .require(only)
            .build();
        self.until(
            node,
            deadline,
            "access",
            access.when().subscribed().with_predicate(is_node),
        )
        .await?;
        let usage = streams
            .consumer::<UsageReport>()
            .with_stream_id(USAGE_STREAM)
            .require(only)
            .build();
        self.until(
            node,
            deadline,
            "usage",
            usage.when().subscribed().with_predicate(is_node),
        )
        .await?;
        let declines = streams
            .consumer::<Decline>()
            .with_stream_id(DECLINES_STREAM)
            .require(only)
            .build();
        self.until(
            node,
            deadline,
            "declines",
            declines.when().subscribed().with_predicate(is_node),
        )
        .await?;
        self.until(
            node,
            deadline,
            "grants",
            grants.when().subscribed().with_predicate(is_node),
        )
        .await?;
        Ok(ProviderSession {
            node,
            grants,
            settlements,
            access,
            usage,
            declines,
        })
    }

    /// Wait for `cond` until `deadline`, syncing catalogs with `node` at
    /// the start and every few seconds.
    async fn until(
        &self,
        node: PeerId,
        deadline: tokio::time::Instant,
        what: &str,
        cond: mosaik::streams::status::ChannelConditions,
    ) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        // The condition is looked at every 25 ms (see [`met`]); the catalogs
        // are synced with the provider's node at the start and every 3 s,
        // which is what tells it of a stream this node opened since.
        let resync = async {
            loop {
                super::sync(&self.network, &[super::catalog_addr(&self.network, &node)]).await;
                tokio::time::sleep(CARD_RESYNC).await;
            }
        };
        tokio::select! {
            () = met(&cond) => {}
            _ = resync => unreachable!("the resync loop never ends"),
            () = tokio::time::sleep_until(deadline) => anyhow::bail!(
                "the provider's node {} did not connect its {what} stream in time",
                node.fmt_short()
            ),
        }
        tracing::debug!(
            ms = start.elapsed().as_millis() as u64,
            "{what} subscription up"
        );
        Ok(())
    }

    /// Subscribe to the provider whose node is `node` (see [`Self::connect`]).
    pub fn session(&self, node: PeerId) -> ProviderSession {
        let only = move |peer: &mosaik::discovery::PeerInfo| *peer.id() == node;
        let streams = self.network.streams();
        ProviderSession {
            node,
            grants: producer(&self.network, GRANTS_STREAM),
            settlements: producer(&self.network, SETTLEMENTS_STREAM),
            access: streams
                .consumer::<AccessSealed>()
                .with_stream_id(ACCESS_STREAM)
                .require(only)
                .build(),
            usage: streams
                .consumer::<UsageReport>()
                .with_stream_id(USAGE_STREAM)
                .require(only)
                .build(),
            declines: streams
                .consumer::<Decline>()
                .with_stream_id(DECLINES_STREAM)
                .require(only)
                .build(),
        }
    }
}

impl ProviderSession {
    /// The provider's node.
    pub fn node(&self) -> PeerId {
        self.node
    }

    /// Wait until the provider's node takes our grants and we hear its
    /// access, usage and declines.
    pub async fn ready(&self) {
        let node = self.node;
        let is_node = move |p: &mosaik::discovery::PeerEntry| *p.id() == node;
        let start = std::time::Instant::now();
        let logged = |what: &'static str, f: mosaik::streams::status::ChannelConditions| async move {
            met(&f).await;
            tracing::debug!(ms = start.elapsed().as_millis() as u64, "{what} subscribed");
        };
        tokio::join!(
            logged(
                "provider to our grants",
                self.grants.when().subscribed().with_predicate(is_node)
            ),
            logged(
                "we to its access",
                self.access.when().subscribed().with_predicate(is_node)
            ),
            logged(
                "we to its usage",
                self.usage.when().subscribed().with_predicate(is_node)
            ),
            logged(
                "we to its declines",
                self.declines.when().subscribed().with_predicate(is_node)
            ),
        );
    }

    /// Wait until the provider's node takes our settlements.
    pub async fn settlements_ready(&self) {
        let node = self.node;
        met(&self
            .settlements
            .when()
            .subscribed()
            .with_predicate(move |p| *p.id() == node))
        .await;
    }

    /// Send a grant (the provider must be subscribed: see [`Self::ready`]).
    pub async fn send_grant(&self, g: ComputeGrant) -> Result<(), SendError> {
        send(&self.grants, g, Some(Duration::from_secs(30))).await
    }

    /// Send the grant `stamp` builds, built only once the provider's
    /// subscription is up (again at each retry); returns the grant that
    /// went out. A grant's validity window should start when it leaves: a
    /// subscription that drops just before the send can hold a grant back
    /// for up to 30 s, and a grant stamped before that wait could reach the
    /// provider already expired.
    pub async fn send_stamped_grant(
        &self,
        mut stamp: impl FnMut() -> ComputeGrant,
    ) -> Result<ComputeGrant, SendError> {
        let mut sent = None;
        send_made(
            &self.grants,
            |_stale| {
                let g = stamp();
                sent = Some(g.clone());
                g
            },
            Some(Duration::from_secs(30)),
        )
        .await?;
        Ok(sent.expect("send_made returns Ok only after offering a grant"))
    }

    /// Send a settlement (see [`Self::settlements_ready`]) and wait until
    /// it has gone out on the provider's subscription, so the caller may
    /// exit right after.
    pub async fn send_settlement(&self, s: Settlement) -> Result<(), SendError> {
        let node = self.node;
        let sent_to_node = || {
            self.settlements
                .consumers()
                .filter(|c| *c.consumer_id() == node)
                .map(|c| c.stats().datums())
                .sum::<usize>()
        };
        let before = sent_to_node();
        send(&self.settlements, s, Some(Duration::from_secs(30))).await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            while sent_to_node() <= before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| SendError::NoSubscriber)
    }

    /// The next reply from the provider's node, about any request.
    pub async fn next_any(&mut self) -> Option<Reply> {
        Some(tokio::select! {
            a = self.access.recv() => Reply::Access(a?),
            u = self.usage.recv() => Reply::Usage(u?),
            d = self.declines.recv() => Reply::Decline(d?),
        })
    }

    /// The next reply about `request_id` from the provider's node.
    pub async fn next_reply(&mut self, request_id: RequestId) -> Option<Reply> {
        loop {
            let reply = self.next_any().await?;
            if reply.request_id() == request_id {
                return Some(reply);
            }
        }
    }
}
