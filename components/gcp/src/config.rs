//! The `[backends.config]` table of a GCP backend, and the service-account
//! key it carries.

use std::collections::BTreeMap;

use compute_bridge_sdk::BackendError;
use serde::Deserialize;

use crate::catalog::{self, MachineType};

/// Compute Engine's REST endpoint.
pub const COMPUTE_URL: &str = "https://compute.googleapis.com";
/// Google's OAuth 2.0 token endpoint, used when the key names none.
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope for Compute Engine.
pub const SCOPE: &str = "https://www.googleapis.com/auth/compute";

/// The backend's settings. Every key is documented in the crate docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Project the instances are created in.
    pub project: String,
    /// The service-account key file's JSON text (usually `"${ENV}"`).
    pub service_account_key: String,
    /// Machine types, by zone, the backend may use.
    #[serde(default)]
    pub machine_types: Vec<MachineType>,
    /// Boot image (a family or image URL, relative to the API root).
    #[serde(default = "default_image")]
    pub image: String,
    /// Boot disk size, GB.
    #[serde(default = "default_disk")]
    pub boot_disk_gb: u32,
    /// VPC network.
    #[serde(default = "default_network")]
    pub network: String,
    /// The subnetwork of each region the catalog places in, by region
    /// (`us-central1 = "bridge"`): a subnetwork is regional, so an instance
    /// takes the one of its zone's region. Empty: no subnetwork is named and
    /// each instance gets the auto-mode network's own subnetwork of its
    /// region (the `default` network is auto mode).
    #[serde(default)]
    pub subnetworks: BTreeMap<String, String>,
    /// The old single `subnetwork`: refused, naming `subnetworks` (one
    /// subnetwork cannot serve zones of several regions).
    #[serde(default)]
    pub subnetwork: Option<serde_json::Value>,
    /// Network tags on every instance (what firewall rules match, e.g. one
    /// that lets SSH in).
    #[serde(default)]
    pub network_tags: Vec<String>,
    /// Total CPU offered across grants, millicores.
    #[serde(default = "default_max_cpu")]
    pub max_cpu_millicores: u32,
    /// Total memory offered across grants, MiB.
    #[serde(default = "default_max_ram")]
    pub max_ram_mib: u32,
    /// Compute Engine endpoint (tests point it at a fake).
    #[serde(default = "default_compute_url")]
    pub compute_url: String,
    /// Token endpoint; defaults to the key's `token_uri`.
    #[serde(default)]
    pub token_url: Option<String>,
}

fn default_image() -> String {
    "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64".into()
}
fn default_disk() -> u32 {
    20
}
fn default_network() -> String {
    "global/networks/default".into()
}
fn default_max_cpu() -> u32 {
    32_000
}
fn default_max_ram() -> u32 {
    131_072
}
fn default_compute_url() -> String {
    COMPUTE_URL.into()
}

