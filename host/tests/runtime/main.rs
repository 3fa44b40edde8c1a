//! The host runtime against real components: routing, failover, capacity,
//! the sandbox's limits and the hostile components, the compile cache,
//! the AWS backend against moto.
//!
//! One test binary with a module per concern, so the suite links once.

mod support;

mod aws;
mod baremetal;
mod cache;
mod http;
mod routing;
mod sandbox;
mod ssh;
