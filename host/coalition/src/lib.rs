//! compute-bridge-coalition: how a node meets its coalition, and what both
//! ends of the link need to trust each other.
//!
//! A floor of the house (`docs/architecture.md`), on the contract only: the
//! daemon (the provider's end) and the requester both stand on it. It holds:
//! - [`network`] (re-exported at the root): joining the coalition's mosaik
//!   network ([`join`], [`NetworkSettings`]), relay and bootstrap-peer
//!   addresses, and the conversion between a card's
//!   [`NodeId`](compute_bridge_contract::protocol::NodeId) and a peer id;
//! - [`link`]: both ends of the link, the provider's ([`link::ProviderLink`])
//!   and the requester's ([`link::RequesterLink`]), over the protocol's
//!   streams;
//! - [`relay`]: the in-process relay of a local coalition and the
//!   rendezvous file through which a requester on the same machine finds it;
//! - [`envelope`]: HPKE sealing of a grant's secrets and of the access
//!   bundle;
//! - [`attest`]: a requester's verification of a provider card (its TDX
//!   quote, the quote's binding to the card, MR_TD, measured backends);
//! - [`config`]: the `[coalition]` section of a bridge's config, which the
//!   daemon and the requester both read ([`CoalitionConfig`]).
//!
//! The protocol's words themselves (cards, grants, access, usage) are the
//! contract's ([`compute_bridge_contract::protocol`]).
//!
//! Invariants: no operator state (no journal, no fleet, no dashboard, no
//! boot config beyond the `[coalition]` section) and no provider secrets:
//! the keys it uses are handed to it (an [`envelope::EnvelopeKey`] wipes
//! its private half on drop), and taking a TDX quote is the provider's
//! half, above this floor. It keeps nothing on disk but what a local bridge
//! asks its relay to write in the state dir (the rendezvous file, the
//! relay's port), and in memory nothing beyond each provider's newest card
//! on a requester's link.

#![warn(missing_docs)]

pub mod attest;
pub mod config;
pub mod envelope;
pub mod link;
mod network;
pub mod relay;

pub use config::CoalitionConfig;
pub use network::*;
