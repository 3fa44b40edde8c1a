//! The `[backends.config]` table of an Azure backend.
//!
//! Network settings are per region (`networks`): a NIC must be in the
//! VM's region and in a virtual network of that region ("Each NIC attached
//! to a VM must exist in the same location and subscription as the VM.
//! Each NIC must be connected to a virtual network that exists in the same
//! Azure location and subscription as the NIC",
//! <https://learn.microsoft.com/en-us/previous-versions/azure/virtual-network/network-overview>),
//! and a network security group serves NICs of its own region only. So
//! every region the catalog offers needs its own subnet, and a region
//! without one is refused here, before any grant. Errors start with the
//! backticked key they are about, so `check-config` points at its line.
//! Nothing here keeps or prints the client secret.

use std::collections::BTreeMap;

use compute_bridge_sdk::BackendError;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, VmSize};

/// Azure Resource Manager.
pub const MANAGEMENT_URL: &str = "https://management.azure.com";
/// The Microsoft identity platform.
pub const LOGIN_URL: &str = "https://login.microsoftonline.com";
/// The scope of a token for Azure Resource Manager.
pub const SCOPE: &str = "https://management.azure.com/.default";

/// The backend's settings. Every key is documented in the crate docs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Directory (tenant) id of the app registration.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret (usually `"${ENV}"`).
    pub client_secret: String,
    /// Subscription the VMs are billed to.
    pub subscription_id: String,
    /// Resource group the VMs, NICs and addresses are created in.
    pub resource_group: String,
    /// Per region: the subnet its NICs join and their security group.
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
    /// The single subnet of earlier versions: refused, naming `networks`.
    #[serde(default)]
    subnet_id: Option<serde_json::Value>,
    /// Likewise the single security group.
    #[serde(default)]
    network_security_group_id: Option<serde_json::Value>,
    /// VM sizes, by region, the backend may use.
    #[serde(default)]
    pub vm_sizes: Vec<VmSize>,
    /// Marketplace image; for confidential VMs a CVM image.
    #[serde(default)]
    pub image: ImageReference,
    /// OS disk size, GB.
    #[serde(default = "default_disk")]
    pub os_disk_gb: u32,
    /// OS disk storage type.
    #[serde(default = "default_disk_type")]
    pub os_disk_type: String,
    /// Total CPU offered across grants, millicores.
    #[serde(default = "default_max_cpu")]
    pub max_cpu_millicores: u32,
    /// Total memory offered across grants, MiB.
    #[serde(default = "default_max_ram")]
    pub max_ram_mib: u32,
    /// Resource Manager endpoint (tests point it at a fake).
    #[serde(default = "default_management")]
    pub management_url: String,
    /// Identity platform endpoint (tests point it at a fake).
    #[serde(default = "default_login")]
    pub login_url: String,
}

impl std::fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureConfig")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("subscription_id", &self.subscription_id)
            .field("resource_group", &self.resource_group)
            .finish_non_exhaustive()
    }
}

/// One region's network: `[backends.config.networks.<region>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// ARM id of a subnet of a virtual network in that region.
    pub subnet_id: String,
    /// ARM id of a network security group in that region for the NICs (it
    /// must let SSH in: Standard public addresses are closed by default).
    #[serde(default)]
    pub network_security_group_id: Option<String>,
}

impl Network {
    /// The ARM id of the subnet's virtual network (the subnet id without
    /// `/subnets/<name>`).
    pub fn virtual_network_id(&self) -> &str {
        let lower = self.subnet_id.to_ascii_lowercase();
        match lower.rfind("/subnets/") {
            Some(i) => &self.subnet_id[..i],
            None => &self.subnet_id,
        }
    }
}

/// The parts of an ARM resource id:
/// `/subscriptions/S/resourceGroups/G/providers/P/T/N[/T2/N2]`. Segment
/// names and provider namespaces are case-insensitive
/// (<https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules>).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceId<'a> {
    /// Subscription.
    pub subscription: &'a str,
    /// Resource group.
    pub resource_group: &'a str,
    /// `(type, name)` pairs after the provider namespace.
    pub types: Vec<(&'a str, &'a str)>,
}

