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
//! runtime = "process"                     # or "podman", or "vm"
//! limits = "auto"                         # auto | systemd | cgroup | prlimit
//! max_processes = 512
//! public_host = "rack-01.example.net"     # what requesters connect to
//! public_port = 22
//! public_host_key = "ssh-ed25519 AAAA..." # optional; read from the host if absent
//! tdx_capable = false                     # true needs runtime = "vm" with vm.firmware
//! mrtd = "..."                            # 96 hex digits, required with tdx_capable
//!
//! [backends.config.hosts.vm]              # runtime = "vm" only
//! kernel = "/var/lib/compute-bridge/guest/vmlinuz"
//! initrd = "/var/lib/compute-bridge/guest/initrd.img"
//! accel = "tcg"                           # or "kvm"
//! bind_address = "0.0.0.0"                # where each guest's SSH port listens
//! firmware = "/usr/share/ovmf/OVMF.fd"    # TDVF: TDX-required grants run as TDs
//! ```
//!
//! # Invariants
//!
//! A TDX-required grant runs only as a TD guest: `tdx_capable = true` is
//! refused unless the host has a TD runtime (`runtime = "vm"` with
//! `vm.firmware`), so no such grant ever becomes a Unix account or a
//! container. Every validation error starts with the backticked key path
//! it is about (`` `hosts[2].tdx_capable`: … ``), which `check-config`
//! turns into file:line:column.

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
    /// The guest the `vm` runtime boots (`runtime = "vm"` only).
    #[serde(default)]
    pub vm: Option<VmConfig>,
}

/// `[backends.config.hosts.vm]`: what the `vm` runtime boots on a host,
/// and how. Paths are on the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The guest kernel (bzImage).
    pub kernel: String,
    /// The guest initramfs (`scripts/build-guest.sh` makes one: busybox and
    /// dropbear, the grant's user and keys read from fw_cfg).
    pub initrd: String,
    /// QEMU's accelerator. `tcg` runs anywhere (slowly); `kvm` only where
    /// KVM guests really run, which is never assumed.
    #[serde(default)]
    pub accel: Accel,
    /// Address each guest's forwarded SSH port listens on.
    #[serde(default = "default_bind_address")]
    pub bind_address: String,
    /// TDX firmware (TDVF, e.g. OVMF built with TDX support). With it the
    /// host has a TD runtime: TDX-required grants boot as TD guests.
    #[serde(default)]
    pub firmware: Option<String>,
}

/// QEMU's accelerator for the `vm` runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Emulation: works on any host, several times slower.
    #[default]
    Tcg,
    /// Hardware virtualisation (`/dev/kvm`); required for TD guests.
    Kvm,
}

impl Accel {
    /// The word QEMU takes after `-accel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

impl HostConfig {
    /// True if this host can run a TDX-required grant as a TD guest: the
    /// `vm` runtime with TDX firmware configured.
    pub fn has_td_runtime(&self) -> bool {
        self.runtime == RuntimeKind::Vm && self.vm.as_ref().is_some_and(|v| v.firmware.is_some())
    }

