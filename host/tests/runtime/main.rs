//! The host runtime against real components: routing, failover, capacity,
//! the sandbox's limits and the hostile components, the compile cache,
//! the cloud backends against moto and their API fakes (the Hetzner one a
//! Python component built with componentize-py), and the dashboard
//! over a real fleet.
//!
//! One test binary with a module per concern, so the suite links once.

mod support;

mod attest;
mod aws;
mod azure;
mod azure_faults;
mod baremetal;
mod baremetal_podman;
mod baremetal_tdx;
mod baremetal_vm;
mod cache;
mod cards;
mod cloud_faults;
mod dashboard;
mod gcp;
mod gcp_faults;
mod hetzner;
mod hostile;
mod http;
mod load;
mod measured;
mod returns;
mod routing;
mod sandbox;
mod ssh;
mod ssh_drop;
mod swap;
mod tdx_routing;
