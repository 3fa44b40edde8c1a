//! The GCP backend: one Compute Engine VM per grant, an Intel TDX
//! Confidential VM when the grant asks for TDX.
//!
//! # Configuration
//!
//! ```toml
//! [[backends]]
//! name = "gcp"
//! component = "builtin:gcp"
//! call_timeout_sec = 300        # provisioning waits for the insert operation
//! [backends.http]
//! allowed_hosts = ["https://compute.googleapis.com", "https://oauth2.googleapis.com"]
//! [backends.config]
//! project = "my-project"
//! service_account_key = "${GCP_SERVICE_ACCOUNT_KEY}"   # the key file's JSON
//! # image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
//! # boot_disk_gb = 20
//! # network = "global/networks/default"
//! # subnetwork = "regions/us-central1/subnetworks/bridge"
//! network_tags = ["allow-ssh"]                         # a firewall rule must let SSH in
//! max_cpu_millicores = 32000
//! max_ram_mib = 131072
//! [[backends.config.machine_types]]
//! name = "c3-standard-4"
//! cpus = 4
//! ram_mib = 16384
//! usd_per_hour = 0.21
//! tdx = true
//! zones = ["us-central1-a", "europe-west4-b"]
//! [[backends.config.machine_types]]
//! name = "n2-standard-2"
//! cpus = 2
//! ram_mib = 8192
//! usd_per_hour = 0.10
//! zones = ["us-central1-a"]
//! ```
//!
//! | key | meaning |
//! |-----|---------|
//! | `project` | project the VMs are created in (required) |
//! | `service_account_key` | the service-account key file's JSON, usually `"${ENV}"` (required); the account needs `roles/compute.instanceAdmin.v1` |
//! | `machine_types` | the catalog: `name`, `cpus`, `ram_mib`, `usd_per_hour`, `tdx`, `zones` (preference order) |
//! | `image` | boot image; for TDX it must be TDX-capable (Ubuntu 22.04+ images are) |
//! | `boot_disk_gb` | boot disk size (`pd-balanced`), default 20 |
//! | `network`, `subnetwork` | where the VM's NIC goes (default network by default) |
//! | `network_tags` | tags for the firewall rules that let SSH reach the VM |
//! | `max_cpu_millicores`, `max_ram_mib` | what the backend offers in total (default 32 cores, 128 GiB) |
//! | `compute_url` | Compute Engine endpoint (default `https://compute.googleapis.com`) |
//! | `token_url` | token endpoint (default: the key's `token_uri`, else `https://oauth2.googleapis.com/token`) |
//!
//! # What it does
//!
//! - **Type and zone**: the cheapest catalog type with enough vCPUs and
//!   memory in the grant's region (or zone), TDX types only when TDX is
//!   required and first when it is preferred; its first zone there
//!   ([`catalog::pick`]). `tdx-capable` is true only when some TDX type has a
//!   zone.
//! - **TDX**: `confidentialInstanceConfig.confidentialInstanceType = "TDX"`
//!   on a C3 type, with `onHostMaintenance = TERMINATE` ([`api::instance_body`]).
//! - **Workload**: a `startup-script` that creates the login with the
//!   workload's key, runs the image pinned by digest and powers off when it
//!   exits ([`compute_bridge_sdk::bootstrap`]).
//! - **Labels**: `cb_provider` (provider id), `cb_request` (request id),
//!   `cb_backend`, `cb_user`; `list-instances` finds instances by them.
//! - **Status**: every value of `Instance.Status` is mapped on purpose
//!   (the table is on [`api::GceInstance::state`]): `RUNNING` running;
//!   `PENDING`, `PROVISIONING`, `STAGING`, `REPAIRING` starting;
//!   `PENDING_STOP`, `STOPPING`, `STOPPED`, `SUSPENDING`, `SUSPENDED`,
//!   `TERMINATED`, `DEPROVISIONING` `exited(-1)` (the VM went down; the
//!   cloud cannot tell the container's exit code); a missing one `gone`.
//! - **Usage** is allocated × time: the machine type's vCPUs and memory for
//!   every second from provisioning to the VM's stop (or to the call, if it
//!   has not stopped or is already deleted). Network bytes are not metered
//!   by the Compute API and are reported as 0.
//! - **Terminate** deletes the instance (its boot disk goes with it) and
//!   waits for the operation; an instance already gone is success.
//!
//! # Authentication
//!
//! A JWT assertion (RS256) signed with the service account's key and
//! exchanged for an access token at the token endpoint ([`auth`]). The
//! token is kept in the host's per-backend `cache` until shortly before it
//! expires, so many calls share one token request; a token the API stops
//! accepting (401) is dropped and replaced once.
//!
//! The signature is made in the component with the pure-Rust `rsa` crate
//! (constant-time `crypto-bigint`, blinded with WASI randomness) rather than
//! by a host capability: the host then knows nothing of any cloud's auth,
//! the key stays inside this backend's sandbox, and a third-party backend
//! can do the same without asking for a new capability.
//!
//! # Errors
//!
//! `ZONE_RESOURCE_POOL_EXHAUSTED` and quota errors → `no-capacity` (the
//! fleet tries the next backend); rate limits, 429 and 5xx → `transient`;
//! refused credentials → `config` naming `service_account_key` (never its
//! value); settings the API refuses → `config` naming the keys to check.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;

#[cfg(target_arch = "wasm32")]
mod component;
