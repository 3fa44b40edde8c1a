//! The host runtime against real components: routing, failover, capacity,
//! the sandbox's limits and the hostile components, the compile cache, and
//! the cloud backends against their API fakes.
//!
//! One test binary with a module per concern, so the suite links once.

mod support;

mod azure;
mod gcp;
mod sandbox;
mod tdx_routing;
