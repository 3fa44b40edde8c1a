//! compute-bridge-daemon: the provider's side of compute-bridge, which turns
//! an operator's cloud and bare-metal capacity into an attested compute
//! provider for a coalition network. The `compute-bridge` binary runs it;
//! its floor is on the contract, the sandbox, the coalition and the shipped
//! components, never the requester (`docs/architecture.md`).
//!
//! Data flows one way: a grant enters the provider loop, the [`fleet`]
//! routes it to a backend, the backend — a WebAssembly component run by the
//! [`runtime`] with only the [`capabilities`] the operator granted it —
//! provisions the workload, the fleet watches it to its end, and usage goes
//! back to the coalition and the dashboard.
//!
//! Modules, in that order:
//! - [`config`]: the boot config, validated with located errors;
//! - [`runtime`]: wasmtime engine, compile cache, per-call sandboxes
//!   (re-exported from `compute-bridge-sandbox`);
//! - [`capabilities`]: `http`, `ssh`, `log`, `config` and `cache`, one
//!   folder each behind one trait (re-exported from `compute-bridge-sandbox`);
//! - the backend trait and types are the contract's
//!   (`compute_bridge_contract::backend`), as are the operator's events
//!   (`compute_bridge_contract::events`);
//! - [`fleet`]: routing, failover, capacity, watching;
//! - [`coalition`]: the protocol, the mosaik link, the local relay
//!   (re-exported from `compute-bridge-coalition`, the protocol from
//!   `compute-bridge-contract`);
//! - [`envelope`]: HPKE sealing of grants' secrets and access bundles
//!   (re-exported from `compute-bridge-coalition`);
//! - [`journal`]: durable state, so workloads end and are reported once;
//! - [`grant`]: the provider loop that ties the above together, one file
//!   per concern (intake, lifecycle, reconcile, card, settlements);
//! - [`identity`]: the bridge's keys and provider id;
//! - [`attest`]: the TDX quote bound to the provider card, and its
//!   verification by requesters (that half re-exported from
//!   `compute-bridge-coalition`);
//! - [`measure`]: the RTMR3 register and the log of measured backends;
//! - [`swap`]: a backend's component swapped live, checked, measured, and
//!   rolled back by itself if it fails; [`control`]: the local socket
//!   `compute-bridge components swap` asks it through;
//! - [`dashboard`]: the operator's loopback-only view (page, JSON, metrics);
//! - [`bridge`]: start-up and the routing table;
//! - [`logging`]: the log filter that keeps third-party crates' lines, which
//!   may name requesters, out of the operator's log;
//! - [`sweep`]: the opt-in orphan sweep at start;
//! - [`conformance`] and [`template`]: the component author's kit.

#![warn(missing_docs)]

pub mod attest;
pub mod bindings;
pub mod bridge;
pub mod capabilities;
pub mod coalition;
pub mod config;
pub mod conformance;
pub mod control;
pub mod dashboard;
pub mod envelope;
pub mod fleet;
pub mod grant;
pub mod identity;
pub mod journal;
pub mod logging;
pub mod measure;
pub mod runtime;
pub mod swap;
pub mod template;
