//! Cards on `compute.cards`, against a real mosaik coalition (the testkit's
//! relay): a requester that joins after a card went out still gets it, a
//! refreshed card replaces the older one, and a card of another protocol
//! version, or older than the one held, changes nothing.

use std::sync::Arc;
use std::time::Duration;

use compute_bridge_coalition::envelope::EnvelopeKey;
use compute_bridge_coalition::link::{ProviderLink, RequesterLink};
use compute_bridge_coalition::{self as coalition, NetworkSettings};
use compute_bridge_contract::protocol::{
    Attestation, CARDS_STREAM, PROTOCOL_VERSION, ProviderCard, ProviderId,
};
use compute_bridge_testkit::coalition::TestCoalition;

const WAIT: Duration = Duration::from_secs(60);

fn card(link_node: compute_bridge_contract::protocol::NodeId, key: &EnvelopeKey) -> ProviderCard {
    ProviderCard {
        version: PROTOCOL_VERSION,
        provider_id: key.provider_id(),
        coalition: "cards".into(),
        module_version: "test".into(),
        node: link_node,
        backends: Vec::new(),
        concurrency_cap: 4,
        active_grants: 0,
        envelope_key: key.public(),
        attestation: Attestation::None,
        measurements: Default::default(),
        refreshed_at: 100,
    }
}

/// The card `link` holds for `provider` once `ready` holds for it.
async fn card_of(
    link: &RequesterLink,
    provider: ProviderId,
    ready: impl Fn(&ProviderCard) -> bool,
) -> Option<ProviderCard> {
    link.wait_for_cards(WAIT, |cards| {
        cards.iter().any(|c| c.provider_id == provider && ready(c))
    })
    .await
    .into_iter()
    .find(|c| c.provider_id == provider)
}

#[test]
fn a_late_requester_gets_the_newest_card_and_ignores_stale_or_foreign_ones() {
    let net = TestCoalition::start(&format!("cards-{}", std::process::id()));
    let settings = NetworkSettings::parse(
        &net.network,
        std::slice::from_ref(&net.relay_url),
        std::slice::from_ref(&net.bootstrap),
        true,
    )
    .unwrap();
    net.block_on(async {
        let key = EnvelopeKey::generate();
        let provider = key.provider_id();
        let node = Arc::new(coalition::join(&settings, None).await.unwrap());
        let link = ProviderLink::open(node.clone(), settings.bootstrap.clone(), provider);
        link.announce().await;
        let first = card(link.node(), &key);
        link.publish_card(first.clone());
        // Nobody was subscribed when it went out.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let late = RequesterLink::open(
            Arc::new(coalition::join(&settings, None).await.unwrap()),
            settings.bootstrap.clone(),
        );
        let got = card_of(&late, provider, |_| true).await;
        assert_eq!(got.as_ref(), Some(&first), "a late requester got no card");

        let mut refreshed = first.clone();
        refreshed.active_grants = 3;
        refreshed.refreshed_at = 200;
        link.publish_card(refreshed.clone());
        let got = card_of(&late, provider, |c| c.refreshed_at == 200).await;
        assert_eq!(
            got.as_ref(),
            Some(&refreshed),
            "the refresh did not replace the card"
        );

        // Another node sends, in order: an older card under the same
        // provider id, a card of another protocol version, and a marker
        // card of its own. Once the marker is in, the two before it have
        // been looked at.
        let other = Arc::new(coalition::join(&settings, None).await.unwrap());
        let raw = other
            .streams()
            .producer::<ProviderCard>()
            .with_stream_id(CARDS_STREAM)
            .online_when(|c| c.minimum_of(0))
            .build()
            .unwrap();
        let mut stale = refreshed.clone();
        stale.refreshed_at = 150;
        stale.active_grants = 99;
        let foreign_key = EnvelopeKey::generate();
        let mut foreign = card(coalition::node_id(&other.local().id()), &foreign_key);
        foreign.version = PROTOCOL_VERSION - 1;
        let marker_key = EnvelopeKey::generate();
        let marker = card(coalition::node_id(&other.local().id()), &marker_key);
        coalition::sync(&other, &settings.bootstrap).await;
        coalition::sync(late.network(), &settings.bootstrap).await;
        let subscribed = tokio::time::timeout(WAIT, async {
            while !raw.consumers().any(|c| c.is_connected()) {
                coalition::sync(late.network(), &settings.bootstrap).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            subscribed.is_ok(),
            "the requester never subscribed to the other node's cards"
        );
        for c in [stale, foreign.clone(), marker.clone()] {
            raw.try_send(c).map_err(|_| "not sent").unwrap();
        }
        let got = card_of(&late, marker_key.provider_id(), |_| true).await;
        assert_eq!(got.as_ref(), Some(&marker), "the marker card never arrived");
        let cards = late.cards();
        assert_eq!(
            cards.iter().find(|c| c.provider_id == provider),
            Some(&refreshed),
            "an older card displaced the newest"
        );
        assert!(
            cards
                .iter()
                .all(|c| c.provider_id != foreign_key.provider_id()),
            "a card of protocol version {} was kept",
            foreign.version
        );

        // A requester that comes after the refresh gets the refresh.
        let later = RequesterLink::open(
            Arc::new(coalition::join(&settings, None).await.unwrap()),
            settings.bootstrap.clone(),
        );
        let got = card_of(&later, provider, |_| true).await;
        assert_eq!(got.as_ref(), Some(&refreshed));
    });
}
