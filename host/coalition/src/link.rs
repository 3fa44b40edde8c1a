//! The mosaik link: the streams, from both ends.
//!
//! [`ProviderLink`] is the bridge's end: it hands its card to every
//! subscriber of `compute.cards`, consumes `compute.grants` and
//! `compute.settlements`, produces `compute.access`, `compute.usage` and
//! `compute.declines`, and reports who is subscribed to those.
//!
//! [`RequesterLink`] is the requester's end (`coalition-agent`, tests): it
//! collects the cards, produces grants and settlements, and consumes access,
//! usage and declines *only from the provider's own node*, so nothing
//! another peer publishes under a provider's name is believed.
//!
//! Cards travel on a stream, not in a replicated map: mosaik 0.4.2's
//! `Map` is a Raft group, and a reader that joined it had to bond, find
//! the leader and catch up by snapshot before it saw a single card. Under
//! load that took over 60 s (two e2e tests in one CI run, 2026-12-01) while
//! the stream subscriptions beside it came up in under a second; a
//! provider's card changes only at its own node, so nothing needs
//! consensus. The provider sends its newest card again whenever a new
//! subscriber connects; a requester keeps the newest card per provider.
//! Keeps nothing beyond each provider's newest card.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Mutex;

use mosaik::streams::{Consumer, Producer};
use mosaik::{Network, PeerId};

use compute_bridge_contract::protocol::{
    ACCESS_STREAM, AccessSealed, CARDS_STREAM, ComputeGrant, DECLINES_STREAM, Decline,
    GRANTS_STREAM, NodeId, PROTOCOL_VERSION, ProviderCard, ProviderId, RequestId,
    SETTLEMENTS_STREAM, Settlement, USAGE_STREAM, UsageReport,
};

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

/// How often a wait for cards looks at what arrived, and the card server
/// at who subscribed.
const CARD_POLL: Duration = Duration::from_millis(50);

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

