//! The backend's own `[backends.config]` table.
//!
//! How a host is *reached* (address, port, user, pinned host key, or the
//! `local` transport) lives in the host's `[backends.ssh.hosts.<label>]`
//! section and is never visible here. This table says what each labelled
//! host *offers* and where requesters connect to it:
//!
//! ```toml
//! [backends.config]
//! state_dir = "/var/lib/compute-bridge"   # on each host (root); optional
//! sample_interval_sec = 1                 # usage sampling period; optional
//!
//! [[backends.config.hosts]]               # one table per host, in placement order
//! label = "rack-01"                       # a key of [backends.ssh.hosts]
//! region = "home-01"
//! cpu_millicores = 32000
//! ram_mib = 131072
//! runtime = "process"                     # or "podman"
//! limits = "auto"                         # auto | systemd | cgroup | prlimit
//! max_processes = 512
//! public_host = "rack-01.example.net"     # what requesters connect to
//! public_port = 22
//! public_host_key = "ssh-ed25519 AAAA..." # optional; read from the host if absent
//! tdx_capable = false
//! mrtd = "..."                            # 96 hex digits, required with tdx_capable
//! ```

use serde::Deserialize;

use crate::Error;

/// Where grant state lives on a host when commands run as root.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/compute-bridge";

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hosts in placement order: a grant goes to the first one with room.
    pub hosts: Vec<HostConfig>,
    /// Directory on each host for grant state (accounts' homes, limits,
    /// usage counters) when the SSH user is root. A non-root SSH user keeps
    /// it in `$XDG_STATE_HOME/compute-bridge` (`~/.local/state/...`).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Seconds between the host-side supervisor's samples: how soon a new
    /// login is moved into its grant's cgroup, and the resolution of the
    /// sampled counters (memory, and CPU under `prlimit`).
    #[serde(default = "default_interval")]
    pub sample_interval_sec: u32,
}

/// `[[backends.config.hosts]]`: one operator-owned host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's label: a key of this backend's `[backends.ssh.hosts]`.
    pub label: String,
    /// Region label the host is offered under (operator's choice).
    pub region: String,
    /// CPU the host offers to grants in total, millicores.
    pub cpu_millicores: u32,
    /// Memory the host offers to grants in total, MiB.
    pub ram_mib: u32,
    /// How workloads run there.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// How the `process` runtime limits a workload (`auto` picks the best
    /// the host supports).
    #[serde(default)]
    pub limits: LimitsChoice,
    /// Most processes one grant may run at once (cgroup `pids.max`,
    /// systemd `TasksMax`, podman `--pids-limit`, `RLIMIT_NPROC`).
    #[serde(default = "default_max_processes")]
    pub max_processes: u32,
    /// Host name or address requesters connect to. The component never
    /// learns the address the bridge itself uses, so the operator states
    /// the public one here.
    pub public_host: String,
    /// SSH port requesters connect to.
    #[serde(default = "default_port")]
    pub public_port: u16,
    /// The SSH host key requesters should expect (OpenSSH public key). If
    /// absent, the host's `/etc/ssh/ssh_host_ed25519_key.pub` is used.
    #[serde(default)]
    pub public_host_key: Option<String>,
    /// True for a bare-TDX host that can take TDX-required grants.
    #[serde(default)]
    pub tdx_capable: bool,
    /// The host's measured MR_TD (48 bytes, hex); required with
    /// `tdx_capable`.
    #[serde(default)]
    pub mrtd: Option<String>,
}

/// How a workload runs on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A per-grant Unix account; the workload is its login environment (no
    /// image runs).
    #[default]
    Process,
    /// A per-grant container of the grant's image (pinned by digest), run
    /// by podman under systemd where systemd runs; the login enters it.
    Podman,
}

impl RuntimeKind {
    /// The word used in config and on hosts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Podman => "podman",
        }
    }
}

/// Which limit mechanism the `process` runtime may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsChoice {
    /// The best the host supports: `systemd`, then `cgroup` (v2, then v1),
    /// then `prlimit`.
    #[default]
    Auto,
    /// A transient systemd unit with `CPUQuota`, `MemoryMax`, `TasksMax`
    /// (needs systemd and cgroup v2).
    Systemd,
    /// A cgroup per grant created directly (v2, or v1 `cpu`/`cpuacct`/
    /// `memory`/`pids`).
    Cgroup,
    /// Per-process resource limits only (`RLIMIT_AS`, `RLIMIT_NPROC`); CPU
    /// is not capped and is measured by sampling.
    Prlimit,
}

