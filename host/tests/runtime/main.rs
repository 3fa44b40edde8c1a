//! The host runtime against real components: routing, failover, capacity,
//! the sandbox's limits and the hostile components, the compile cache,
//! the dashboard over a real fleet.
//!
//! One test binary with a module per concern, so the suite links once.

mod support;

mod dashboard;
mod sandbox;
