//! Azure Resource Manager: the requests the backend sends, the parts of the
//! answers it reads, long-running operations, and what errors mean.
//!
//! References:
//! - Virtual Machines (Compute `2024-07-01`):
//!   <https://learn.microsoft.com/en-us/rest/api/compute/virtual-machines>
//! - Public IP addresses, network interfaces (Network `2024-05-01`):
//!   <https://learn.microsoft.com/en-us/rest/api/virtualnetwork/public-ip-addresses>,
//!   <https://learn.microsoft.com/en-us/rest/api/virtualnetwork/network-interfaces>
//! - Long-running operations:
//!   <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/async-operations>
//! - Confidential VMs: <https://learn.microsoft.com/en-us/azure/confidential-computing/>
//! - Errors: <https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/common-deployment-errors>

use std::collections::BTreeMap;

use base64::Engine as _;
use cb_cloud::EXIT_UNKNOWN;
use cb_cloud::allocation::Allocation;
use cb_cloud::tags::TagNames;
use compute_bridge_sdk::http::{Request, Response, url_encode};
use compute_bridge_sdk::{BackendError, InstanceState};
use serde::{Deserialize, Serialize};

use crate::config::ImageReference;

/// `api-version` for `Microsoft.Compute`.
pub const COMPUTE_API: &str = "2024-07-01";
/// `api-version` for `Microsoft.Network`.
pub const NETWORK_API: &str = "2024-05-01";

/// Tag names the backend puts on every resource.
pub const TAGS: TagNames = TagNames::AZURE;

/// Where resources live.
#[derive(Debug, Clone, Copy)]
pub struct Arm<'a> {
    /// `https://management.azure.com` (no trailing slash).
    pub base: &'a str,
    /// Subscription id.
    pub subscription: &'a str,
    /// Resource group.
    pub resource_group: &'a str,
}

/// The three resources of one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Microsoft.Compute/virtualMachines`.
    Vm,
    /// `Microsoft.Network/networkInterfaces`.
    Nic,
    /// `Microsoft.Network/publicIPAddresses`.
    PublicIp,
}

impl Kind {
    /// In the order a workload's resources are removed: a NIC cannot go
    /// while a VM holds it, nor an address while a NIC does.
    pub const REMOVAL_ORDER: [Kind; 3] = [Kind::Vm, Kind::Nic, Kind::PublicIp];

    fn path(self) -> (&'static str, &'static str) {
        match self {
            Kind::Vm => ("Microsoft.Compute/virtualMachines", COMPUTE_API),
            Kind::Nic => ("Microsoft.Network/networkInterfaces", NETWORK_API),
            Kind::PublicIp => ("Microsoft.Network/publicIPAddresses", NETWORK_API),
        }
    }

    /// `virtualMachines`, `networkInterfaces`, `publicIPAddresses`.
    pub fn type_name(self) -> &'static str {
        self.path().0.split_once('/').map_or("", |(_, t)| t)
    }
}

impl Arm<'_> {
    /// The ARM id of a resource (also its URL path).
    pub fn id(&self, kind: Kind, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}",
            url_encode(self.subscription),
            url_encode(self.resource_group),
            kind.path().0,
            url_encode(name)
        )
    }

    fn url(&self, kind: Kind, name: &str) -> String {
        format!(
            "{}{}?api-version={}",
            self.base,
            self.id(kind, name),
            kind.path().1
        )
    }

    /// Create (or update) a resource.
    pub fn put(&self, kind: Kind, name: &str, body: &serde_json::Value) -> Request {
        Request::put(self.url(kind, name)).json(body)
    }

    /// Read a resource (a VM with its instance view).
    pub fn get(&self, kind: Kind, name: &str) -> Request {
        let mut url = self.url(kind, name);
        if kind == Kind::Vm {
            url.push_str("&$expand=instanceView");
        }
        Request::get(url)
    }

    /// Delete a resource.
    pub fn delete(&self, kind: Kind, name: &str) -> Request {
        Request::delete(self.url(kind, name))
    }

    /// The resource group's resources of `kind`, first page
    /// (`VirtualMachines_List`, `NetworkInterfaces_List`,
    /// `PublicIPAddresses_List`).
    pub fn list(&self, kind: Kind) -> Request {
        let (path, api) = kind.path();
        Request::get(format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/{path}?api-version={api}",
            self.base,
            url_encode(self.subscription),
            url_encode(self.resource_group),
        ))
    }

    /// Read a virtual network by its ARM id (`VirtualNetworks_Get`,
    /// Network 2024-05-01 `virtualNetwork.json`).
    pub fn get_virtual_network(&self, id: &str) -> Request {
        Request::get(format!("{}{id}?api-version={NETWORK_API}", self.base))
    }
}

