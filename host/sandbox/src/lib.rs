//! compute-bridge-sandbox: the wasmtime host every backend component runs
//! in, and the host capabilities it may be given.
//!
//! The second floor of the house (`docs/architecture.md`), on the contract
//! only. It holds:
//! - [`engine`]: one wasmtime engine, the pooled instance slots, the epoch
//!   ticker, and [`Runtime::load`], which turns a [`BackendSpec`] into a
//!   [`ComponentBackend`];
//! - [`compile_cache`]: ahead-of-time compiled components on disk;
//! - [`policy`]: what a backend may import and must export, and how much of
//!   the sandbox one instance may take, checked before it is instantiated;
//! - [`call`]: one backend behind the contract's `Backend` trait, each call
//!   in a fresh instance under its memory budget and deadline;
//! - [`capabilities`]: `http` (`wasi:http/outgoing-handler`), `ssh`, `log`
//!   (`wasi:logging`), `cache` and `config` (`wasi:config/store`), one
//!   folder each with its config section;
//! - [`spec`]: what the daemon tells the sandbox about one backend.
//!
//! Invariants: nothing here knows about grants, requesters, the fleet, the
//! journal or the coalition; the sandbox learns of a backend only what its
//! [`BackendSpec`] says (name, component bytes, limits, its capability
//! sections). It keeps nothing across calls but what a capability shares
//! between one backend's calls (an HTTP client, pooled SSH connections, the
//! credential cache, counters) and the compile cache the daemon points it
//! at; whatever a call left in the guest's memory dies with its store.

#![warn(missing_docs)]

/// The series of `compute-bridge:backend` WIT versions this host loads: the
/// one place besides `bindings.rs` (whose `bindgen!` needs a literal) and
/// `wit/backend.wit` that names it; a test holds the three together.
macro_rules! wit_series {
    () => {
        "0.3."
    };
}

/// The import name prefix of one of our interfaces in [`wit_series!`]:
/// `our_interface!("ssh")` is `compute-bridge:backend/ssh@0.3.`.
macro_rules! our_interface {
    ($name:literal) => {
        concat!("compute-bridge:backend/", $name, "@", wit_series!())
    };
}

pub mod bindings;
mod budget;
mod call;
pub mod capabilities;
mod compile_cache;
mod convert;
mod engine;
pub mod policy;
mod spec;
mod wasi;

pub use budget::{Budget, OverBudget, TABLE_ELEMENT_BYTES};
pub use call::{CallState, CallStats, ComponentBackend, Limits};
pub use compile_cache::{CacheStats, CompileCache, Lookup};
pub use engine::{EPOCH_TICK, Runtime, RuntimeOptions};
pub use spec::{BackendSpec, BootView, LoadContext, Sections};
