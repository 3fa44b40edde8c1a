//! The `[backends.config]` table of an AWS backend.
//!
//! ```toml
//! [backends.config]
//! access_key_id = "${AWS_ACCESS_KEY_ID}"          # required
//! secret_access_key = "${AWS_SECRET_ACCESS_KEY}"  # required
//! # session_token = "${AWS_SESSION_TOKEN}"        # temporary credentials only
//! max_vcpus = 32            # vCPUs offered across all grants (default 32)
//! max_ram_mib = 131072      # memory offered across all grants (default 128 GiB)
//! public_address_wait_sec = 30  # how long provision waits for a public IP
//! # endpoint = "http://127.0.0.1:5000"  # one EC2 endpoint for every region (tests, moto)
//!
//! [[backends.config.regions]]   # in the order the fleet tries them; the first is the default
//! name = "us-east-1"
//! ami = "ami-0123456789abcdef0"            # must have docker or podman, or a package manager
//! # subnet_id = "subnet-0123456789abcdef0" # default VPC's subnets when unset
//! # security_group_ids = ["sg-0123456789abcdef0"]  # must allow SSH in
//! # endpoint = "https://vpce-....ec2.us-east-1.vpce.amazonaws.com"  # this region only
//!
//! [[backends.config.instance_types]]
//! type = "t3.medium"
//! vcpu = 2
//! ram_mib = 4096
//! usd_per_hour = 0.0416
//! ```
//!
//! The host expands `${ENV}` before the component sees the table; the
//! secrets never appear in an error message, a log line or `Debug`.

use serde::Deserialize;

use crate::sigv4::Credentials;
use compute_bridge_sdk::BackendError;

/// The whole table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Access key id (usually `${AWS_ACCESS_KEY_ID}`).
    #[serde(default)]
    pub access_key_id: String,
    /// Secret access key (usually `${AWS_SECRET_ACCESS_KEY}`).
    #[serde(default)]
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Regions, in preference order: the fleet offers a grant without a
    /// region to each in turn (this order is `capabilities().regions`), and
    /// a direct call without one is placed in the first.
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    /// The instance types the backend may launch; the cheapest one that
    /// fits a grant is used.
    #[serde(default)]
    pub instance_types: Vec<InstanceType>,
    /// One EC2 endpoint for every region instead of
    /// `https://ec2.<region>.amazonaws.com` (a test server, a VPC endpoint).
    /// A region's own `endpoint` wins over it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// vCPUs offered across all grants.
    #[serde(default = "default_max_vcpus")]
    pub max_vcpus: u32,
    /// Memory offered across all grants, MiB.
    #[serde(default = "default_max_ram")]
    pub max_ram_mib: u32,
    /// Seconds `provision` waits for the instance's public address. Keep it
    /// below the backend's `call_timeout_sec`.
    #[serde(default = "default_address_wait")]
    pub public_address_wait_sec: u64,
}

fn default_max_vcpus() -> u32 {
    32
}
fn default_max_ram() -> u32 {
    131_072
}
fn default_address_wait() -> u64 {
    30
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field("credentials", &self.credentials())
            .field("regions", &self.regions)
            .field("instance_types", &self.instance_types)
            .field("endpoint", &self.endpoint)
            .field("max_vcpus", &self.max_vcpus)
            .field("max_ram_mib", &self.max_ram_mib)
            .finish_non_exhaustive()
    }
}

/// `[[backends.config.regions]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region name (`us-east-1`).
    pub name: String,
    /// Image id to boot in this region.
    pub ami: String,
    /// Subnet to launch into (the default VPC when unset). The instance gets
    /// a public address either way.
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// Security groups (the VPC's default group when empty); they must let
    /// the requester reach port 22.
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// This region's EC2 endpoint instead of the backend's `endpoint` or
    /// `https://ec2.<name>.amazonaws.com` (a VPC interface endpoint, a
    /// FIPS endpoint, a test server). List it in `allowed_hosts` too.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `[[backends.config.instance_types]]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    /// EC2 instance type (`t3.medium`).
    #[serde(rename = "type")]
    pub name: String,
    /// Its vCPUs.
    pub vcpu: u32,
    /// Its memory, MiB.
    pub ram_mib: u32,
    /// What it costs per hour, USD (on-demand price).
    pub usd_per_hour: f64,
}

