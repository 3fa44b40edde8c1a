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
//! network = "global/networks/bridge-vpc"               # a custom-mode VPC network
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
//! [backends.config.subnetworks]                        # one per region of the zones above
//! us-central1 = "bridge-us"
//! europe-west4 = "regions/europe-west4/subnetworks/bridge-eu"
//! ```
//!
//! | key | meaning |
//! |-----|---------|
//! | `project` | project the VMs are created in (required) |
//! | `service_account_key` | the service-account key file's JSON, usually `"${ENV}"` (required); the account needs `roles/compute.instanceAdmin.v1` |
//! | `machine_types` | the catalog: `name`, `cpus`, `ram_mib`, `usd_per_hour`, `tdx`, `zones` (preference order) |
//! | `image` | boot image; for TDX it must be TDX-capable (Ubuntu 22.04+ images are) |
//! | `boot_disk_gb` | boot disk size (`pd-balanced`), default 20 |
//! | `network` | the VPC network of the VM's interface (`global/networks/default` by default) |
//! | `subnetworks` | the subnetwork of each region the catalog places in, keyed by region: a name (`bridge-us`), `regions/R/subnetworks/S` or a full URL of region R. A subnetwork belongs to one region, so an instance takes the one of its zone's region. When given, every region of a zone in `machine_types` must have one (refused otherwise, naming the region). Leave it out for an auto-mode network such as `default`, which has its own subnetwork in every region. The old single `subnetwork` key is refused with a message naming `subnetworks`: one subnetwork cannot serve zones of two regions, and accepting it for a one-region catalog would break the day a zone of another region is added |
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
//!   zone. The grant's region is honoured strictly: only zones of that
//!   region are tried.
//! - **Zones within a region**: when a zone is out of stock (a stockout, see
//!   below) the same type is tried in the next zone of the same region, in
//!   the order `zones` lists them ([`catalog::zones_to_try`]); only when
//!   every zone of the region is out does the backend answer `no-capacity`.
//!   A quota or any other refusal answers for the region at once (a quota
//!   is the region's or the project's, so another zone would hit it too).
//!   Moving to another region is the fleet's job: a grant without a region
//!   is offered to this backend one region at a time, in the order
//!   `capabilities` lists them (the catalog's first-listed order), and
//!   `no-capacity` moves it on to the next region, then the next backend;
//!   the dashboard shows `gcp/us-central1 → gcp/europe-west4`.
//! - **TDX**: `confidentialInstanceConfig.confidentialInstanceType = "TDX"`
//!   on a C3 type, with `onHostMaintenance = TERMINATE` ([`api::instance_body`]).
//! - **Workload**: a `startup-script` that creates the login with the
//!   workload's key, runs the image pinned by digest and powers off when it
//!   exits ([`compute_bridge_sdk::bootstrap`]).
//! - **Labels**: `cb_provider` (provider id), `cb_request` (request id),
//!   `cb_backend`, `cb_user`; `list-instances` finds instances by them,
//!   in every zone of the project at once (`instances.aggregatedList`, so
//!   an instance in a zone the catalog no longer lists is still found),
//!   with the filter `(labels.cb_provider = "…") AND (labels.cb_backend =
//!   "…")`: the reference wants each of several expressions in
//!   parentheses. A zone that does not answer fails the listing rather
//!   than shortening it.
//! - **Status**: every value of `Instance.Status` is mapped on purpose
//!   (the table is on [`api::GceInstance::state`]): `RUNNING` running;
//!   `PENDING`, `PROVISIONING`, `STAGING`, `REPAIRING` starting;
//!   `PENDING_STOP`, `STOPPING`, `STOPPED`, `SUSPENDING`, `SUSPENDED`,
//!   `TERMINATED`, `DEPROVISIONING` `exited(-1)` (the VM went down; the
//!   cloud cannot tell the container's exit code); a missing one `gone`.
//! - **Lost answers**: an `instances.insert` whose outcome is unknown (the
//!   connection failed or timed out, a 5xx, an unreadable success) may have
//!   made the VM. Before answering `transient` (so the fleet moves on) the
//!   backend lists the zone by the grant's labels (`cb_provider`,
//!   `cb_backend`, `cb_request`), up to three looks a second apart, and
//!   deletes the instance of that name if it is there. A failed insert
//!   operation, and any failure while waiting for the address, delete the
//!   instance too. If even the lookup fails the error says so: the VM
//!   carries the provider's labels and `sweep_orphans` deletes it at the
//!   next start.
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
//! # Capacity and errors
//!
//! What Compute Engine answers, and what it becomes ([`api::refusal`],
//! [`api::Operation::refusal`]). `no-capacity` means: the next zone of the
//! region when the row says so, then (the fleet) the next region of this
//! backend, then the next backend. `transient` moves to the next backend.
//! `config` and `rejected` decline the grant.
//!
//! | Where | Code | Documented meaning | Becomes |
//! |---|---|---|---|
//! | operation error | `ZONE_RESOURCE_POOL_EXHAUSTED` | the zone lacks the hardware for the request ([resource-error]) | `no-capacity`, next zone first |
//! | operation error | `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS` | the same, with `errorDetails` (`errorInfo.reason = resource_availability`, the zones that have room) ([resource-error]) | `no-capacity`, next zone first |
//! | operation error | `RESOURCE_POOL_EXHAUSTED` | not in the reference or compute.proto; reported by users for the same stockout | `no-capacity`, next zone first |
//! | operation error | any code with `errorInfo.reason = resource_availability`, or a message with `STOCKOUT` | a stockout under a code this table does not know | `no-capacity`, next zone first |
//! | operation error | `QUOTA_EXCEEDED` | a project quota (`errorDetails[].quotaInfo` names it and its region) ([quotas]) | `no-capacity` (the region's quota: other zones are not tried) |
//! | operation error | `RATE_LIMIT_EXCEEDED`, `RESOURCE_OPERATION_RATE_EXCEEDED` | too many operations ([operation limits]) | `transient` |
//! | operation error | anything else | by its `httpErrorStatusCode`, as the HTTP rows below | |
//! | HTTP 503 | reason `insufficientCapacity` | "the region or zone … has insufficient capacity" ([bulk insert]) | `no-capacity`, next zone first |
//! | HTTP 4xx/5xx | a message naming a stockout code | as that code | `no-capacity`, next zone first |
//! | HTTP 403 | reason `quotaExceeded` | a quota ([quotas]) | `no-capacity` |
//! | HTTP 403 | reason `rateLimitExceeded`, `userRateLimitExceeded` | an API rate quota ([api quotas]) | `transient` |
//! | HTTP 429 | any (`RESOURCE_EXHAUSTED`) | a rate quota, "too many requests" ([quotas]) | `transient` |
//! | HTTP 5xx | `backendError`, `internalError`, … | a server fault | `transient`; on `instances.insert` the VM may exist: looked for and deleted first (see Lost answers) |
//! | none | timeout, reset, unreadable answer | the answer was lost | `transient`; on `instances.insert` as above |
//! | HTTP 401 | `authError` | the token is not accepted | one new token; then `config` naming `service_account_key` (never its value) |
//! | HTTP 403 | `forbidden` and the rest | the account may not act in `project` | `config` |
//! | HTTP 400, 404 | `invalid`, `badRequest`, `notFound` | a setting the API refuses (image, network, subnetwork, machine type) | `config` naming the keys to check |
//! | HTTP 409 | `alreadyExists` on `instances.insert` | the grant's VM already exists (its name is derived from the grant) | adopted |
//! | before any call | | the grant fits no catalog type in its region, or its image is not pinned by digest | `rejected` |
//!
//! [resource-error]: https://cloud.google.com/compute/docs/resource-error
//! [quotas]: https://cloud.google.com/docs/quotas/troubleshoot
//! [api quotas]: https://cloud.google.com/compute/api-quota
//! [operation limits]: https://cloud.google.com/compute/docs/troubleshooting/troubleshoot-operation-limits
//! [bulk insert]: https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-bulk-vm-creation
//!
//! # Checked against the official spec, and what needs a real account
//!
//! Checked by reading `google/cloud/compute/v1/compute.proto`
//! (googleapis/googleapis) and the REST reference; the test fake
//! (`cb-gcp-fake`, in `fake/` beside this crate) enforces each of these rules on its
//! own, citing the text:
//!
//! | Checked | Against |
//! |---|---|
//! | Paths and methods of `instances.insert/get/delete/list/aggregatedList`, `zoneOperations.wait` | REST reference, compute.proto services |
//! | Every field the insert body sends exists in its message (`Instance`, `NetworkInterface`, `AccessConfig`, `AttachedDisk`, `AttachedDiskInitializeParams`, `Metadata`, `Tags`, `Scheduling`, `ConfidentialInstanceConfig`) | compute.proto |
//! | Query parameters of each call exist in its request message | compute.proto (`ListInstancesRequest`, `AggregatedListInstancesRequest`, `InsertInstanceRequest`) |
//! | The list filter: several expressions each in parentheses | compute.proto `ListInstancesRequest.filter` |
//! | A subnetwork per region, in a form `NetworkInterface.subnetwork` takes; none named on an auto-mode network | compute.proto `NetworkInterface.subnetwork`, `Network.autoCreateSubnetworks` |
//! | Every `Instance.Status` value mapped | compute.proto `Instance.Status` |
//! | Operation errors read from `error.errors[].code` and `errorDetails[].errorInfo` | compute.proto `Errors`, `ErrorDetails`, `ErrorInfo` |
//! | TDX: `confidentialInstanceType = TDX` on C3 with `onHostMaintenance = TERMINATE` and a non-`pd-standard` boot disk | Confidential VM supported configurations |
//! | The JWT-bearer token exchange | Google's service-account OAuth page |
//!
//! | Needs a real account to confirm | Why |
//! |---|---|
//! | The exact error Compute Engine gives an interface whose subnetwork is in another region | not documented; the fake's wording is its own (the shape, 400 `invalid`, is that of the documented interface errors) |
//! | Whether `instances.delete` is accepted while the insert operation is still running (the lost-answer cleanup may do that) | not documented; the fake accepts it |
//! | How soon a new instance appears in `instances.list` (the cleanup looks three times, a second apart) | not documented |
//! | Whether `RESOURCE_POOL_EXHAUSTED` is still returned, and for what | not in the reference |
//! | Which zones offer C3 with TDX at a given time | a capacity fact, not an API one |
//! | Whether a 429 ever carries a capacity meaning for `instances.insert` | the quota page says 429 is a rate quota; treated as `transient` |
//!
//! # Code
//!
//! Everything but the wasm glue (`component.rs`) builds natively: the
//! backend itself is [`Gcp`] ([`core`]) over the SDK's `Host`, so the whole
//! lifecycle runs in `cargo test -p cb-gcp` with no sandbox: `tests/core.rs`
//! runs it over a `MemoryHost` whose requests go to the fake beside this
//! crate (`fake/`, which the runtime tests use too).

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod core;

#[cfg(target_arch = "wasm32")]
mod component;

pub use crate::core::Gcp;
pub use config::GcpConfig;