/// Hand the newest card in `newest` to `p`'s subscribers: whenever it
/// changes, and whenever a subscription connects that has not had it
/// (each send goes to all; a requester keeps the newest per provider).
///
/// A subscription is told apart from an earlier one of the same peer by
/// its own statistics (a fresh subscription has fresh ones), so a
/// requester that re-subscribes gets the card again; one that has been
/// sent nothing a second after the last send is owed it again. Looked at
/// every 50 ms, since mosaik's own waiters miss a subscription going from
/// connecting to connected (see [`producer`]). Ends when the link (the
/// sender of `newest`) is dropped.
async fn serve_cards(
    p: Producer<ProviderCard>,
    mut newest: tokio::sync::watch::Receiver<Option<ProviderCard>>,
) {
    use mosaik::streams::producer::Error;
    // A subscription: its peer and the address of its statistics.
    type Subscription = (PeerId, usize);
    let mut served: BTreeSet<Subscription> = BTreeSet::new();
    let mut owed = false;
    let mut last_send = tokio::time::Instant::now();
    loop {
        let connected: Vec<_> = p.consumers().filter(|c| c.is_connected()).collect();
        let now: BTreeSet<Subscription> = connected
            .iter()
            .map(|c| (*c.consumer_id(), std::ptr::from_ref(c.stats()) as usize))
            .collect();
        served.retain(|s| now.contains(s));
        if newest.has_changed().unwrap_or(false) {
            newest.mark_unchanged();
            owed = true;
        }
        owed |= !now.is_subset(&served)
            || (last_send.elapsed() >= Duration::from_secs(1)
                && connected.iter().any(|c| c.stats().datums() == 0));
        if owed && !now.is_empty() {
            // No card yet: nothing to send until there is one.
            if let Some(card) = newest.borrow().clone() {
                match p.try_send(card) {
                    Ok(()) => {
                        served = now;
                        owed = false;
                        last_send = tokio::time::Instant::now();
                    }
                    // Not taken this time: look again shortly.
                    Err(Error::Offline(_) | Error::Full(_)) => {}
                    Err(_) => return,
                }
            }
        }
        tokio::select! {
            // `changed` marks the new card seen: it is owed from here.
            changed = newest.changed() => match changed {
                Ok(()) => owed = true,
                Err(_) => return,
            },
            () = tokio::time::sleep(CARD_POLL) => {}
        }
    }
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
    /// The newest card; [`serve_cards`] sends it to each new subscriber.
    card: tokio::sync::watch::Sender<Option<ProviderCard>>,
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
    /// Open the provider's streams on `network`, which joined through
    /// `bootstrap` (call inside a tokio runtime: the card is served by a
    /// task of its own, which ends when the link is dropped).
    pub fn open(
        network: Arc<Network>,
        bootstrap: Vec<mosaik::iroh::EndpointAddr>,
        provider_id: ProviderId,
    ) -> Self {
        let (card, newest) = tokio::sync::watch::channel(None);
        tokio::spawn(serve_cards(producer(&network, CARDS_STREAM), newest));
        Self {
            card,
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

    /// Make `card` the one this node hands out: sent now to every
    /// subscriber of `compute.cards`, and to each one that subscribes later.
    pub fn publish_card(&self, card: ProviderCard) {
        self.card.send_replace(Some(card));
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
    /// The newest card heard per provider, kept by [`collect_cards`].
    cards: Arc<Mutex<BTreeMap<ProviderId, ProviderCard>>>,
    /// The [`collect_cards`] task, ended when the link is dropped.
    collector: tokio::task::AbortHandle,
    /// The coalition's bootstrap peers, re-synced while waiting for cards.
    bootstrap: Vec<mosaik::iroh::EndpointAddr>,
}

impl std::fmt::Debug for RequesterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequesterLink")
    }
}

impl Drop for RequesterLink {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

/// The first look at whether every card producer in the catalog is
/// subscribed to comes this long after the card consumer is opened; while
/// one is not, looks come at twice the interval each time, up to
/// [`CARD_FEED_LOOK_MAX`]. A quarter of a second: the first probe of a
/// producer already in the catalog misses about one start in three even on
/// an idle machine (the README's two terminals, 2026-12-01: card found
/// after 50, 1,072 and 51 ms with a first look at 1 s), and that look is
/// what a requester then waits for.
const CARD_FEED_LOOK: Duration = Duration::from_millis(250);
/// The longest wait between two such looks: each look is one more probe
/// of the producer (see [`collect_cards`]), so a requester waiting 45 s for
/// a card gets over a dozen of them.
const CARD_FEED_LOOK_MAX: Duration = Duration::from_secs(4);

/// Keep the newest card of each provider in `cards`, from a consumer of
/// `compute.cards` on `network`.
///
/// The consumer is opened again whenever the catalog lists a card producer
/// it has not subscribed to. mosaik 0.4.2's consumer pings a producer it
/// has no round-trip time for instead of subscribing, and subscribes only
/// when it next scans the catalog, which it does only when the catalog
/// changes (`streams/consumer/worker.rs`, `on_catalog_update`). When the
/// ping fails, or its connection has no selected path yet to read a
/// round-trip time from (`discovery::rtt::best_rtt`: iroh 1.4.1 registers
/// a connection's paths in a task of its own, which a loaded machine may
/// run after a sub-millisecond ping on loopback has ended), the probe
/// records nothing and changes nothing in the catalog. On a quiet
/// coalition the next change may never come: the card of a provider
/// already in the catalog when the requester joined then never arrived
/// (45 s waits in five e2e tests, 2026-12-01, and in two of a full run
/// with backoff up to 30 s). A fresh consumer scans the catalog at once
/// and probes again; the producer is synced with directly too, as a
/// session's subscriptions are.
async fn collect_cards(
    network: Arc<Network>,
    cards: Arc<Mutex<BTreeMap<ProviderId, ProviderCard>>>,
) {
    let open = || {
        network
            .streams()
            .consumer::<ProviderCard>()
            .with_stream_id(CARDS_STREAM)
            .build()
    };
    let keep = |card: ProviderCard| {
        if card.version != PROTOCOL_VERSION || super::peer_id(&card.node).is_err() {
            return;
        }
        let mut cards = cards.lock().unwrap_or_else(|e| e.into_inner());
        let newer = cards
            .get(&card.provider_id)
            .is_none_or(|held| card.refreshed_at >= held.refreshed_at);
        if newer {
            cards.insert(card.provider_id, card);
        }
    };
    let mut incoming = open();
    let mut look_every = CARD_FEED_LOOK;
    let mut next_look = tokio::time::Instant::now() + look_every;
    loop {
        tokio::select! {
            card = incoming.recv() => match card {
                Some(card) => keep(card),
                None => incoming = open(),
            },
            () = tokio::time::sleep_until(next_look) => {
                let missing = unsubscribed_card_producers(&network, &incoming);
                if !missing.is_empty() {
                    while let Ok(card) = incoming.try_recv() {
                        keep(card);
                    }
                    tracing::debug!(
                        producers = missing.len(),
                        "card consumer opened again for producers it did not subscribe to"
                    );
                    // Each of them is told of this node, and this node of
                    // its newest entry, directly, as a session's
                    // subscriptions are (`RequesterLink::until`).
                    // Not awaited: a producer that went away must not hold
                    // up the cards of the others.
                    let addrs: Vec<_> = missing
                        .iter()
                        .map(|p| super::catalog_addr(&network, p))
                        .collect();
                    let net = network.clone();
                    tokio::spawn(async move { super::sync(&net, &addrs).await });
                    incoming = open();
                    look_every = (look_every * 2).min(CARD_FEED_LOOK_MAX);
                } else {
                    look_every = CARD_FEED_LOOK;
                }
                next_look = tokio::time::Instant::now() + look_every;
            }
        }
    }
}

/// The producers of `compute.cards` the catalog lists (other than this
/// node) that `incoming` has no subscription to, connected or not.
fn unsubscribed_card_producers(
    network: &Network,
    incoming: &Consumer<ProviderCard>,
) -> Vec<PeerId> {
    let stream = mosaik::streams::StreamId::from(CARDS_STREAM);
    let me = network.local().id();
    let subscribed: BTreeSet<PeerId> = incoming.producers().map(|c| *c.producer_id()).collect();
    network
        .discovery()
        .catalog()
        .peers()
        .filter(|p| *p.id() != me && p.streams().contains(&stream) && !subscribed.contains(p.id()))
        .map(|p| *p.id())
        .collect()
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
    /// Subscribe to every provider's cards on `network` (call inside a
    /// tokio runtime: the cards are collected by a task of its own, which
    /// ends when the link is dropped); `bootstrap` are the peers
    /// [`join`](super::join) synced with, synced again while
    /// [`wait_for_cards`](Self::wait_for_cards) waits.
    pub fn open(network: Arc<Network>, bootstrap: Vec<mosaik::iroh::EndpointAddr>) -> Self {
        let cards = Arc::new(Mutex::new(BTreeMap::new()));
        let collector = tokio::spawn(collect_cards(network.clone(), cards.clone())).abort_handle();
        Self {
            network,
            cards,
            collector,
            bootstrap,
        }
    }

    /// The node.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// The newest card heard from each provider so far (only cards of this
    /// protocol version whose node is a valid peer id are kept).
    pub fn cards(&self) -> Vec<ProviderCard> {
        let cards = self.cards.lock().unwrap_or_else(|e| e.into_inner());
        cards.values().cloned().collect()
    }

    /// Wait (up to `timeout`) until `ready` holds for the cards; returns
    /// the cards then, whatever they are.
    pub async fn wait_for_cards(
        &self,
        timeout: Duration,
        ready: impl Fn(&[ProviderCard]) -> bool,
    ) -> Vec<ProviderCard> {
        // A provider's card stream is found through the discovery catalog.
        // A provider that opened it after this node's first sync is
        // otherwise only learned of at its next gossip announcement, 22 to
        // 45 s later (mosaik 0.4 `discovery::Config::announce_interval`,
        // 45 s with jitter 0.5). So the catalogs are synced with the
        // bootstrap peers again every few seconds until the cards are there.
        let resync = async {
            loop {
                tokio::time::sleep(CARD_RESYNC).await;
                super::sync(&self.network, &self.bootstrap).await;
            }
        };
        let wait = async {
            while !ready(&self.cards()) {
                tokio::time::sleep(CARD_POLL).await;
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
