//! compute-bridge-contract: the words every floor of compute-bridge shares,
//! and nothing else.
//!
//! The ground floor of the house (`docs/architecture.md`): the sandbox, the
//! coalition link, the daemon and the requester all speak in these types,
//! and this crate depends on none of them. It holds:
//! - [`backend`]: the host's side of the backend contract (the trait the
//!   fleet routes through, grants as a backend sees them, instances,
//!   usage, errors) and the bounds everything a backend returns is held to;
//! - [`protocol`]: what providers and requesters say to each other on the
//!   coalition (cards, grants, access, usage, declines, settlements), with
//!   its wire encoding;
//! - [`events`]: what the operator's view is told, typed so that it cannot
//!   carry a requester's identity;
//! - [`clock`]: wall-clock time, injectable for tests;
//! - [`keypath`]: config key paths as an operator writes them;
//! - [`measurement`]: a TDX measurement register, and the measurement of
//!   backend components (the event, its digest, the log a card carries).
//!
//! Invariants: no I/O (no files, sockets or processes; the only thing it
//! asks the OS for is entropy for fresh request ids and the time), no async
//! runtime, no wasmtime, no network stack, so every other crate can depend
//! on it without waiting for a heavy build. It keeps nothing: no state, no
//! secrets beyond the values handed to it (an `AccessBundle` wipes its key
//! on drop).

#![warn(missing_docs)]

pub mod backend;
pub mod clock;
pub mod events;
pub mod keypath;
pub mod measurement;
pub mod protocol;