impl<'a> ResourceId<'a> {
    /// Parse an id under `Microsoft.Network`; `None` if it is not one.
    pub fn network(id: &'a str) -> Option<Self> {
        let parts: Vec<&str> = id.split('/').collect();
        let [
            "",
            subs,
            subscription,
            rgs,
            resource_group,
            providers,
            ns,
            rest @ ..,
        ] = parts.as_slice()
        else {
            return None;
        };
        if !(subs.eq_ignore_ascii_case("subscriptions")
            && rgs.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && ns.eq_ignore_ascii_case("Microsoft.Network"))
            || rest.is_empty()
            || rest.len() % 2 != 0
            || parts.iter().skip(1).any(|p| p.is_empty())
        {
            return None;
        }
        Some(Self {
            subscription,
            resource_group,
            types: rest.chunks(2).map(|c| (c[0], c[1])).collect(),
        })
    }

    fn is(&self, types: &[&str]) -> bool {
        self.types.len() == types.len()
            && self
                .types
                .iter()
                .zip(types)
                .all(|((t, _), want)| t.eq_ignore_ascii_case(want))
    }
}

/// `storageProfile.imageReference`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageReference {
    /// Publisher.
    pub publisher: String,
    /// Offer.
    pub offer: String,
    /// SKU.
    pub sku: String,
    /// Version (`latest`).
    #[serde(default = "latest")]
    pub version: String,
}

fn latest() -> String {
    "latest".into()
}

impl Default for ImageReference {
    /// Ubuntu 24.04 LTS, confidential-VM build (boots as a TDX or SEV-SNP
    /// guest, and as a plain VM).
    fn default() -> Self {
        Self {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "cvm".into(),
            version: latest(),
        }
    }
}

fn default_disk() -> u32 {
    30
}
fn default_disk_type() -> String {
    "StandardSSD_LRS".into()
}
fn default_max_cpu() -> u32 {
    32_000
}
fn default_max_ram() -> u32 {
    131_072
}
fn default_management() -> String {
    MANAGEMENT_URL.into()
}
fn default_login() -> String {
    LOGIN_URL.into()
}

impl AzureConfig {
    /// Check what serde cannot. Errors name the key, never a secret.
    pub fn validate(&self) -> Result<(), BackendError> {
        for (key, v) in [
            ("tenant_id", &self.tenant_id),
            ("client_id", &self.client_id),
            ("subscription_id", &self.subscription_id),
        ] {
            let ok = is_guid(v) || (key == "tenant_id" && is_domain(v));
            if !ok {
                return Err(BackendError::config(format!(
                    "`{key}` must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
                )));
            }
        }
        if self.client_secret.is_empty() {
            return Err(BackendError::config("`client_secret` is empty"));
        }
        let rg_ok = (1..=90).contains(&self.resource_group.len())
            && self
                .resource_group
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.()".contains(c))
            && !self.resource_group.ends_with('.');
        if !rg_ok {
            return Err(BackendError::config(format!(
                "`resource_group` {:?} is not a resource group name",
                self.resource_group
            )));
        }
        self.validate_networks()?;
        if !(30..=4095).contains(&self.os_disk_gb) {
            return Err(BackendError::config(
                "`os_disk_gb` must be between 30 and 4095",
            ));
        }
        for (i, s) in self.vm_sizes.iter().enumerate() {
            s.validate()
                .map_err(|m| BackendError::config(format!("`vm_sizes[{i}]`: {m}")))?;
        }
        for (key, url) in [
            ("management_url", &self.management_url),
            ("login_url", &self.login_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(BackendError::config(format!(
                    "`{key}` must be an http(s) URL"
                )));
            }
        }
        Ok(())
    }
}

