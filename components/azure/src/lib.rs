//! The Azure backend: one VM (with its NIC and Standard public address) per
//! grant, an Intel TDX confidential VM when the grant asks for TDX.
//!
//! # Configuration
//!
//! ```toml
//! [[backends]]
//! name = "azure"
//! component = "builtin:azure"
//! call_timeout_sec = 600        # provisioning follows three long-running operations
//! [backends.http]
//! allowed_hosts = ["https://management.azure.com", "https://login.microsoftonline.com"]
//! [backends.config]
//! tenant_id = "00000000-0000-0000-0000-000000000000"
//! client_id = "00000000-0000-0000-0000-000000000000"
//! client_secret = "${AZURE_CLIENT_SECRET}"
//! subscription_id = "00000000-0000-0000-0000-000000000000"
//! resource_group = "compute-bridge"
//! # image = { publisher = "Canonical", offer = "ubuntu-24_04-lts", sku = "cvm", version = "latest" }
//! # os_disk_gb = 30
//! # os_disk_type = "StandardSSD_LRS"
//! max_cpu_millicores = 32000
//! max_ram_mib = 131072
//! [[backends.config.vm_sizes]]
//! name = "Standard_DC4es_v5"
//! cpus = 4
//! ram_mib = 16384
//! usd_per_hour = 0.23
//! tdx = true
//! regions = ["eastus", "westeurope"]
//! [[backends.config.vm_sizes]]
//! name = "Standard_D2s_v5"
//! cpus = 2
//! ram_mib = 8192
//! usd_per_hour = 0.096
//! regions = ["eastus"]
//! # One network per region the sizes above list: a subnet of a virtual
//! # network in that region, and a security group there letting SSH in.
//! [backends.config.networks.eastus]
//! subnet_id = "/subscriptions/.../resourceGroups/compute-bridge/providers/Microsoft.Network/virtualNetworks/bridge-eastus/subnets/default"
//! network_security_group_id = "/subscriptions/.../resourceGroups/compute-bridge/providers/Microsoft.Network/networkSecurityGroups/allow-ssh-eastus"
//! [backends.config.networks.westeurope]
//! subnet_id = "/subscriptions/.../resourceGroups/compute-bridge/providers/Microsoft.Network/virtualNetworks/bridge-westeurope/subnets/default"
//! network_security_group_id = "/subscriptions/.../resourceGroups/compute-bridge/providers/Microsoft.Network/networkSecurityGroups/allow-ssh-westeurope"
//! ```
//!
//! | key | meaning |
//! |-----|---------|
//! | `tenant_id`, `client_id` | the app registration (service principal) the bridge acts as (required) |
//! | `client_secret` | its secret, usually `"${ENV}"` (required); the app needs Virtual Machine Contributor and Network Contributor on the resource group |
//! | `subscription_id`, `resource_group` | where the VMs, NICs and addresses go (required; the group must exist) |
//! | `networks.<region>.subnet_id` | ARM id of the subnet that region's NICs join, in a virtual network **in that region** and in `subscription_id` (required for every region `vm_sizes` lists) |
//! | `networks.<region>.network_security_group_id` | that region's NSG for the NICs; Standard public addresses are closed until an NSG lets SSH in |
//! | `vm_sizes` | the catalog: `name`, `cpus`, `ram_mib`, `usd_per_hour`, `tdx`, `regions` (preference order) |
//! | `image` | marketplace image; for TDX a confidential-VM image (the default is Ubuntu 24.04 `cvm`) |
//! | `os_disk_gb`, `os_disk_type` | OS disk (default 30 GB `StandardSSD_LRS`) |
//! | `max_cpu_millicores`, `max_ram_mib` | what the backend offers in total (default 32 cores, 128 GiB) |
//! | `management_url`, `login_url` | Resource Manager and identity platform endpoints (tests point them at fakes) |
//!
//! **Networks are per region.** A NIC must be in its VM's region and in a
//! virtual network of that region, and a security group serves its own
//! region's NICs. The single `subnet_id` and `network_security_group_id`
//! of earlier versions are refused with a message naming `networks`
//! (even for a one-region catalog: a subnet's region cannot be read from
//! its id, and a second region added later would fail every time). The
//! configuration is refused, with the key it is about (so `compute-bridge
//! check-config` shows file, line and key), when a region in `vm_sizes`
//! has no network, when one subnet or security group is given for two
//! regions, when an id is not a subnet (or security group) id, or when a
//! subnet is in another subscription. That a subnet's virtual network is
//! really in its region is checked against Resource Manager at the first
//! provision there (`VirtualNetworks_Get`; remembered an hour in the host's
//! cache): a mismatch is a `config` error naming
//! `networks.<region>.subnet_id`, and nothing is created.
//!
//! # What it does
//!
//! - **Size and region**: the cheapest catalog size with enough vCPUs and
//!   memory in the grant's region, TDX sizes only when TDX is required and
//!   first when preferred ([`catalog::pick`]). A grant that names a region
//!   is placed there or not at all; moving a grant to another region is
//!   the fleet's job (it offers a grant without a region to each region
//!   in the order `capabilities` lists them, moving on at `no-capacity`).
//!   `tdx-capable` is true only when some TDX size has a region.
//! - **TDX**: a DCesv5/ECesv5 size with `securityProfile.securityType =
//!   "ConfidentialVM"`, Secure Boot and vTPM, and the OS disk's guest state
//!   encrypted (`VMGuestStateOnly`) ([`arm::vm_body`]).
//! - **Resources**: a Standard static public IPv4 address, a NIC in the
//!   region's subnet holding it, the VM on the NIC, all in the chosen
//!   region; each `PUT` is followed to completion through
//!   `Azure-AsyncOperation` (or `Location`) with `Retry-After`.
//! - **A failed provision leaves nothing behind**, whether ARM refused a
//!   step or acted and its answer was lost (a 500, a timeout, a reset
//!   connection): before the error returns, the grant's VM, NIC and
//!   address are found by their tags (this provider, backend and request,
//!   in the resource group's lists) and by the names the grant gives them,
//!   and deleted, VM first. The error keeps its kind (so a lost answer is
//!   `transient` and the fleet fails over) and says what was removed. If
//!   they cannot be listed or deleted, it says so; `list-instances` reports
//!   tagged VMs, and tagged NICs and addresses whose VM is gone, so the
//!   orphan sweep (`sweep_orphans = true`) removes them at the next start.
//! - **Workload**: the VM's admin user is the workload login with the
//!   workload key (Azure requires an admin account on Linux VMs); cloud-init
//!   runs the first-boot script from `customData`, which runs the image
//!   pinned by digest and powers off when it exits
//!   ([`compute_bridge_sdk::bootstrap`]).
//! - **Tags**: `cb-provider`, `cb-request`, `cb-backend`, `cb-user` on every
//!   resource; `list-instances` finds VMs by them.
//! - **Status** from the instance view: `PowerState/running` is running; a
//!   stopped or deallocated VM `exited(-1)` (Azure cannot tell the
//!   container's exit code); a VM being deleted or missing `gone`; the rest
//!   starting.
//! - **Usage** is allocated × time: the size's vCPUs and memory for every
//!   second from provisioning to the call. Network bytes are not metered by
//!   Resource Manager and are reported as 0.
//! - **Terminate** deletes the VM (its OS disk with it), then the NIC, then
//!   the address, each to completion; what is already gone is success.
//!
//! # Authentication
//!
//! The client-credentials grant at the identity platform ([`auth`]). The
//! token is kept in the host's per-backend `cache` until shortly before it
//! expires, so many calls share one token request; a token Resource Manager
//! stops accepting (401) is dropped and replaced once.
//!
//! # Errors: the capacity taxonomy
//!
//! What each of Resource Manager's documented answers becomes
//! ([`arm::ArmError::classify`]; a test reads this table and checks each
//! row against it). `no-capacity` means the region asked has no room: the
//! fleet offers the grant to the backend's next region, then to the next
//! backend, each step a failover on the dashboard. `transient` moves on to
//! the next backend. `config` stops: the operator has a setting to fix.
//! The code is read from the error, from its `details`, and from a failed
//! long-running operation's `error`.
//!
//! | ARM answer | HTTP | becomes | source |
//! |---|---|---|---|
//! | `SkuNotAvailable` | 409 | `no-capacity` | [error-sku-not-available](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-sku-not-available) |
//! | `AllocationFailed` | 200 (failed operation) | `no-capacity` | [allocation-failure](https://learn.microsoft.com/en-us/troubleshoot/azure/virtual-machines/windows/allocation-failure) |
//! | `ZonalAllocationFailed` | 200 (failed operation) | `no-capacity` | same page |
//! | `OverconstrainedAllocationRequest` | 409 | `no-capacity` | [zonalallocation-allocationfailed-error](https://learn.microsoft.com/en-us/troubleshoot/azure/azure-kubernetes/error-codes/zonalallocation-allocationfailed-error) |
//! | `OverconstrainedZonalAllocationRequest` | 409 | `no-capacity` | [allocation-failure](https://learn.microsoft.com/en-us/troubleshoot/azure/virtual-machines/windows/allocation-failure) |
//! | `OperationNotAllowed` with a quota message ("exceeding approved … Cores quota") | 409 | `no-capacity` | [error-resource-quota](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-resource-quota) |
//! | `QuotaExceeded` | 409 | `no-capacity` | same page |
//! | `ResourceQuotaExceeded` | 409 | `no-capacity` | [common-deployment-errors](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/common-deployment-errors) |
//! | `PublicIPCountLimitReached` | 400 | `no-capacity` | [networking limits](https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/azure-subscription-service-limits#networking-limits) (per region and subscription), the answer as in [azure-ip-limit](https://learn.microsoft.com/en-us/azure/databricks/kb/clusters/azure-ip-limit) |
//! | `StaticPublicIPCountLimitReached` | 400 | `no-capacity` | networking limits, as above |
//! | `TooManyRequests` (any 429) | 429 | `transient` | [request-limits-and-throttling](https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling) |
//! | `InternalServerError` (any 5xx) | 500 | `transient` | [async-operations](https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/async-operations) |
//! | `ServiceUnavailable` | 503 | `transient` | same |
//! | `RetryableError` | 409 | `transient` | [common-deployment-errors](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/common-deployment-errors) |
//! | `AnotherOperationInProgress` | 409 | `transient` | same page |
//! | `Conflict` | 409 | `transient` | same page |
//! | `InvalidAuthenticationToken`, `ExpiredAuthenticationToken`, `AuthenticationFailed` | 401 | `config` (`tenant_id`, `client_id`, `client_secret`) | same page |
//! | `RequestDisallowedByPolicy` | 403 | `config` (an Azure Policy) | same page |
//! | `AuthorizationFailed`, `LinkedAuthorizationFailed` | 403 | `config` (the app's roles) | same page |
//! | `ResourceGroupNotFound` | 404 | `config` (`resource_group`) | same page |
//! | `SubscriptionNotFound` | 404 | `config` (`subscription_id`) | same page |
//! | `MissingSubscriptionRegistration`, `NoRegisteredProviderFound` | 409 | `config` (register the providers) | [error-register-resource-provider](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-register-resource-provider) |
//! | `InvalidResourceReference` (a subnet, address or NSG missing or in another region) | 400 | `config` (`networks`) | [common-deployment-errors](https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/common-deployment-errors); the region rule: [network-overview](https://learn.microsoft.com/en-us/previous-versions/azure/virtual-network/network-overview) |
//! | `InvalidParameter`, `BadRequest` (any other 400) | 400 | `config` (`image`, `vm_sizes`, `os_disk_type`) | common-deployment-errors |
//! | `OperationNotAllowed` without a quota message | 409 | `internal` | common-deployment-errors |
//!
//! `rejected` is never an ARM answer: it is the backend's own refusal of
//! a grant it cannot fit (no size in the region asked, an image not pinned
//! by digest). Refused credentials at the token endpoint are `config`
//! naming the key to check, never its value ([`auth::parse_token`]). A
//! call with no answer (timeout, reset) is `transient`.
//!
//! # Checked against the specification, and what needs a real account
//!
//! The fake this backend is tested against (`cb-azure-fake`, in `fake/`)
//! is written from `Azure/azure-rest-api-specs` (Microsoft.Compute
//! 2024-07-01 `virtualMachine.json`, Microsoft.Network 2024-05-01
//! `networkInterface.json`, `publicIpAddress.json`, `virtualNetwork.json`)
//! and the Microsoft Learn pages it cites, not from this code.
//!
//! | what | checked against | still needs a real account |
//! |---|---|---|
//! | Paths, `api-version`s, PUT/GET/DELETE status codes, `CloudError` shape | the spec files above | — |
//! | Long-running operations (`Azure-AsyncOperation`, `Location`, `Retry-After`) | specs (`x-ms-long-running-operation`), async-operations page | the real number and pace of `InProgress` polls |
//! | List paging (`nextLink`) | specs (`x-ms-pageable`) | — |
//! | NIC, subnet, address and NSG in one region; VM in its NIC's region | network-overview page; the `InvalidResourceReference` answer as quoted in public issue threads | the exact code for a VM whose NIC is in another region (the spec gives none; the fake guesses `InvalidParameter`); whether an address in another region gets the same answer |
//! | Confidential VM body (`ConfidentialVM`, vTPM, `VMGuestStateOnly`) | spec, confidential-VM overview | whether Azure accepts a CVM image (`sku = "cvm"`) on a non-confidential size (the fake accepts it); which regions offer DCesv5 |
//! | Capacity and quota codes (table above) | the Learn pages in the table | the exact HTTP status of `OverconstrainedAllocationRequest` and of quota refusals (the class depends on the code, not the status) |
//! | Public address limit (`PublicIPCountLimitReached`, 400) | networking limits, quoted answers | the limit's value on a given subscription |
//! | Deleting a VM still `Creating` (after a lost answer) | — (the spec is silent; the fake allows it) | that ARM accepts it rather than answering 409 while the create runs |
//! | Client credentials and AADSTS codes | identity platform docs | — |
//!
//! # Code
//!
//! Everything but the wasm glue (`component.rs`) builds natively: the
//! backend itself is [`Azure`] ([`core`]) over the SDK's `Host`, so the
//! whole lifecycle runs in `cargo test -p cb-azure` with no sandbox:
//! `tests/core.rs` runs it over a `MemoryHost` whose requests go to the
//! fake beside this crate (`fake/`, which the runtime tests use too).

pub mod arm;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod core;

#[cfg(target_arch = "wasm32")]
mod component;

pub use crate::core::Azure;
pub use config::AzureConfig;
