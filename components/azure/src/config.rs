//! The `[backends.config]` table of an Azure backend.

use compute_bridge_sdk::BackendError;
use serde::{Deserialize, Serialize};

use crate::catalog::VmSize;

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
    /// ARM id of the subnet the NICs join.
    pub subnet_id: String,
    /// ARM id of a network security group for the NICs (it must let SSH
    /// in: Standard public addresses are closed by default).
    #[serde(default)]
    pub network_security_group_id: Option<String>,
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
        for (key, id) in [
            ("subnet_id", Some(&self.subnet_id)),
            (
                "network_security_group_id",
                self.network_security_group_id.as_ref(),
            ),
        ] {
            if let Some(id) = id
                && !(id.starts_with("/subscriptions/")
                    && id.contains("/providers/Microsoft.Network/"))
            {
                return Err(BackendError::config(format!(
                    "`{key}` must be an ARM id (/subscriptions/.../providers/Microsoft.Network/...)"
                )));
            }
        }
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

    fn base() -> serde_json::Value {
        serde_json::json!({
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "00000000-0000-0000-0000-000000000001",
            "client_secret": "s3cret-value",
            "subscription_id": "11111111-2222-3333-4444-555555555555",
            "resource_group": "bridge-rg",
            "subnet_id": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/bridge-rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default",
        })
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
            ("subnet_id", "default"),
        ] {
            let mut v = base();
            v[key] = value.into();
            let cfg: AzureConfig = serde_json::from_value(v).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(e.message().contains(&format!("`{key}`")), "{key}: {e:?}");
        }
    }
}

#[cfg(test)]
mod example {
    /// The `[backends.config]` of the example in the crate docs, with the
    /// elided ids filled in.
    pub fn documented_config() -> serde_json::Value {
        let docs: String = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let block = docs
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml example in the crate docs")
            .replace(
                "/subscriptions/.../",
                "/subscriptions/00000000-0000-0000-0000-000000000000/",
            );
        let boot: toml::Table = toml::from_str(&block).expect("the example is TOML");
        let config = &boot["backends"].as_array().unwrap()[0]["config"];
        serde_json::to_value(config).unwrap()
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        let cfg: super::AzureConfig = serde_json::from_value(documented_config()).unwrap();
        cfg.validate().unwrap();
        assert!(crate::catalog::tdx_capable(&cfg.vm_sizes));
    }
}