/// What every tracked resource carries (the parts used to find a
/// workload's resources in a list).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tracked {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Whether `tags` say the resource is this provider's and this backend's
/// (and, with `request`, that grant's).
pub fn is_ours(
    tags: &BTreeMap<String, String>,
    provider: &str,
    backend: &str,
    request: Option<&str>,
) -> bool {
    tags.get(TAGS.provider).map(String::as_str) == Some(provider)
        && tags.get(TAGS.backend).map(String::as_str) == Some(backend)
        && request.is_none_or(|r| tags.get(TAGS.request).map(String::as_str) == Some(r))
}

/// A virtual network (`VirtualNetwork`: only its region is read).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VirtualNetwork {
    /// Region, as ARM writes it (`eastus`).
    #[serde(default)]
    pub location: String,
}

/// A region as ARM may write it (`East US`, `eastus`) in the programmatic
/// form the catalog uses.
pub fn region_key(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Names of a workload's resources, from the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The VM (and its computer name).
    pub vm: String,
    /// Its NIC.
    pub nic: String,
    /// Its public address.
    pub ip: String,
}

impl Names {
    /// `cb-` and 16 hex digits of FNV-1a(provider id `/` request id) for
    /// the VM (a valid Linux host name), `-nic` and `-ip` for the others.
    /// Nothing the requester chose: the names reach the operator's log (a
    /// failed `terminate`, the orphan sweep), which never names a request.
    pub fn for_grant(provider_id: &str, request_id: &str) -> Self {
        let hash = fnv1a(&format!("{provider_id}/{request_id}"));
        Self::for_vm(&format!("cb-{hash:016x}"))
    }

    /// The names that go with a VM's.
    pub fn for_vm(vm: &str) -> Self {
        Self {
            vm: vm.to_string(),
            nic: format!("{vm}-nic"),
            ip: format!("{vm}-ip"),
        }
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A Standard, static IPv4 address (its address is known once created).
pub fn public_ip_body(location: &str, tags: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::json!({
        "location": location,
        "tags": tags,
        "sku": { "name": "Standard", "tier": "Regional" },
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4",
        },
    })
}

/// A NIC in `subnet_id` with the public address, and the NSG if given
/// (all three in `location`).
pub fn nic_body(
    location: &str,
    tags: &BTreeMap<String, String>,
    subnet_id: &str,
    public_ip_id: &str,
    nsg_id: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "location": location,
        "tags": tags,
        "properties": {
            "ipConfigurations": [{
                "name": "ipconfig1",
                "properties": {
                    "primary": true,
                    "privateIPAllocationMethod": "Dynamic",
                    "subnet": { "id": subnet_id },
                    "publicIPAddress": { "id": public_ip_id },
                },
            }],
        },
    });
    if let Some(nsg) = nsg_id {
        body["properties"]["networkSecurityGroup"] = serde_json::json!({ "id": nsg });
    }
    body
}

