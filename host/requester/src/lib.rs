//! compute-bridge-requester: the requester's side of a coalition, as
//! `coalition-agent` (declared in the `compute-bridge` package,
//! `host/src/bin/coalition-agent.rs`) runs it.
//!
//! A floor of the house (`docs/architecture.md`), on the contract and the
//! coalition only, beside the daemon and never on it. It finds a provider's
//! card and verifies it ([`compute_bridge_coalition::attest`]), sends it a
//! grant sealed to the card's envelope key, opens the access bundle with
//! the grant's one-time reply key and checks it field by field before
//! writing or printing anything, waits for the usage report, and sends
//! settlements ([`Agent`]). Which coalition to join comes from flags or
//! from a bridge's config file, whose `[coalition]` section it reads
//! through the coalition floor's own type ([`AgentNetwork`]).
//!
//! Invariants: no provider secrets and no operator state: it never reads a
//! bridge's keys, journal or backend sections (only `[coalition]` and
//! `[bridge] state_dir` of a bridge's config), and it trusts no provider
//! with its shell. It keeps nothing but what a request hands back to its
//! caller: the access bundle's files, written where the caller asks
//! ([`write_access`], private key mode 0600, its own `known_hosts`), and
//! the one-time reply key, in memory for one request.

#![warn(missing_docs)]

mod agent;

pub use agent::*;
