//! compute-bridge: turn an operator's cloud and bare-metal capacity into an
//! attested compute provider for a coalition network.
//!
//! Data flows one way: a grant enters the provider loop, the [`fleet`]
//! routes it to a backend, the backend — a WebAssembly component run by the
//! [`runtime`] with only the [`capabilities`] the operator granted it —
//! provisions the workload, the fleet watches it to its end, and usage goes
//! back to the coalition and the dashboard.
//!
//! Modules, in that order:
//! - [`config`]: the boot config, validated with located errors;
//! - [`runtime`]: wasmtime engine, compile cache, per-call sandboxes;
//! - [`capabilities`]: `http`, `ssh`, `log`, `config` and `cache`, one module each;
//! - [`backend`]: the host's backend trait and types;
//! - [`fleet`]: routing, failover, capacity, watching;
//! - [`events`]: what the operator may see, typed so it cannot leak identity;
//! - [`dashboard`]: the operator's loopback-only view (page, JSON, metrics);
//! - [`bridge`]: start-up and the routing table;
//! - [`sweep`]: the opt-in orphan sweep at start;
//! - [`conformance`] and [`template`]: the component author's kit.

#![warn(missing_docs)]

pub mod backend;
pub mod bindings;
pub mod bridge;
pub mod capabilities;
pub mod config;
pub mod conformance;
pub mod dashboard;
pub mod events;
pub mod fleet;
pub mod identity;
pub mod runtime;
pub mod sweep;
pub mod template;