impl AzureConfig {
    /// `networks`: one per catalog region, each id of the right shape, in
    /// this subscription, and no subnet or security group given for two
    /// regions (each lives in one).
    fn validate_networks(&self) -> Result<(), BackendError> {
        // The single subnet of earlier versions cannot serve more than one
        // region, and its region cannot be read from its id: refused
        // always, naming what replaces it.
        for (key, set) in [
            ("subnet_id", self.subnet_id.is_some()),
            (
                "network_security_group_id",
                self.network_security_group_id.is_some(),
            ),
        ] {
            if set {
                return Err(BackendError::config(format!(
                    "`{key}`: replaced by `networks`, one per region (a NIC must be in a virtual \
                     network of its VM's region): move it to \
                     [backends.config.networks.<region>] {key} = \"...\" for the region its \
                     virtual network is in, and add one for each other region in `vm_sizes`"
                )));
            }
        }
        for (region, net) in &self.networks {
            let key = format!("networks.{region}");
            if !catalog::is_region_name(region) {
                return Err(BackendError::config(format!(
                    "`{key}`: {region:?} is not a region name like eastus"
                )));
            }
            let subnet = ResourceId::network(&net.subnet_id)
                .filter(|id| id.is(&["virtualNetworks", "subnets"]))
                .ok_or_else(|| {
                    BackendError::config(format!(
                        "`{key}.subnet_id`: not a subnet id (/subscriptions/<id>/resourceGroups/<group>\
                         /providers/Microsoft.Network/virtualNetworks/<network>/subnets/<subnet>)"
                    ))
                })?;
            if !subnet
                .subscription
                .eq_ignore_ascii_case(&self.subscription_id)
            {
                return Err(BackendError::config(format!(
                    "`{key}.subnet_id`: the subnet is in subscription {}, not in `subscription_id`; \
                     a NIC and its virtual network must be in one subscription",
                    subnet.subscription
                )));
            }
            if let Some(nsg) = &net.network_security_group_id
                && ResourceId::network(nsg)
                    .filter(|id| id.is(&["networkSecurityGroups"]))
                    .is_none()
            {
                return Err(BackendError::config(format!(
                    "`{key}.network_security_group_id`: not a network security group id \
                     (/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network\
                     /networkSecurityGroups/<name>)"
                )));
            }
        }
        // A subnet (or security group) listed for two regions is wrong for
        // at least one of them.
        let mut seen: Vec<(&str, String, String)> = Vec::new();
        for (region, net) in &self.networks {
            let mine = [
                ("subnet_id", Some(&net.subnet_id)),
                (
                    "network_security_group_id",
                    net.network_security_group_id.as_ref(),
                ),
            ];
            for (field, id) in mine {
                let Some(id) = id else { continue };
                let id = id.to_ascii_lowercase();
                if let Some((_, other, _)) = seen.iter().find(|(f, _, i)| *f == field && *i == id) {
                    return Err(BackendError::config(format!(
                        "`networks.{region}.{field}`: the same as `networks.{other}.{field}`; it is \
                         in one region, so give each region one of its own"
                    )));
                }
                seen.push((field, region.clone(), id));
            }
        }
        for region in catalog::regions(&self.vm_sizes) {
            if !self.networks.contains_key(&region) {
                let (i, _) = self
                    .vm_sizes
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.regions.contains(&region))
                    .expect("a catalog region comes from a size");
                return Err(BackendError::config(format!(
                    "`networks`: region {region} (in `vm_sizes[{i}].regions`) has no network; add \
                     [backends.config.networks.{region}] with the `subnet_id` of a virtual network \
                     in {region}"
                )));
            }
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(s: &str) -> bool {
    s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "11111111-2222-3333-4444-555555555555";

    fn subnet(vnet: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/bridge-rg/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/default"
        )
    }

    fn nsg(name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/bridge-rg/providers/Microsoft.Network/networkSecurityGroups/{name}"
        )
    }

    /// A TDX size in two regions, each with its network.
    fn base() -> serde_json::Value {
        serde_json::json!({
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "00000000-0000-0000-0000-000000000001",
            "client_secret": "s3cret-value",
            "subscription_id": SUB,
            "resource_group": "bridge-rg",
            "networks": {
                "eastus": {"subnet_id": subnet("vnet-east"), "network_security_group_id": nsg("ssh-east")},
                "westeurope": {"subnet_id": subnet("vnet-west")},
            },
            "vm_sizes": [{"name": "Standard_DC4es_v5", "cpus": 4, "ram_mib": 16384, "tdx": true,
                "regions": ["eastus", "westeurope"]}],
        })
    }

    fn refusal(v: serde_json::Value) -> String {
        let cfg: AzureConfig = serde_json::from_value(v).unwrap();
        cfg.validate().unwrap_err().message().to_string()
    }