/// What a VM is created from.
#[derive(Debug, Clone)]
pub struct VmSpec<'a> {
    /// Region.
    pub location: &'a str,
    /// Tags.
    pub tags: &'a BTreeMap<String, String>,
    /// Size name.
    pub size: &'a str,
    /// TDX confidential VM.
    pub tdx: bool,
    /// Image.
    pub image: &'a ImageReference,
    /// OS disk size, GB.
    pub disk_gb: u32,
    /// OS disk storage type.
    pub disk_type: &'a str,
    /// Computer name.
    pub computer_name: &'a str,
    /// The workload's login (the VM's admin user).
    pub user: &'a str,
    /// Its OpenSSH public key.
    pub ssh_public_key: &'a str,
    /// The first-boot script, passed as cloud-init custom data.
    pub custom_data: &'a str,
    /// The NIC's ARM id.
    pub nic_id: &'a str,
}

/// The `VirtualMachine` resource for create.
///
/// TDX: a DCesv5/ECesv5 size with `securityProfile.securityType =
/// "ConfidentialVM"`, Secure Boot and vTPM on, and the OS disk's
/// `securityEncryptionType = "VMGuestStateOnly"` (the guest state is
/// encrypted with the VM; the disk itself is the OS's to encrypt). The NIC
/// and OS disk are deleted with the VM.
pub fn vm_body(s: &VmSpec<'_>) -> serde_json::Value {
    let mut managed_disk = serde_json::json!({ "storageAccountType": s.disk_type });
    if s.tdx {
        managed_disk["securityProfile"] =
            serde_json::json!({ "securityEncryptionType": "VMGuestStateOnly" });
    }
    let mut body = serde_json::json!({
        "location": s.location,
        "tags": s.tags,
        "properties": {
            "hardwareProfile": { "vmSize": s.size },
            "storageProfile": {
                "imageReference": s.image,
                "osDisk": {
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "diskSizeGB": s.disk_gb,
                    "managedDisk": managed_disk,
                },
            },
            "osProfile": {
                "computerName": s.computer_name,
                "adminUsername": s.user,
                "customData": base64::engine::general_purpose::STANDARD.encode(s.custom_data),
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "ssh": { "publicKeys": [{
                        "path": format!("/home/{}/.ssh/authorized_keys", s.user),
                        "keyData": s.ssh_public_key.trim(),
                    }]},
                },
            },
            "networkProfile": {
                "networkInterfaces": [{
                    "id": s.nic_id,
                    "properties": { "primary": true, "deleteOption": "Delete" },
                }],
            },
        },
    });
    if s.tdx {
        body["properties"]["securityProfile"] = serde_json::json!({
            "securityType": "ConfidentialVM",
            "uefiSettings": { "secureBootEnabled": true, "vTpmEnabled": true },
        });
    }
    body
}

/// How a long-running operation is followed, from the first response's
/// headers: `Azure-AsyncOperation` when present, else `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Done already (no monitor header).
    Done,
    /// Poll this URL for `{"status": ...}`.
    AsyncOperation(String),
    /// Poll this URL until it stops answering 202.
    Location(String),
}

/// The monitor for an accepted (200/201/202) response.
pub fn poll_for(resp: &Response) -> Poll {
    if let Some(u) = resp.header("azure-asyncoperation") {
        Poll::AsyncOperation(u.to_string())
    } else if let Some(u) = resp.header("location").filter(|_| resp.status == 202) {
        Poll::Location(u.to_string())
    } else {
        Poll::Done
    }
}

/// Seconds to wait before the next poll: `Retry-After` (seconds), else 2;
/// never above `max`.
pub fn retry_after(resp: &Response, max: u64) -> u64 {
    resp.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(2)
        .min(max)
}

