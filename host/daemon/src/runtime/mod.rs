//! The wasmtime host: moved to `compute-bridge-sandbox` (issue 18) and
//! re-exported here at its old paths until the re-cut's last move rewrites
//! the imports (`Origin` is the sandbox's [`Lookup`], renamed so it no
//! longer shares a name with the http capability's origins). What stays in
//! this crate is the daemon's side: the components shipped in the binary
//! ([`crate::config::component`]). Keeps nothing.

pub use compute_bridge_sandbox::compile_cache::Lookup as Origin;
pub use compute_bridge_sandbox::{
    Budget, CacheStats, CallState, CallStats, CompileCache, ComponentBackend, EPOCH_TICK, Limits,
    Lookup, OverBudget, Runtime, RuntimeOptions, TABLE_ELEMENT_BYTES, policy,
};

pub use crate::config::component::{builtin_bytes, builtin_names, read_component};