impl AwsConfig {
    /// Parse the table from its JSON form and check it.
    pub fn from_json(json: &str) -> Result<Self, BackendError> {
        let cfg: Self = serde_json::from_str(json)
            .map_err(|e| BackendError::Config(format!("[backends.config]: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check what serde cannot: required keys present, names well formed,
    /// numbers sensible. Errors name the key.
    pub fn validate(&self) -> Result<(), BackendError> {
        let bad = |key: &str, why: &str| Err(BackendError::Config(format!("`{key}`: {why}")));
        if self.access_key_id.trim().is_empty() {
            return bad(
                "access_key_id",
                "missing (set it to \"${AWS_ACCESS_KEY_ID}\")",
            );
        }
        if self.secret_access_key.trim().is_empty() {
            return bad(
                "secret_access_key",
                "missing (set it to \"${AWS_SECRET_ACCESS_KEY}\")",
            );
        }
        if self.regions.is_empty() {
            return bad("regions", "list at least one [[backends.config.regions]]");
        }
        for (i, r) in self.regions.iter().enumerate() {
            let ok = !r.name.is_empty()
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return bad(&format!("regions[{i}].name"), "not a region name");
            }
            if r.ami.trim().is_empty() {
                return bad(&format!("regions[{i}].ami"), "missing");
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                return bad(&format!("regions[{i}].name"), "listed twice");
            }
            if let Some(e) = &r.endpoint {
                Endpoint::parse(e).map_err(|why| {
                    BackendError::Config(format!("`regions[{i}].endpoint`: {why}"))
                })?;
            }
        }
        if self.instance_types.is_empty() {
            return bad(
                "instance_types",
                "list at least one [[backends.config.instance_types]]",
            );
        }
        for (i, t) in self.instance_types.iter().enumerate() {
            if t.name.trim().is_empty() || t.vcpu == 0 || t.ram_mib == 0 {
                return bad(
                    &format!("instance_types[{i}]"),
                    "needs a type, vcpu > 0 and ram_mib > 0",
                );
            }
            if !t.usd_per_hour.is_finite() || t.usd_per_hour < 0.0 {
                return bad(
                    &format!("instance_types[{i}].usd_per_hour"),
                    "must be a price >= 0",
                );
            }
        }
        if let Some(e) = &self.endpoint {
            Endpoint::parse(e).map_err(|why| BackendError::Config(format!("`endpoint`: {why}")))?;
        }
        Ok(())
    }

    /// The credentials.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.trim().to_string(),
            secret_access_key: self.secret_access_key.trim().to_string(),
            session_token: self
                .session_token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        }
    }

    /// The cheapest type with at least `cpu_millicores` and `ram_mib`
    /// (ties: fewer vCPUs, less memory, then name).
    pub fn cheapest_fit(&self, cpu_millicores: u32, ram_mib: u32) -> Option<&InstanceType> {
        self.instance_types
            .iter()
            .filter(|t| {
                u64::from(t.vcpu) * 1000 >= u64::from(cpu_millicores) && t.ram_mib >= ram_mib
            })
            .min_by(|a, b| {
                a.usd_per_hour
                    .total_cmp(&b.usd_per_hour)
                    .then(a.vcpu.cmp(&b.vcpu))
                    .then(a.ram_mib.cmp(&b.ram_mib))
                    .then(a.name.cmp(&b.name))
            })
    }

    /// The catalog entry for `name`.
    pub fn instance_type(&self, name: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|t| t.name == name)
    }

    /// A configured region.
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Where a grant is placed: the region it names (if configured), else
    /// the first configured region. Trying the other regions is the
    /// fleet's job, one call per region.
    pub fn placement_region(&self, wanted: Option<&str>) -> Option<&RegionConfig> {
        match wanted {
            Some(w) => self.region(w),
            None => self.regions.first(),
        }
    }

    /// The EC2 endpoint for `region`: its own `endpoint`, else the
    /// backend's, else AWS's public one.
    pub fn endpoint(&self, region: &str) -> Endpoint {
        let own = self.region(region).and_then(|r| r.endpoint.as_ref());
        match own.or(self.endpoint.as_ref()) {
            Some(e) => Endpoint::parse(e).expect("validated at load"),
            None => Endpoint {
                url: format!("https://ec2.{region}.amazonaws.com/"),
                host: format!("ec2.{region}.amazonaws.com"),
            },
        }
    }
}