/// An `Azure-AsyncOperation` status body.
#[derive(Debug, Clone, Deserialize)]
pub struct AsyncStatus {
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`, ...
    pub status: String,
    /// Set when it failed.
    #[serde(default)]
    pub error: Option<ArmError>,
}

impl AsyncStatus {
    /// `None` while running; the outcome once done.
    pub fn outcome(&self) -> Option<Result<(), BackendError>> {
        match self.status.as_str() {
            "Succeeded" => Some(Ok(())),
            "Failed" | "Canceled" => Some(Err(self.error.clone().unwrap_or_default().classify(0))),
            _ => None,
        }
    }
}

/// ARM's error object (`{"error": {"code", "message", "details"}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArmError {
    /// `SkuNotAvailable`, `AllocationFailed`, ...
    #[serde(default)]
    pub code: String,
    /// Text.
    #[serde(default)]
    pub message: String,
    /// Nested errors (deployments put the real cause here).
    #[serde(default)]
    pub details: Vec<ArmError>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ArmError,
}

/// Capacity and quota in the region asked: another region (or backend)
/// may have room. The table in the crate docs gives each one's source.
const NO_CAPACITY: &[&str] = &[
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "QuotaExceeded",
    "ResourceQuotaExceeded",
    "PublicIPCountLimitReached",
    "StaticPublicIPCountLimitReached",
];

/// Worth trying again (elsewhere now, here later).
const TRANSIENT: &[&str] = &[
    "TooManyRequests",
    "RetryableError",
    "InternalServerError",
    "ServiceUnavailable",
    "AnotherOperationInProgress",
    "Conflict",
];

impl ArmError {
    fn codes(&self) -> Vec<&ArmError> {
        let mut out = vec![self];
        for d in &self.details {
            out.extend(d.codes());
        }
        out
    }

    /// Classify, with the HTTP status as a fallback: capacity, SKU and
    /// quota → `no-capacity`; throttling, 429 and 5xx → `transient`; refused
    /// tokens and permissions → `config` naming the keys; settings ARM
    /// refuses → `config`; the rest `internal`.
    pub fn classify(&self, status: u16) -> BackendError {
        let all = self.codes();
        let text = all
            .iter()
            .filter(|e| !e.code.is_empty() || !e.message.is_empty())
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let text = if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text
        };
        let has = |codes: &[&str]| all.iter().any(|e| codes.contains(&e.code.as_str()));
        let quota = all.iter().any(|e| {
            e.code == "OperationNotAllowed" && e.message.to_ascii_lowercase().contains("quota")
        });
        if has(NO_CAPACITY) || quota {
            return BackendError::no_capacity(format!("Azure: {text}"));
        }
        if has(TRANSIENT) || status == 429 || status >= 500 {
            return BackendError::transient(format!("Azure: {text}"));
        }
        if has(&[
            "InvalidAuthenticationToken",
            "ExpiredAuthenticationToken",
            "AuthenticationFailed",
        ]) || status == 401
        {
            return BackendError::config(format!(
                "Azure refused the app's token (`tenant_id`, `client_id`, `client_secret`): {text}"
            ));
        }
        if has(&["RequestDisallowedByPolicy"]) {
            return BackendError::config(format!(
                "an Azure Policy on `subscription_id` or `resource_group` refuses this resource \
                 (region, size, image or network): {text}"
            ));
        }
        if has(&["AuthorizationFailed", "LinkedAuthorizationFailed"]) || status == 403 {
            return BackendError::config(format!(
                "the app `client_id` lacks a role on `resource_group` (needs Virtual Machine \
                 Contributor and Network Contributor): {text}"
            ));
        }
        if has(&["ResourceGroupNotFound"]) {
            return BackendError::config(format!("`resource_group` does not exist: {text}"));
        }
        if has(&["SubscriptionNotFound", "InvalidSubscriptionId"]) {
            return BackendError::config(format!("`subscription_id` is wrong: {text}"));
        }
        if has(&[
            "MissingSubscriptionRegistration",
            "MissingRegistrationForLocation",
            "NoRegisteredProviderFound",
        ]) {
            return BackendError::config(format!(
                "register the Microsoft.Compute and Microsoft.Network resource providers for \
                 `subscription_id`: {text}"
            ));
        }
        if has(&["InvalidResourceReference", "NotFound", "ResourceNotFound"]) || status == 404 {
            return BackendError::config(format!(
                "a referenced resource does not exist or is in another region (check \
                 `networks`: each region's `subnet_id` and `network_security_group_id`): {text}"
            ));
        }
        if status == 400 || has(&["InvalidParameter", "BadRequest"]) {
            return BackendError::config(format!(
                "Azure refused a setting (check `image`, `vm_sizes`, `os_disk_type`): {text}"
            ));
        }
        BackendError::internal(format!("Azure: {text}"))
    }
}

/// A failed ARM response, classified.
pub fn api_error(resp: &Response) -> BackendError {
    match serde_json::from_slice::<ErrorBody>(&resp.body) {
        Ok(b) => b.error.classify(resp.status),
        Err(_) => ArmError {
            code: String::new(),
            message: format!(
                "HTTP {}: {}",
                resp.status,
                resp.text().chars().take(200).collect::<String>()
            ),
            details: Vec::new(),
        }
        .classify(resp.status),
    }
}

/// A VM as `GET ...?$expand=instanceView` returns it (the parts used).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Vm {
    /// Name, region and tags.
    #[serde(flatten)]
    pub resource: Tracked,
    /// Properties.
    #[serde(default)]
    pub properties: VmProperties,
}