impl GcpConfig {
    /// Check what serde cannot: names the API would refuse, a catalog that
    /// asks for TDX where GCP has none. Errors name the key.
    pub fn validate(&self) -> Result<(), BackendError> {
        if !is_project_id(&self.project) {
            return Err(BackendError::config(format!(
                "`project` {:?} is not a GCP project id",
                self.project
            )));
        }
        if !(10..=65_536).contains(&self.boot_disk_gb) {
            return Err(BackendError::config(
                "`boot_disk_gb` must be between 10 and 65536",
            ));
        }
        for (i, t) in self.machine_types.iter().enumerate() {
            t.validate()
                .map_err(|m| BackendError::config(format!("`machine_types[{i}]`: {m}")))?;
        }
        self.validate_subnetworks()?;
        for (key, url) in [
            ("compute_url", Some(&self.compute_url)),
            ("token_url", self.token_url.as_ref()),
        ] {
            if let Some(u) = url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                return Err(BackendError::config(format!(
                    "`{key}` must be an http(s) URL"
                )));
            }
        }
        Ok(())
    }

    /// Per-region subnetworks: each names its own region (or none, a bare
    /// name), and when there are any, every region the catalog places in
    /// has one. Errors start with the key path, so `check-config` points at
    /// the line.
    fn validate_subnetworks(&self) -> Result<(), BackendError> {
        if self.subnetwork.is_some() {
            return Err(BackendError::config(
                "`subnetwork`: a subnetwork belongs to one region, so the single `subnetwork` \
                 is replaced by `subnetworks`, one per region of the catalog: \
                 [backends.config.subnetworks] us-central1 = \"regions/us-central1/subnetworks/NAME\" \
                 (or leave both out to use the auto-mode network's subnetwork in each region)",
            ));
        }
        for (region, value) in &self.subnetworks {
            if !catalog::is_region(region) {
                return Err(BackendError::config(format!(
                    "`subnetworks`: {region:?} is not a region like us-central1"
                )));
            }
            subnetwork_url(region, value)
                .map_err(|m| BackendError::config(format!("`subnetworks.{region}`: {m}")))?;
        }
        if self.subnetworks.is_empty() {
            return Ok(());
        }
        for (i, t) in self.machine_types.iter().enumerate() {
            for zone in &t.zones {
                let region = catalog::region_of(zone);
                if !self.subnetworks.contains_key(region) {
                    return Err(BackendError::config(format!(
                        "`subnetworks`: region {region} (zone {zone} of `machine_types[{i}]`) has \
                         no subnetwork; add {region} = \"regions/{region}/subnetworks/NAME\" \
                         here, or remove the zone"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The subnetwork for an instance in `region`, as the API takes it
    /// (`regions/R/subnetworks/S` or a full URL); `None` when the network's
    /// own (auto-mode) subnetwork is meant.
    pub fn subnetwork_for(&self, region: &str) -> Option<String> {
        let value = self.subnetworks.get(region)?;
        subnetwork_url(region, value).ok()
    }

    /// Compute Engine base URL without a trailing slash.
    pub fn compute_base(&self) -> &str {
        self.compute_url.trim_end_matches('/')
    }
}

/// A `subnetworks` value in the forms `NetworkInterface.subnetwork` takes
/// (compute.proto: a full URL
/// `https://www.googleapis.com/compute/v1/projects/P/regions/R/subnetworks/S`
/// or the partial `regions/R/subnetworks/S`), or a bare name, which is
/// made the partial URL of `region`. A URL must name `region`: a subnetwork
/// serves only instances of its own region.
fn subnetwork_url(region: &str, value: &str) -> Result<String, String> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if is_name(value) {
        return Ok(format!("regions/{region}/subnetworks/{value}"));
    }
    let partial = value
        .strip_prefix("https://www.googleapis.com/compute/v1/projects/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(value, |(_, rest)| rest);
    let parts: Vec<&str> = partial.split('/').collect();
    match parts.as_slice() {
        ["regions", r, "subnetworks", n] if is_name(n) => {
            if *r == region {
                Ok(value.to_string())
            } else {
                Err(format!(
                    "{value:?} is a subnetwork of region {r}, not {region}; a subnetwork serves \
                     only instances in zones of its own region"
                ))
            }
        }
        _ => Err(format!(
            "{value:?} is not a subnetwork name, regions/{region}/subnetworks/NAME or \
             https://www.googleapis.com/compute/v1/projects/PROJECT/regions/{region}/subnetworks/NAME"
        )),
    }
}

fn is_project_id(p: &str) -> bool {
    (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !p.ends_with('-')
}

/// The fields of a service-account key file the backend uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account, `name@project.iam.gserviceaccount.com`.
    pub client_email: String,
    /// The key's id (the JWT `kid`).
    #[serde(default)]
    pub private_key_id: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// The token endpoint Google wrote into the key.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parse the key JSON. Errors name the config key and never quote the
    /// text (it holds a private key).
    pub fn parse(json: &str) -> Result<Self, BackendError> {
        let hint =
            "set `service_account_key` to the key file's JSON, e.g. \"${GCP_SERVICE_ACCOUNT_KEY}\"";
        let key: Self = serde_json::from_str(json).map_err(|e| {
            // serde's data errors may quote a value; only say where.
            let what = match e.classify() {
                serde_json::error::Category::Data if e.to_string().starts_with("missing field") => {
                    let msg = e.to_string();
                    msg.split(" at line").next().unwrap_or("").to_string()
                }
                serde_json::error::Category::Data => "a field has the wrong type".to_string(),
                _ => format!("not JSON (line {} column {})", e.line(), e.column()),
            };
            BackendError::config(format!(
                "`service_account_key` is not a service-account key: {what}; {hint}"
            ))
        })?;
        if key.kind != "service_account" {
            return Err(BackendError::config(format!(
                "`service_account_key` is a {:?} credential, not a service-account key; {hint}",
                key.kind
            )));
        }
        if key.client_email.is_empty() {
            return Err(BackendError::config(
                "`service_account_key` has an empty client_email",
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_name_the_key_and_hide_the_value() {
        let secret = "-----BEGIN PRIVATE KEY-----\\nMIIsecret\\n-----END PRIVATE KEY-----\\n";
        for bad in [
            format!("{{\"type\":\"service_account\",\"private_key\":\"{secret}\"}}"),
            format!("{{\"type\":5,\"client_email\":\"a@b\",\"private_key\":\"{secret}\"}}"),
            format!("\"{secret}\""),
            secret.to_string(),
            format!(
                "{{\"type\":\"authorized_user\",\"client_email\":\"a@b\",\"private_key\":\"{secret}\"}}"
            ),
        ] {
            let e = ServiceAccountKey::parse(&bad).unwrap_err();
            let BackendError::Config(m) = &e else {
                panic!("{e:?}")
            };
            assert!(m.contains("`service_account_key`"), "{m}");
            assert!(!m.contains("MIIsecret"), "{m}");
        }
        let e = ServiceAccountKey::parse(r#"{"type":"service_account","private_key":"x"}"#)
            .unwrap_err();
        assert!(
            e.message().contains("missing field `client_email`"),
            "{e:?}"
        );
    }

    #[test]
    fn config_validation_names_the_key() {
        let cfg: GcpConfig = serde_json::from_value(serde_json::json!({
            "project": "Bad_Project",
            "service_account_key": "{}",
        }))
        .unwrap();
        assert!(cfg.validate().unwrap_err().message().contains("`project`"));
        let cfg: GcpConfig = serde_json::from_value(serde_json::json!({
            "project": "my-project",
            "service_account_key": "{}",
            "machine_types": [{"name": "n2-standard-2", "cpus": 2, "ram_mib": 8192, "tdx": true, "zones": ["us-central1-a"]}],
        }))
        .unwrap();
        let m = cfg.validate().unwrap_err();
        assert!(m.message().contains("`machine_types[0]`"), "{m:?}");
    }
}

#[cfg(test)]
mod subnetworks {
    use super::*;

    fn cfg(extra: serde_json::Value) -> GcpConfig {
        let mut v = serde_json::json!({
            "project": "my-project",
            "service_account_key": "{}",
            "machine_types": [
                {"name": "n2-standard-2", "cpus": 2, "ram_mib": 8192, "zones": ["us-central1-a"]},
                {"name": "c3-standard-4", "cpus": 4, "ram_mib": 16384, "tdx": true,
                 "zones": ["us-central1-b", "europe-west4-b"]},
            ],
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn refused(c: &GcpConfig) -> String {
        match c.validate() {
            Err(BackendError::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn each_region_gets_its_own_subnetwork() {
        let c = cfg(serde_json::json!({"subnetworks": {
            "us-central1": "bridge-us",
            "europe-west4": "https://www.googleapis.com/compute/v1/projects/host-proj/regions/europe-west4/subnetworks/bridge-eu",
        }}));
        c.validate().unwrap();
        assert_eq!(
            c.subnetwork_for("us-central1").as_deref(),
            Some("regions/us-central1/subnetworks/bridge-us")
        );
        assert_eq!(
            c.subnetwork_for("europe-west4").as_deref(),
            Some(
                "https://www.googleapis.com/compute/v1/projects/host-proj/regions/europe-west4/subnetworks/bridge-eu"
            )
        );
        assert_eq!(c.subnetwork_for("asia-east1"), None);
        // No table at all: the auto-mode network's own subnetwork everywhere.
        let auto = cfg(serde_json::json!({}));
        auto.validate().unwrap();
        assert_eq!(auto.subnetwork_for("us-central1"), None);
    }

    #[test]
    fn a_catalog_region_without_a_subnetwork_is_refused_naming_the_key() {
        let c = cfg(serde_json::json!({"subnetworks": {"us-central1": "bridge"}}));
        let m = refused(&c);
        assert!(
            m.starts_with(
                "`subnetworks`: region europe-west4 (zone europe-west4-b of `machine_types[1]`)"
            ),
            "{m}"
        );
    }

    #[test]
    fn a_subnetwork_of_another_region_is_refused() {
        let c = cfg(serde_json::json!({"subnetworks": {
            "us-central1": "bridge",
            "europe-west4": "regions/us-central1/subnetworks/bridge",
        }}));
        let m = refused(&c);
        assert!(m.starts_with("`subnetworks.europe-west4`: "), "{m}");
        assert!(m.contains("region us-central1, not europe-west4"), "{m}");
        let c = cfg(serde_json::json!({"subnetworks": {"us-central1-a": "bridge"}}));
        assert!(refused(&c).starts_with("`subnetworks`: \"us-central1-a\" is not a region"));
        let c = cfg(serde_json::json!({"subnetworks": {
            "us-central1": "global/networks/default", "europe-west4": "bridge"}}));
        let m = refused(&c);
        assert!(m.starts_with("`subnetworks.us-central1`: "), "{m}");
        assert!(m.contains("is not a subnetwork name"), "{m}");
    }

    #[test]
    fn the_old_single_subnetwork_is_refused_naming_the_new_key() {
        let c = cfg(serde_json::json!({"subnetwork": "regions/us-central1/subnetworks/bridge"}));
        let m = refused(&c);
        assert!(m.starts_with("`subnetwork`: "), "{m}");
        assert!(m.contains("`subnetworks`"), "{m}");
    }
}

#[cfg(test)]
mod example {
    /// The `[backends.config]` of the example in the crate docs.
    pub fn documented_config() -> serde_json::Value {
        cb_cloud::documented_config(include_str!("lib.rs"), &[])
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        let cfg: super::GcpConfig = serde_json::from_value(documented_config()).unwrap();
        cfg.validate().unwrap();
        assert!(crate::catalog::tdx_capable(&cfg.machine_types));
    }
}
