//! The `[backends.config]` table of a GCP backend, and the service-account
//! key it carries.

use compute_bridge_sdk::BackendError;
use serde::Deserialize;

use crate::catalog::MachineType;

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
    /// Subnetwork (`regions/R/subnetworks/S`), if not the network's auto one.
    #[serde(default)]
    pub subnetwork: Option<String>,
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

    /// Compute Engine base URL without a trailing slash.
    pub fn compute_base(&self) -> &str {
        self.compute_url.trim_end_matches('/')
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
mod example {
    /// The `[backends.config]` of the example in the crate docs.
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
            .expect("a toml example in the crate docs");
        let boot: toml::Table = toml::from_str(block).expect("the example is TOML");
        let config = &boot["backends"].as_array().unwrap()[0]["config"];
        serde_json::to_value(config).unwrap()
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        let cfg: super::GcpConfig = serde_json::from_value(documented_config()).unwrap();
        cfg.validate().unwrap();
        assert!(crate::catalog::tdx_capable(&cfg.machine_types));
    }
}