/// `VirtualMachine.properties` (the parts used).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmProperties {
    /// `Creating`, `Succeeded`, `Failed`, `Deleting`, ...
    #[serde(default)]
    pub provisioning_state: String,
    /// Size.
    #[serde(default)]
    pub hardware_profile: HardwareProfile,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub time_created: Option<String>,
    /// Present with `$expand=instanceView`.
    #[serde(default)]
    pub instance_view: Option<InstanceView>,
}

/// `hardwareProfile`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    /// Size name.
    #[serde(default)]
    pub vm_size: String,
}

/// `instanceView`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceView {
    /// `ProvisioningState/...` and `PowerState/...` entries.
    #[serde(default)]
    pub statuses: Vec<StatusEntry>,
}

/// One instance-view status.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusEntry {
    /// e.g. `PowerState/running`.
    #[serde(default)]
    pub code: String,
}

impl Vm {
    fn status(&self, prefix: &str) -> Option<&str> {
        self.properties
            .instance_view
            .as_ref()?
            .statuses
            .iter()
            .find_map(|s| s.code.strip_prefix(prefix))
    }

    /// The workload's state, from the VM's power and provisioning states.
    pub fn state(&self) -> InstanceState {
        let provisioning = self
            .status("ProvisioningState/")
            .unwrap_or(&self.properties.provisioning_state)
            .to_ascii_lowercase();
        if provisioning.starts_with("deleting") {
            return InstanceState::Gone;
        }
        match self.status("PowerState/") {
            Some("running") => InstanceState::Running,
            Some("stopping" | "stopped" | "deallocating" | "deallocated") => {
                InstanceState::Exited(EXIT_UNKNOWN)
            }
            _ if provisioning.starts_with("failed") => InstanceState::Exited(EXIT_UNKNOWN),
            _ => InstanceState::Starting,
        }
    }
}

/// A page of a list (`{"value": [...], "nextLink": ...}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Items.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// The next page's URL.
    #[serde(default, rename = "nextLink")]
    pub next_link: Option<String>,
}

/// A public IP address resource (the parts used).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicIp {
    /// Properties.
    #[serde(default)]
    pub properties: PublicIpProperties,
}

/// `PublicIPAddress.properties`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpProperties {
    /// The address, once allocated.
    #[serde(default)]
    pub ip_address: Option<String>,
}

/// What the backend keeps in `instance.handle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// Subscription.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// VM name (the NIC and address names follow from it).
    pub vm: String,
    /// Region.
    pub location: String,
    /// Size.
    pub size: String,
    /// Its size's vCPUs and memory, and when it was created.
    #[serde(flatten)]
    pub allocation: Allocation,
}

