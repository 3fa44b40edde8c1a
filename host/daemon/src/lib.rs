//! compute-bridge-daemon: the provider's side of compute-bridge, which turns
//! an operator's cloud and bare-metal capacity into an attested compute
//! provider for a coalition network. The `compute-bridge` binary runs it;
//! its floor is on the contract, the sandbox, the coalition and the shipped
//! components, never the requester (`docs/architecture.md`).
//!
//! Data flows one way: a grant enters the provider loop, the [`fleet`]
//! routes it to a backend, the backend — a WebAssembly component run by the
//! sandbox with only the capabilities the operator granted it —
//! provisions the workload, the fleet watches it to its end, and usage goes
//! back to the coalition and the dashboard.
//!
//! Modules, in that order (the floors below are their own crates: the
//! sandbox runs the components with only the capabilities the operator
//! granted, `compute_bridge_sandbox`; the coalition's network, link, relay,
//! envelope and card verification are `compute_bridge_coalition`; the
//! backend trait, the protocol, the events and the clock are
//! `compute_bridge_contract`'s; no module here names them again):
//! - [`config`]: the boot config, validated with located errors, and the
//!   components shipped in the binary (`config::component`);
//! - [`fleet`]: routing, failover, capacity, watching;
//! - [`journal`]: durable state, so workloads end and are reported once;
//! - [`grant`]: the provider loop that ties the above together, one file
//!   per concern (intake, lifecycle, reconcile with the opt-in orphan
//!   sweep, card, settlements);
//! - [`identity`]: the bridge's keys and provider id;
//! - [`attest`]: the TDX quote bound to the provider card (its
//!   verification by requesters is the coalition's);
//! - [`measure`]: the RTMR3 register and the log of measured backends;
//! - [`swap`]: a backend's component swapped live, checked, measured, and
//!   rolled back by itself if it fails; [`control`]: the local socket
//!   `compute-bridge components swap` asks it through;
//! - [`dashboard`]: the operator's loopback-only view (page, JSON, metrics);
//! - [`bridge`]: start-up and the routing table;
//! - [`logging`]: the log filter that keeps third-party crates' lines, which
//!   may name requesters, out of the operator's log;
//! - [`conformance`] and [`template`]: the component author's kit.

#![warn(missing_docs)]

pub mod attest;
pub mod bridge;
pub mod config;
pub mod conformance;
pub mod control;
pub mod dashboard;
pub mod fleet;
pub mod grant;
pub mod identity;
pub mod journal;
pub mod logging;
pub mod measure;
pub mod swap;
pub mod template;