impl LimitsChoice {
    /// The word used in config and on hosts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Systemd => "systemd",
            Self::Cgroup => "cgroup",
            Self::Prlimit => "prlimit",
        }
    }
}

fn default_state_dir() -> String {
    DEFAULT_STATE_DIR.to_string()
}
fn default_interval() -> u32 {
    1
}
fn default_max_processes() -> u32 {
    512
}
fn default_port() -> u16 {
    22
}

/// What the backend offers in total (the WIT `offer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Distinct regions, in config order.
    pub regions: Vec<String>,
    /// True if any host is TDX-capable.
    pub tdx_capable: bool,
    /// Sum of the hosts' CPU.
    pub max_cpu_millicores: u32,
    /// Sum of the hosts' memory.
    pub max_ram_mib: u32,
}

impl Config {
    /// Parse the table (as the JSON the host serves) and validate it.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let cfg: Config = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("[backends.config]: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check what serde cannot: unique labels, sane sizes, TDX facts, and
    /// characters that end up in paths and sudoers rules on the hosts.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |i: usize, key: &str, msg: &str| {
            Err(Error::Config(format!(
                "[backends.config] hosts[{i}].{key}: {msg}"
            )))
        };
        if self.hosts.is_empty() {
            return Err(Error::Config(
                "[backends.config] needs at least one [[backends.config.hosts]] table".into(),
            ));
        }
        if !self.state_dir.starts_with('/')
            || !self
                .state_dir
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
            || self.state_dir.contains("..")
        {
            return Err(Error::Config(format!(
                "[backends.config] state_dir: {:?} must be an absolute path of letters, digits, '/', '.', '_' and '-'",
                self.state_dir
            )));
        }
        if !(1..=60).contains(&self.sample_interval_sec) {
            return Err(Error::Config(
                "[backends.config] sample_interval_sec: must be between 1 and 60".into(),
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if h.label.is_empty()
                || !h
                    .label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(i, "label", "use letters, digits, '-' and '_'");
            }
            if let Some(j) = self.hosts[..i].iter().position(|o| o.label == h.label) {
                return bad(i, "label", &format!("{:?} is already hosts[{j}]", h.label));
            }
            if h.region.trim().is_empty() {
                return bad(i, "region", "must not be empty");
            }
            if h.cpu_millicores == 0 {
                return bad(i, "cpu_millicores", "must be at least 1");
            }
            if h.ram_mib == 0 {
                return bad(i, "ram_mib", "must be at least 1");
            }
            if h.max_processes < 8 {
                return bad(i, "max_processes", "must be at least 8");
            }
            if h.public_host.trim().is_empty() {
                return bad(i, "public_host", "must name the host requesters connect to");
            }
            if let Some(k) = &h.public_host_key
                && crate::keys::parse_public_key(k).is_none()
            {
                return bad(i, "public_host_key", "not an OpenSSH public key");
            }
            match (&h.mrtd, h.tdx_capable) {
                (Some(m), _) if m.len() != 96 || hex::decode(m).is_err() => {
                    return bad(i, "mrtd", "must be 48 bytes of hex (96 characters)");
                }
                (None, true) => {
                    return bad(
                        i,
                        "mrtd",
                        "a tdx_capable host needs its measured MR_TD (96 hex characters)",
                    );
                }
                _ => {}
            }
            if h.runtime == RuntimeKind::Podman && h.limits != LimitsChoice::Auto {
                return bad(
                    i,
                    "limits",
                    "applies to the process runtime; podman limits its containers itself",
                );
            }
        }
        Ok(())
    }

    /// Check that every host's label has an SSH section; `labels` are the
    /// labels the host granted this backend.
    pub fn check_labels(&self, labels: &[String]) -> Result<(), Error> {
        for (i, h) in self.hosts.iter().enumerate() {
            if !labels.contains(&h.label) {
                return Err(Error::Config(format!(
                    "[backends.config] hosts[{i}].label: {:?} has no [backends.ssh.hosts.{}] section",
                    h.label, h.label
                )));
            }
        }
        Ok(())
    }

    /// The host labelled `label`.
    pub fn host(&self, label: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.label == label)
    }

    /// What the backend offers: every host's capacity summed.
    pub fn offer(&self) -> Offer {
        let mut regions: Vec<String> = Vec::new();
        for h in &self.hosts {
            if !regions.contains(&h.region) {
                regions.push(h.region.clone());
            }
        }
        Offer {
            regions,
            tdx_capable: self.hosts.iter().any(|h| h.tdx_capable),
            max_cpu_millicores: self
                .hosts
                .iter()
                .fold(0u32, |a, h| a.saturating_add(h.cpu_millicores)),
            max_ram_mib: self
                .hosts
                .iter()
                .fold(0u32, |a, h| a.saturating_add(h.ram_mib)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = r#"{"label": "a", "region": "r1", "cpu_millicores": 1000, "ram_mib": 512, "public_host": "h"}"#;

    fn cfg(hosts: &[&str]) -> Result<Config, Error> {
        Config::from_json(&format!(r#"{{"hosts": [{}]}}"#, hosts.join(",")))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = cfg(&[HOST]).unwrap();
        assert_eq!(c.state_dir, DEFAULT_STATE_DIR);
        let h = &c.hosts[0];
        assert_eq!(h.runtime, RuntimeKind::Process);
        assert_eq!(h.limits, LimitsChoice::Auto);
        assert_eq!(h.public_port, 22);
        assert_eq!(h.max_processes, 512);
    }

    #[test]
    fn offer_sums_hosts_and_dedups_regions() {
        let b = HOST.replace(r#""a""#, r#""b""#);
        let c = HOST.replace(r#""a""#, r#""c""#).replace("r1", "r2");
        let o = cfg(&[HOST, &b, &c]).unwrap().offer();
        assert_eq!(o.regions, vec!["r1", "r2"]);
        assert_eq!(o.max_cpu_millicores, 3000);
        assert_eq!(o.max_ram_mib, 1536);
        assert!(!o.tdx_capable);
    }

    #[test]
    fn mistakes_name_their_key() {
        let e = cfg(&[HOST, HOST]).unwrap_err();
        assert!(format!("{e:?}").contains("hosts[1].label"), "{e:?}");
        let tdx = HOST.replace(r#""h""#, r#""h", "tdx_capable": true"#);
        let e = cfg(&[&tdx]).unwrap_err();
        assert!(format!("{e:?}").contains("hosts[0].mrtd"), "{e:?}");
        let e = cfg(&[&HOST.replace("\"a\"", "\"a b\"")]).unwrap_err();
        assert!(format!("{e:?}").contains("label"), "{e:?}");
        let e = Config::from_json(&format!(
            r#"{{"hosts": [{HOST}], "state_dir": "/var/lib/x y"}}"#
        ))
        .unwrap_err();
        assert!(format!("{e:?}").contains("state_dir"), "{e:?}");
        let e = cfg(&[&HOST.replace("\"h\"", "\"h\", \"colour\": 1")]).unwrap_err();
        assert!(format!("{e:?}").contains("unknown field `colour`"), "{e:?}");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../../../config/example.toml");
        let boot: toml::Table = toml::from_str(text).unwrap();
        let backend = boot["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["component"].as_str() == Some("builtin:baremetal"))
            .expect("config/example.toml documents the bare-metal backend");
        let json = serde_json::to_string(&backend["config"]).unwrap();
        let c = Config::from_json(&json).unwrap();
        let labels: Vec<String> = backend["ssh"]["hosts"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        c.check_labels(&labels).unwrap();
        assert_eq!(c.hosts[1].runtime, RuntimeKind::Podman);
        assert!(c.offer().tdx_capable);
    }

    #[test]
    fn a_label_without_an_ssh_section_is_a_config_error() {
        let c = cfg(&[HOST]).unwrap();
        assert!(c.check_labels(&["a".into()]).is_ok());
        let e = c.check_labels(&["b".into()]).unwrap_err();
        assert!(format!("{e:?}").contains("[backends.ssh.hosts.a]"), "{e:?}");
    }
}
