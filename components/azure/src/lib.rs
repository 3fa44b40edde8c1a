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
//! subnet_id = "/subscriptions/.../resourceGroups/compute-bridge/providers/Microsoft.Network/virtualNetworks/bridge/subnets/default"
//! network_security_group_id = "/subscriptions/.../providers/Microsoft.Network/networkSecurityGroups/allow-ssh"
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
//! ```
//!
//! | key | meaning |
//! |-----|---------|
//! | `tenant_id`, `client_id` | the app registration (service principal) the bridge acts as (required) |
//! | `client_secret` | its secret, usually `"${ENV}"` (required); the app needs Virtual Machine Contributor and Network Contributor on the resource group |
//! | `subscription_id`, `resource_group` | where the VMs, NICs and addresses go (required; the group must exist) |
//! | `subnet_id` | ARM id of the subnet the NICs join (required) |
//! | `network_security_group_id` | NSG for the NICs; Standard public addresses are closed until an NSG lets SSH in |
//! | `vm_sizes` | the catalog: `name`, `cpus`, `ram_mib`, `usd_per_hour`, `tdx`, `regions` (preference order) |
//! | `image` | marketplace image; for TDX a confidential-VM image (the default is Ubuntu 24.04 `cvm`) |
//! | `os_disk_gb`, `os_disk_type` | OS disk (default 30 GB `StandardSSD_LRS`) |
//! | `max_cpu_millicores`, `max_ram_mib` | what the backend offers in total (default 32 cores, 128 GiB) |
//! | `management_url`, `login_url` | Resource Manager and identity platform endpoints (tests point them at fakes) |
//!
//! # What it does
//!
//! - **Size and region**: the cheapest catalog size with enough vCPUs and
//!   memory in the grant's region, TDX sizes only when TDX is required and
//!   first when preferred ([`catalog::pick`]). `tdx-capable` is true only
//!   when some TDX size has a region.
//! - **TDX**: a DCesv5/ECesv5 size with `securityProfile.securityType =
//!   "ConfidentialVM"`, Secure Boot and vTPM, and the OS disk's guest state
//!   encrypted (`VMGuestStateOnly`) ([`arm::vm_body`]).
//! - **Resources**: a Standard static public IPv4 address, a NIC in
//!   `subnet_id` holding it, the VM on the NIC; each `PUT` is followed to
//!   completion through `Azure-AsyncOperation` (or `Location`) with
//!   `Retry-After`. If any step fails, whatever was created is deleted
//!   before the error is returned, so a failover leaves nothing billed.
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
//! # Errors
//!
//! `SkuNotAvailable`, `AllocationFailed` (and its zonal and over-constrained
//! kinds) and quota errors → `no-capacity`; throttling, 429 and 5xx →
//! `transient`; refused credentials → `config` naming the key to check
//! (never its value); missing resource group, subnet or permissions →
//! `config` naming the key.

pub mod arm;
pub mod auth;
pub mod catalog;
pub mod config;

#[cfg(target_arch = "wasm32")]
mod component;