    /// The MR_TD this host's TD guests measure to (48 bytes), if it is
    /// TDX-capable. Validated by [`Config::validate`].
    pub fn mrtd_bytes(&self) -> Option<[u8; 48]> {
        let m = self.mrtd.as_deref().filter(|_| self.tdx_capable)?;
        hex::decode(m).ok()?.try_into().ok()
    }
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
    /// A per-grant QEMU guest booted from the host's [`VmConfig`] kernel
    /// and initramfs; the requester logs in to the guest. With
    /// `vm.firmware` a TDX-required grant's guest is a TD.
    Vm,
}

impl RuntimeKind {
    /// The word used in config and on hosts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Podman => "podman",
            Self::Vm => "vm",
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
fn default_bind_address() -> String {
    "0.0.0.0".to_string()
}

/// True if `p` is an absolute path of characters that are safe in a shell
/// word and a QEMU option (`,` separates QEMU's sub-options).
fn plain_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-".contains(c))
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
    /// `(region, MR_TD as 96 lowercase hex digits)` for each region with a
    /// TDX-capable host, in config order: what the provider card publishes
    /// per region ([`Config::validate`] holds a region to one MR_TD).
    pub td_measurements: Vec<(String, String)>,
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
            Err(Error::Config(format!("`hosts[{i}].{key}`: {msg}")))
        };
        if self.hosts.is_empty() {
            return Err(Error::Config(
                "`hosts`: [backends.config] needs at least one [[backends.config.hosts]] table"
                    .into(),
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
                "`state_dir`: {:?} must be an absolute path of letters, digits, '/', '.', '_' and '-'",
                self.state_dir
            )));
        }
        if !(1..=60).contains(&self.sample_interval_sec) {
            return Err(Error::Config(
                "`sample_interval_sec`: must be between 1 and 60".into(),
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
            if h.runtime != RuntimeKind::Process && h.limits != LimitsChoice::Auto {
                return bad(
                    i,
                    "limits",
                    "applies to the process runtime; podman and vm limit their workloads themselves",
                );
            }
            match (&h.vm, h.runtime) {
                (None, RuntimeKind::Vm) => {
                    return bad(
                        i,
                        "runtime",
                        "\"vm\" needs a [backends.config.hosts.vm] table with the guest's kernel and initrd",
                    );
                }
                (Some(_), RuntimeKind::Process | RuntimeKind::Podman) => {
                    return bad(i, "vm", "applies to runtime = \"vm\" only");
                }
                (Some(v), RuntimeKind::Vm) => {
                    for (key, p) in [
                        ("kernel", Some(&v.kernel)),
                        ("initrd", Some(&v.initrd)),
                        ("firmware", v.firmware.as_ref()),
                    ] {
                        if let Some(p) = p
                            && !plain_path(p)
                        {
                            return bad(
                                i,
                                &format!("vm.{key}"),
                                &format!(
                                    "{p:?} must be an absolute path of letters, digits, '/', '.', '_', '+' and '-'"
                                ),
                            );
                        }
                    }
                    if v.bind_address.parse::<std::net::IpAddr>().is_err() {
                        return bad(i, "vm.bind_address", "must be an IP address");
                    }
                    if v.firmware.is_some() && v.accel != Accel::Kvm {
                        return bad(
                            i,
                            "vm.accel",
                            "a TD guest (vm.firmware) needs accel = \"kvm\": TDX runs on KVM only",
                        );
                    }
                }
                (None, _) => {}
            }
            // The hole this closes: a TDX-required grant placed on a host
            // that would give it an account or a container on the host.
            if h.tdx_capable && !h.has_td_runtime() {
                return bad(
                    i,
                    "tdx_capable",
                    "a TDX-capable host needs a TD runtime (runtime = \"vm\" with vm.firmware, \
                     its TDX firmware); TDX-required grants never run as a Unix account or a \
                     container on the host. Set tdx_capable = false, or configure the vm runtime",
                );
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
            // The card carries one MR_TD per region (WIT `td-measurement`):
            // a requester that pins one must get it wherever in the region
            // its grant lands.
            if let Some(m) = h.mrtd_bytes()
                && let Some(other) = self.hosts[..i]
                    .iter()
                    .find(|o| o.region == h.region && o.mrtd_bytes().is_some_and(|om| om != m))
            {
                return bad(
                    i,
                    "mrtd",
                    &format!(
                        "differs from the MR_TD of host {:?} in the same region {:?}; the \
                         provider card carries one MR_TD per region, so TD hosts with \
                         different firmware need regions of their own",
                        other.label, h.region
                    ),
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
                    "`hosts[{i}].label`: {:?} has no [backends.ssh.hosts.{}] section",
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
            td_measurements: self.hosts.iter().fold(Vec::new(), |mut v, h| {
                if let Some(m) = h.mrtd_bytes()
                    && !v.iter().any(|(r, _)| *r == h.region)
                {
                    v.push((h.region.clone(), hex::encode(m)));
                }
                v
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = r#"{"label": "a", "region": "r1", "cpu_millicores": 1000, "ram_mib": 512, "public_host": "h"}"#;
    /// A TD runtime: the vm runtime with TDX firmware.
    const TD: &str = r#""runtime": "vm", "vm": {"kernel": "/g/vmlinuz", "initrd": "/g/initrd.img", "accel": "kvm", "firmware": "/usr/share/ovmf/OVMF.fd"}"#;
    const MRTD: &str = r#""mrtd": "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000abc""#;

    /// The error `host`'s extra keys give, as the second host.
    fn refusal(extra: &str) -> String {
        let h = HOST
            .replace(r#""a""#, r#""b""#)
            .replace(r#""h""#, &format!(r#""h", {extra}"#));
        cfg(&[HOST, &h]).unwrap_err().message().to_string()
    }

    #[test]
    fn tdx_capable_without_a_td_runtime_is_refused_at_its_key() {
        for runtime in ["process", "podman"] {
            let m = refusal(&format!(
                r#""tdx_capable": true, {MRTD}, "runtime": "{runtime}""#
            ));
            assert!(
                m.starts_with("`hosts[1].tdx_capable`: a TDX-capable host needs a TD runtime"),
                "{m}"
            );
        }
        // The vm runtime without TDX firmware runs plain VMs, not TDs.
        let plain_vm = TD.replace(r#", "firmware": "/usr/share/ovmf/OVMF.fd""#, "");
        let m = refusal(&format!(r#""tdx_capable": true, {MRTD}, {plain_vm}"#));
        assert!(m.starts_with("`hosts[1].tdx_capable`: "), "{m}");
        // With TDX firmware it is a TD runtime: accepted, and offered.
        let td = HOST.replace(
            r#""h""#,
            &format!(r#""h", "tdx_capable": true, {MRTD}, {TD}"#),
        );
        let c = cfg(&[&td]).unwrap();
        assert!(c.hosts[0].has_td_runtime() && c.offer().tdx_capable);
        let mut want = [0u8; 48];
        want[46..].copy_from_slice(&[0x0a, 0xbc]);
        assert_eq!(c.hosts[0].mrtd_bytes(), Some(want));
    }

    #[test]
    fn the_offer_carries_one_lowercase_mrtd_per_td_region() {
        let td = |label: &str, region: &str, mrtd: &str| {
            HOST.replace(r#""a""#, &format!("{label:?}"))
                .replace(r#""r1""#, &format!("{region:?}"))
                .replace(
                    r#""h""#,
                    &format!(r#""h", "tdx_capable": true, "mrtd": "{mrtd}", {TD}"#),
                )
        };
        let (m1, m2) = ("AB".repeat(48), "cd".repeat(48));
        let plain = HOST.replace(r#""a""#, r#""p""#).replace("r1", "r3");
        let c = cfg(&[
            &td("a", "r1", &m1),
            &plain,
            &td("b", "r1", &m1.to_lowercase()),
            &td("c", "r2", &m2),
        ])
        .unwrap();
        assert_eq!(
            c.offer().td_measurements,
            [("r1".into(), "ab".repeat(48)), ("r2".into(), m2.clone())]
        );
        assert!(cfg(&[&plain]).unwrap().offer().td_measurements.is_empty());
        let m = cfg(&[&td("a", "r1", &m1), &td("b", "r1", &m2)])
            .unwrap_err()
            .message()
            .to_string();
        assert!(
            m.starts_with("`hosts[1].mrtd`: differs from the MR_TD of host \"a\""),
            "{m}"
        );
    }

    #[test]
    fn the_vm_table_is_checked() {
        let m = refusal(r#""runtime": "vm""#);
        assert!(m.starts_with("`hosts[1].runtime`: \"vm\" needs"), "{m}");
        let m = refusal(&TD.replace(r#""runtime": "vm""#, r#""runtime": "podman""#));
        assert!(m.starts_with("`hosts[1].vm`: "), "{m}");
        let m = refusal(&TD.replace("kvm", "tcg"));
        assert!(m.starts_with("`hosts[1].vm.accel`: "), "{m}");
        let m = refusal(&TD.replace("/g/initrd.img", "/g/x,file=/etc/shadow"));
        assert!(m.starts_with("`hosts[1].vm.initrd`: "), "{m}");
        let m = refusal(&TD.replace(r#""accel""#, r#""bind_address": "here", "accel""#));
        assert!(m.starts_with("`hosts[1].vm.bind_address`: "), "{m}");
        let m = refusal(&format!(r#"{TD}, "limits": "prlimit""#));
        assert!(m.starts_with("`hosts[1].limits`: "), "{m}");
    }

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
        let tdx = HOST.replace(r#""h""#, &format!(r#""h", "tdx_capable": true, {TD}"#));
        let e = cfg(&[&tdx]).unwrap_err();
        assert!(e.message().starts_with("`hosts[0].mrtd`: "), "{e:?}");
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
        assert!(
            !c.offer().tdx_capable,
            "no host of the example runs TD guests"
        );
    }

    #[test]
    fn a_label_without_an_ssh_section_is_a_config_error() {
        let c = cfg(&[HOST]).unwrap();
        assert!(c.check_labels(&["a".into()]).is_ok());
        let e = c.check_labels(&["b".into()]).unwrap_err();
        assert!(format!("{e:?}").contains("[backends.ssh.hosts.a]"), "{e:?}");
    }
}