/// An EC2 endpoint: the URL requests go to and the `Host` they are signed
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]/`.
    pub url: String,
    /// `host[:port]` as sent in the `Host` header (default ports omitted).
    pub host: String,
}

impl Endpoint {
    /// Parse `http(s)://host[:port]` (no path, no credentials).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('/');
        let (scheme, authority) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not scheme://host[:port]"))?;
        if !matches!(scheme, "http" | "https") {
            return Err(format!("{s:?}: the scheme must be http or https"));
        }
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!("{s:?}: write scheme://host[:port], no path"));
        }
        let authority = authority.to_ascii_lowercase();
        let host = match (scheme, authority.rsplit_once(':')) {
            ("https", Some((h, "443"))) | ("http", Some((h, "80"))) => h.to_string(),
            _ => authority.clone(),
        };
        Ok(Self {
            url: format!("{scheme}://{authority}/"),
            host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<AwsConfig, BackendError> {
        AwsConfig::from_json(&format!(
            r#"{{"access_key_id": "AKID", "secret_access_key": "s3cr3t",
                "regions": [{{"name": "us-east-1", "ami": "ami-1"}}, {{"name": "eu-west-1", "ami": "ami-2"}}],
                "instance_types": [
                    {{"type": "m5.large", "vcpu": 2, "ram_mib": 8192, "usd_per_hour": 0.096}},
                    {{"type": "t3.small", "vcpu": 2, "ram_mib": 2048, "usd_per_hour": 0.0208}},
                    {{"type": "c5.xlarge", "vcpu": 4, "ram_mib": 8192, "usd_per_hour": 0.17}},
                    {{"type": "t3.medium", "vcpu": 2, "ram_mib": 4096, "usd_per_hour": 0.0416}}
                ]{extra}}}"#
        ))
    }

    #[test]
    fn the_cheapest_type_that_fits_wins() {
        let c = cfg("").unwrap();
        let pick = |cpu, ram| c.cheapest_fit(cpu, ram).map(|t| t.name.as_str());
        assert_eq!(pick(500, 256), Some("t3.small"));
        assert_eq!(pick(2000, 2048), Some("t3.small"));
        assert_eq!(pick(2000, 3000), Some("t3.medium"));
        assert_eq!(pick(2000, 8192), Some("m5.large"));
        assert_eq!(pick(2001, 1024), Some("c5.xlarge"));
        assert_eq!(pick(4000, 8193), None);
    }

    #[test]
    fn missing_and_malformed_keys_are_named_without_values() {
        let e = AwsConfig::from_json(r#"{"secret_access_key": "s3cr3t"}"#).unwrap_err();
        assert!(e.to_string().contains("`access_key_id`"), "{e}");
        let e = AwsConfig::from_json(
            r#"{"access_key_id": "A", "secret_access_key": "s3cr3t", "colour": 1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = cfg(r#", "endpoint": "ftp://x""#).unwrap_err();
        assert!(e.to_string().contains("`endpoint`"), "{e}");
        for e in [e, cfg(r#", "max_vcpus": "many""#).unwrap_err()] {
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
        assert!(!format!("{:?}", cfg("").unwrap()).contains("s3cr3t"));
    }

    #[test]
    fn endpoints_default_to_the_region_and_can_be_overridden() {
        let c = cfg("").unwrap();
        assert_eq!(
            c.endpoint("eu-west-1"),
            Endpoint {
                url: "https://ec2.eu-west-1.amazonaws.com/".into(),
                host: "ec2.eu-west-1.amazonaws.com".into()
            }
        );
        let c = cfg(r#", "endpoint": "http://127.0.0.1:5000/""#).unwrap();
        assert_eq!(c.endpoint("us-east-1").url, "http://127.0.0.1:5000/");
        assert_eq!(c.endpoint("us-east-1").host, "127.0.0.1:5000");
        assert_eq!(
            Endpoint::parse("https://EC2.example:443").unwrap().host,
            "ec2.example"
        );
        // A region's own endpoint wins, for that region only.
        let c = AwsConfig::from_json(
            r#"{"access_key_id": "AKID", "secret_access_key": "s3cr3t",
                "endpoint": "http://127.0.0.1:5000",
                "regions": [{"name": "us-east-1", "ami": "ami-1", "endpoint": "http://127.0.0.1:6000"},
                            {"name": "eu-west-1", "ami": "ami-2"}],
                "instance_types": [{"type": "t3.small", "vcpu": 2, "ram_mib": 2048, "usd_per_hour": 0.02}]}"#,
        )
        .unwrap();
        assert_eq!(c.endpoint("us-east-1").url, "http://127.0.0.1:6000/");
        assert_eq!(c.endpoint("eu-west-1").url, "http://127.0.0.1:5000/");
        let e = AwsConfig::from_json(
            r#"{"access_key_id": "AKID", "secret_access_key": "s3cr3t",
                "regions": [{"name": "us-east-1", "ami": "ami-1", "endpoint": "ftp://x"}],
                "instance_types": [{"type": "t3.small", "vcpu": 2, "ram_mib": 2048, "usd_per_hour": 0.02}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`regions[0].endpoint`"), "{e}");
    }

    #[test]
    fn a_grant_goes_to_its_region_or_the_first() {
        let c = cfg("").unwrap();
        let name = |w| c.placement_region(w).map(|r| r.name.as_str());
        assert_eq!(name(None), Some("us-east-1"));
        assert_eq!(name(Some("eu-west-1")), Some("eu-west-1"));
        assert_eq!(name(Some("ap-south-1")), None);
    }
}