impl Handle {
    /// Serialized.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a handle serializes")
    }

    /// Parsed; a handle this backend did not write is `rejected`.
    pub fn decode(s: &str) -> Result<Self, BackendError> {
        serde_json::from_str(s)
            .map_err(|e| BackendError::rejected(format!("not an Azure instance handle: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        headers
            .iter()
            .fold(Response::new(status, body), |r, (k, v)| r.with_header(k, v))
    }

    fn arm() -> Arm<'static> {
        Arm {
            base: "https://management.azure.com",
            subscription: "sub",
            resource_group: "rg",
        }
    }

    #[test]
    fn urls_carry_the_right_api_versions() {
        let a = arm();
        assert_eq!(
            a.put(Kind::Vm, "cb-x", &serde_json::json!({})).parts().1,
            "https://management.azure.com/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/cb-x?api-version=2024-07-01"
        );
        assert_eq!(
            a.get(Kind::Vm, "cb-x").parts().1,
            "https://management.azure.com/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/cb-x?api-version=2024-07-01&$expand=instanceView"
        );
        assert_eq!(
            a.delete(Kind::PublicIp, "cb-x-ip").parts().1,
            "https://management.azure.com/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/cb-x-ip?api-version=2024-05-01"
        );
        assert!(a.list(Kind::Vm).parts().1.ends_with(
            "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01"
        ));
        assert!(
            a.list(Kind::PublicIp)
                .parts()
                .1
                .ends_with("/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses?api-version=2024-05-01")
        );
        assert_eq!(
            a.get_virtual_network("/subscriptions/sub/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v")
                .parts()
                .1,
            "https://management.azure.com/subscriptions/sub/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v?api-version=2024-05-01"
        );
        assert_eq!(Kind::Nic.type_name(), "networkInterfaces");
    }

    fn spec() -> (BTreeMap<String, String>, ImageReference) {
        (
            BTreeMap::from([(TAGS.provider.to_string(), "p".to_string())]),
            ImageReference::default(),
        )
    }

    #[test]
    fn tdx_vms_are_confidential_vms_with_guest_state_encryption() {
        let (tags, image) = spec();
        let s = VmSpec {
            location: "eastus",
            tags: &tags,
            size: "Standard_DC4es_v5",
            tdx: true,
            image: &image,
            disk_gb: 30,
            disk_type: "StandardSSD_LRS",
            computer_name: "cb-x",
            user: "cb-user",
            ssh_public_key: "ssh-ed25519 AAAA k\n",
            custom_data: "#!/bin/sh\ntrue\n",
            nic_id: "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/cb-x-nic",
        };
        let b = vm_body(&s);
        let p = &b["properties"];
        assert_eq!(p["securityProfile"]["securityType"], "ConfidentialVM");
        assert_eq!(
            p["securityProfile"]["uefiSettings"]["secureBootEnabled"],
            true
        );
        assert_eq!(p["securityProfile"]["uefiSettings"]["vTpmEnabled"], true);
        assert_eq!(
            p["storageProfile"]["osDisk"]["managedDisk"]["securityProfile"]["securityEncryptionType"],
            "VMGuestStateOnly"
        );
        assert_eq!(p["hardwareProfile"]["vmSize"], "Standard_DC4es_v5");
        assert_eq!(p["osProfile"]["customData"], "IyEvYmluL3NoCnRydWUK");
        assert_eq!(
            p["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"],
            "ssh-ed25519 AAAA k"
        );
        assert_eq!(
            p["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["path"],
            "/home/cb-user/.ssh/authorized_keys"
        );
        assert_eq!(
            p["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"],
            "Delete"
        );
        assert_eq!(b["tags"]["cb-provider"], "p");
        let plain = vm_body(&VmSpec {
            tdx: false,
            size: "Standard_D2s_v5",
            ..s
        });
        assert!(plain["properties"].get("securityProfile").is_none());
        assert!(
            plain["properties"]["storageProfile"]["osDisk"]["managedDisk"]
                .get("securityProfile")
                .is_none()
        );
    }

    #[test]
    fn long_running_operations_are_followed_by_the_right_header() {
        let r = resp(
            201,
            &[
                ("azure-asyncoperation", "https://m/op1"),
                ("location", "https://m/loc"),
            ],
            "{}",
        );
        assert_eq!(poll_for(&r), Poll::AsyncOperation("https://m/op1".into()));
        let r = resp(
            202,
            &[("location", "https://m/loc"), ("retry-after", "7")],
            "",
        );
        assert_eq!(poll_for(&r), Poll::Location("https://m/loc".into()));
        assert_eq!(retry_after(&r, 5), 5);
        assert_eq!(retry_after(&r, 10), 7);
        assert_eq!(poll_for(&resp(200, &[], "{}")), Poll::Done);
        let st: AsyncStatus = serde_json::from_str(r#"{"status":"InProgress"}"#).unwrap();
        assert!(st.outcome().is_none());
        let st: AsyncStatus = serde_json::from_str(
            r#"{"status":"Failed","error":{"code":"AllocationFailed","message":"Allocation failed."}}"#,
        )
        .unwrap();
        assert!(matches!(
            st.outcome(),
            Some(Err(BackendError::NoCapacity(_)))
        ));
    }

    #[test]
    fn errors_are_classified() {
        let kind = |status: u16, body: &str| match api_error(&resp(status, &[], body)) {
            BackendError::NoCapacity(_) => "no-capacity",
            BackendError::Transient(_) => "transient",
            BackendError::Config(_) => "config",
            BackendError::Rejected(_) => "rejected",
            BackendError::Internal(_) => "internal",
        };
        let e =
            |code: &str, msg: &str| format!(r#"{{"error":{{"code":"{code}","message":"{msg}"}}}}"#);
        assert_eq!(
            kind(
                409,
                &e("SkuNotAvailable", "The requested size is not available")
            ),
            "no-capacity"
        );
        assert_eq!(
            kind(200, &e("AllocationFailed", "no capacity")),
            "no-capacity"
        );
        assert_eq!(
            kind(
                409,
                &e(
                    "OperationNotAllowed",
                    "Operation could not be completed as it results in exceeding approved standardDCSv5Family Cores quota."
                )
            ),
            "no-capacity"
        );
        assert_eq!(
            kind(409, &e("OperationNotAllowed", "The VM is being deleted")),
            "internal"
        );
        assert_eq!(kind(429, &e("TooManyRequests", "slow down")), "transient");
        assert_eq!(kind(500, &e("InternalServerError", "oops")), "transient");
        assert_eq!(kind(502, "<html>"), "transient");
        assert_eq!(
            kind(401, &e("ExpiredAuthenticationToken", "expired")),
            "config"
        );
        assert_eq!(kind(403, &e("AuthorizationFailed", "no")), "config");
        assert_eq!(
            kind(
                404,
                &e(
                    "ResourceGroupNotFound",
                    "Resource group 'rg' could not be found."
                )
            ),
            "config"
        );
        // The cause nested in details counts.
        let nested = r#"{"error":{"code":"DeploymentFailed","message":"x","details":[{"code":"ZonalAllocationFailed","message":"y"}]}}"#;
        assert_eq!(kind(409, nested), "no-capacity");
        assert!(
            api_error(&resp(404, &[], &e("ResourceGroupNotFound", "m")))
                .message()
                .contains("`resource_group`")
        );
        // The network step's quota answer is capacity, not a setting.
        assert_eq!(
            kind(
                400,
                &e(
                    "PublicIPCountLimitReached",
                    "Cannot create more than 10 public IP addresses for this subscription in this region."
                )
            ),
            "no-capacity"
        );
        assert!(
            api_error(&resp(400, &[], &e("InvalidResourceReference", "m")))
                .message()
                .contains("`networks`")
        );
    }

    /// Every row of the taxonomy table in the crate docs is what
    /// `classify` does with that answer.
    #[test]
    fn the_documented_taxonomy_is_what_classify_does() {
        let docs = include_str!("lib.rs");
        let table = docs
            .split("| ARM answer | HTTP | becomes | source |")
            .nth(1)
            .expect("the taxonomy table in the crate docs");
        let mut rows = 0;
        for line in table.lines().skip(2) {
            let Some(row) = line.strip_prefix("//! | ") else {
                break;
            };
            let cells: Vec<&str> = row.split(" | ").collect();
            let ticked = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let status: u16 = if cells[1].contains("failed operation") {
                0
            } else {
                cells[1].trim().parse().expect(line)
            };
            let want = ticked(cells[2]).into_iter().next().expect(line);
            let message = if cells[0].contains("without a quota message") {
                "The operation is not allowed while the VM is being deleted."
            } else if cells[0].contains("quota message") {
                "Operation could not be completed as it results in exceeding approved standardDCSv5Family Cores quota."
            } else {
                "as documented"
            };
            for code in ticked(cells[0]) {
                let e = ArmError {
                    code: code.clone(),
                    message: message.into(),
                    details: Vec::new(),
                }
                .classify(status);
                let got = match e {
                    BackendError::NoCapacity(_) => "no-capacity",
                    BackendError::Transient(_) => "transient",
                    BackendError::Config(_) => "config",
                    BackendError::Rejected(_) => "rejected",
                    BackendError::Internal(_) => "internal",
                };
                assert_eq!(got, want, "{code} ({status}): {line}");
                rows += 1;
            }
        }
        assert!(rows >= 28, "only {rows} codes read from the table");
    }

    #[test]
    fn vm_states_are_read_from_the_instance_view() {
        let vm = |codes: &[&str]| -> Vm {
            serde_json::from_value(serde_json::json!({
                "name": "v", "location": "eastus",
                "properties": {
                    "provisioningState": "Succeeded",
                    "instanceView": {"statuses": codes.iter().map(|c| serde_json::json!({"code": c})).collect::<Vec<_>>()},
                },
            }))
            .unwrap()
        };
        assert_eq!(
            vm(&["ProvisioningState/succeeded", "PowerState/running"]).state(),
            InstanceState::Running
        );
        assert_eq!(
            vm(&["ProvisioningState/creating", "PowerState/starting"]).state(),
            InstanceState::Starting
        );
        assert_eq!(
            vm(&["ProvisioningState/succeeded", "PowerState/stopped"]).state(),
            InstanceState::Exited(EXIT_UNKNOWN)
        );
        assert_eq!(
            vm(&["ProvisioningState/succeeded", "PowerState/deallocated"]).state(),
            InstanceState::Exited(EXIT_UNKNOWN)
        );
        assert_eq!(
            vm(&["ProvisioningState/deleting", "PowerState/running"]).state(),
            InstanceState::Gone
        );
        assert_eq!(
            vm(&["ProvisioningState/failed/AllocationFailed"]).state(),
            InstanceState::Exited(EXIT_UNKNOWN)
        );
    }

    #[test]
    fn names_are_stable_distinct_and_valid_host_names() {
        let n = Names::for_grant("p1", "Grant/42");
        // Nothing of the request id, which the requester chose.
        assert!(
            n.vm.starts_with("cb-") && n.vm.len() == 19 && !n.vm.contains("42"),
            "{}",
            n.vm
        );
        assert_eq!(n, Names::for_grant("p1", "Grant/42"));
        assert_ne!(n.vm, Names::for_grant("p2", "Grant/42").vm);
        assert_eq!(n.nic, format!("{}-nic", n.vm));
        assert_eq!(n.ip, format!("{}-ip", n.vm));
        let long = Names::for_grant("p1", &"x".repeat(300));
        assert!(long.vm.len() <= 53);
    }

    #[test]
    fn a_handle_round_trips_with_its_allocation_beside_its_fields() {
        use cb_cloud::allocation::testing::{ALLOCATION, assert_allocation_flattened_last};
        let h = Handle {
            subscription: "s".into(),
            resource_group: "rg".into(),
            vm: "v".into(),
            location: "eastus".into(),
            size: "Standard_DC4es_v5".into(),
            allocation: ALLOCATION,
        };
        let json = h.encode();
        assert_allocation_flattened_last(&json);
        assert_eq!(Handle::decode(&json).unwrap(), h);
    }
}