    #[test]
    fn a_valid_config_passes_and_hides_its_secret() {
        let cfg: AzureConfig = serde_json::from_value(base()).unwrap();
        cfg.validate().unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert_eq!(cfg.image, ImageReference::default());
    }

    #[test]
    fn errors_name_the_key() {
        for (key, value) in [
            ("client_id", "not-a-guid"),
            ("subscription_id", ""),
            ("resource_group", "bad/rg"),
        ] {
            let mut v = base();
            v[key] = value.into();
            let cfg: AzureConfig = serde_json::from_value(v).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(e.message().contains(&format!("`{key}`")), "{key}: {e:?}");
        }
    }

    #[test]
    fn a_catalog_region_without_a_network_is_refused_naming_networks() {
        let mut v = base();
        v["networks"].as_object_mut().unwrap().remove("westeurope");
        let m = refusal(v);
        assert!(
            m.starts_with(
                "`networks`: region westeurope (in `vm_sizes[0].regions`) has no network"
            ),
            "{m}"
        );
        // A network for a region no size uses is kept for later.
        let mut v = base();
        v["networks"]["japaneast"] = serde_json::json!({"subnet_id": subnet("vnet-japan")});
        let cfg: AzureConfig = serde_json::from_value(v).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn one_subnet_or_security_group_for_two_regions_is_refused() {
        let mut v = base();
        v["networks"]["westeurope"]["subnet_id"] = subnet("vnet-east").into();
        let m = refusal(v);
        assert!(
            m.starts_with(
                "`networks.westeurope.subnet_id`: the same as `networks.eastus.subnet_id`"
            ),
            "{m}"
        );
        let mut v = base();
        v["networks"]["westeurope"]["network_security_group_id"] = nsg("SSH-EAST").into();
        let m = refusal(v);
        assert!(
            m.starts_with("`networks.westeurope.network_security_group_id`: the same as"),
            "{m}"
        );
    }

    #[test]
    fn network_ids_are_checked_where_their_shape_tells() {
        for (field, value, says) in [
            ("subnet_id", "default".to_string(), "not a subnet id"),
            (
                "subnet_id",
                format!("/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v"),
                "not a subnet id",
            ),
            (
                "subnet_id",
                "/subscriptions/99999999-2222-3333-4444-555555555555/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/s".to_string(),
                "the subnet is in subscription 99999999-",
            ),
            ("network_security_group_id", subnet("v"), "not a network security group id"),
        ] {
            let mut v = base();
            v["networks"]["westeurope"][field] = value.clone().into();
            let m = refusal(v);
            assert!(
                m.starts_with(&format!("`networks.westeurope.{field}`: {says}")),
                "{value}: {m}"
            );
        }
        // Segment names and the namespace are case-insensitive in ARM ids.
        let mut v = base();
        v["networks"]["westeurope"]["subnet_id"] = format!(
            "/subscriptions/{SUB}/resourcegroups/bridge-rg/providers/microsoft.network/virtualnetworks/vnet-west/subnets/default"
        )
        .into();
        let cfg: AzureConfig = serde_json::from_value(v).unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.networks["westeurope"].virtual_network_id(),
            format!(
                "/subscriptions/{SUB}/resourcegroups/bridge-rg/providers/microsoft.network/virtualnetworks/vnet-west"
            )
        );
    }

    #[test]
    fn the_single_subnet_of_earlier_versions_is_refused_naming_networks() {
        for key in ["subnet_id", "network_security_group_id"] {
            let mut v = base();
            v[key] = subnet("vnet-east").into();
            let m = refusal(v);
            assert!(
                m.starts_with(&format!("`{key}`: replaced by `networks`, one per region")),
                "{m}"
            );
        }
    }
}

#[cfg(test)]
mod example {
    /// The `[backends.config]` of the example in the crate docs, with the
    /// elided ids filled in.
    pub fn documented_config() -> serde_json::Value {
        cb_cloud::documented_config(
            include_str!("lib.rs"),
            &[(
                "/subscriptions/.../",
                "/subscriptions/00000000-0000-0000-0000-000000000000/",
            )],
        )
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        let cfg: super::AzureConfig = serde_json::from_value(documented_config()).unwrap();
        cfg.validate().unwrap();
        assert!(crate::catalog::tdx_capable(&cfg.vm_sizes));
    }
}
