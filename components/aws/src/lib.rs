//! The AWS EC2 backend for compute-bridge.
//!
//! Each grant gets its own EC2 instance: the cheapest type in the
//! operator's catalog that fits the grant's CPU and memory, in the region
//! the grant names (or the first configured region), booted
//! from the region's AMI with a cloud-init user-data that creates the
//! workload user with the host's public key and runs the grant's image,
//! pinned by digest, with the grant's limits ([`userdata`]). Every instance
//! (and its volumes) is tagged with the bridge's provider id and the grant's
//! request id, so `list-instances` finds them again for reconciliation.
//!
//! EC2 has no TDX guests for this purpose: the backend reports
//! `tdx-capable = false` and declines TDX-required grants.
//!
//! - `status` comes from the instance state: `pending` → starting,
//!   `running`/`stopping` → running, `stopped` → exited (the runner powers
//!   the instance off when the container ends; the exit code is read from
//!   the console, -1 if unreadable), `shutting-down`/`terminated`/unknown →
//!   gone.
//! - `usage` is *allocated* resources × run time: the instance type's vCPUs
//!   × seconds from launch to stop (or now) as core-seconds, its memory ×
//!   the same seconds as MiB-seconds. EC2's API reports no network bytes, so
//!   `net-bytes` is 0.
//! - `terminate` is idempotent: an instance EC2 no longer knows is success.
//! - Regions: one per call. The fleet offers a grant without a region to
//!   each configured region in turn (the order of `regions`, which
//!   `capabilities` reports) and moves on at `no-capacity`, recording each
//!   step as a failover; the component never loops over regions itself.
//! - Errors: capacity and per-region quota codes
//!   (`InsufficientInstanceCapacity`, `InstanceLimitExceeded`,
//!   `VcpuLimitExceeded`, `Unsupported` to a launch, ...) and an instance
//!   EC2 terminates at launch for capacity (`stateReason`
//!   `Server.InsufficientInstanceCapacity`) are `no-capacity`; throttling,
//!   5xx and timeouts `transient`; refused credentials and wrong settings
//!   `config`, naming the key and never a secret ([`error`]). The whole
//!   taxonomy, its sources, and what was checked against the published API
//!   are in this crate's `README.md`.
//! - `ClientToken` is a digest of the whole `RunInstances` request: a retry
//!   of the same request is the same launch, a new provision (a fresh
//!   workload key) a new one.
//! - A `RunInstances` whose outcome is unknown (its answer lost, timed out,
//!   a server fault, or unreadable) may have launched an instance: before
//!   returning `transient` (so the host fails over) the backend looks for
//!   it by its provider and request tags and terminates it, and any failure
//!   after a launch (waiting for the address) terminates the instance too.
//!   If even the lookup fails, the error says so; such an instance powers
//!   itself off at the grant's `valid_to`, and the orphan sweep removes it.
//!
//! The component imports only the host's `http`, `log` and config
//! capabilities. Its `allowed_hosts` must list the EC2 endpoint of every
//! configured region (`https://ec2.us-east-1.amazonaws.com`, ...), or the
//! `endpoint` override. Configuration keys: [`config`].
//!
//! Everything but the wasm glue (`component.rs`) builds natively: the
//! backend itself is [`Aws`] ([`core`]) over the SDK's `Host`, so the
//! signer, request building, XML parsing, error mapping, type selection and
//! the whole lifecycle are tested with `cargo test -p cb-aws` over a
//! `MemoryHost`.

pub mod config;
pub mod core;
pub mod ec2;
pub mod error;
pub mod sigv4;
pub mod userdata;
pub mod utc;

#[cfg(target_arch = "wasm32")]
mod component;

pub use crate::core::{Aws, Handle};
pub use config::AwsConfig;
