//! A configurable fake backend for the host's tests and benchmarks.
//!
//! It touches nothing outside itself: provisioning mints an instance whose
//! life is computed from the time in its handle, so `status` and `usage` are
//! pure functions of the handle and the clock. The logic lives in [`Fake`]
//! so the host's benchmarks can run the very same code natively beside the
//! sandboxed component.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
mod component;

/// The `[backends.config]` table of a fake backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    /// Regions it claims.
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
    /// Whether it claims TDX.
    #[serde(default)]
    pub tdx_capable: bool,
    /// Declared CPU capacity.
    #[serde(default = "default_cpu")]
    pub max_cpu_millicores: u32,
    /// Declared memory capacity.
    #[serde(default = "default_ram")]
    pub max_ram_mib: u32,
    /// Largest grant `can-satisfy` accepts (defaults to the capacity).
    #[serde(default)]
    pub max_grant_cpu_millicores: Option<u32>,
    /// Seconds a workload reports `starting`.
    #[serde(default)]
    pub starting_seconds: u64,
    /// Seconds after provisioning at which the workload exits by itself.
    #[serde(default = "default_run")]
    pub run_seconds: u64,
    /// Exit code it reports.
    #[serde(default)]
    pub exit_code: i32,
    /// Every provision fails with this error kind (`no-capacity`,
    /// `transient`, `rejected`, `config`, `internal`).
    #[serde(default)]
    pub provision_error: Option<String>,
    /// Regions where every provision fails with `no-capacity` (the region
    /// is the grant's, or the first in `regions` for a grant without one).
    #[serde(default)]
    pub full_regions: Vec<String>,
    /// Percentage of provisions (chosen by a hash of the request id) that
    /// fail with `transient`.
    #[serde(default)]
    pub fail_percent: u32,
    /// Host the access bundle points at.
    #[serde(default = "default_host")]
    pub host: String,
    /// SSH port the access bundle points at.
    #[serde(default = "default_port")]
    pub ssh_port: u16,
    /// Login user; defaults to the workload's suggested user.
    #[serde(default)]
    pub user: Option<String>,
    /// The host key the access bundle names (`""`: none, as a cloud
    /// backend that cannot know it before boot); by default a fixed
    /// ed25519 key no real host has, so a requester's ssh refuses the
    /// fake's host rather than trusting it.
    #[serde(default = "default_host_key")]
    pub host_key: String,
}

fn default_regions() -> Vec<String> {
    vec!["fake-1".into()]
}
fn default_cpu() -> u32 {
    64_000
}
fn default_ram() -> u32 {
    262_144
}
fn default_run() -> u64 {
    3600
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    22
}
/// The fake's host key (its private half was thrown away).
pub const FAKE_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";
fn default_host_key() -> String {
    FAKE_HOST_KEY.into()
}

impl Default for FakeConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// The parts of a grant the fake looks at.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// CPU.
    pub cpu_millicores: u32,
    /// RAM.
    pub ram_mib: u32,
    /// Region asked for.
    pub region: Option<&'a str>,
    /// TDX required.
    pub tdx_required: bool,
}

/// What the fake keeps in `instance.handle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handle {
    /// Unix seconds at provisioning.
    pub started: u64,
    /// CPU allocated.
    pub cpu: u32,
    /// RAM allocated.
    pub ram: u32,
}

/// A provisioned fake instance.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Instance id.
    pub instance_id: String,
    /// Region.
    pub region: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Serialized [`Handle`].
    pub handle: String,
}

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited with a code.
    Exited(i32),
}

/// Error kinds, mirroring the WIT's `backend-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// no-capacity
    NoCapacity(String),
    /// transient
    Transient(String),
    /// rejected
    Rejected(String),
    /// config
    Config(String),
    /// internal
    Internal(String),
}

/// The fake's behaviour for one configuration.
pub struct Fake {
    /// Its configuration.
    pub cfg: FakeConfig,
}

impl Fake {
    /// `can-satisfy`: region, TDX and size.
    pub fn can_satisfy(&self, g: &Grant<'_>) -> bool {
        if g.tdx_required && !self.cfg.tdx_capable {
            return false;
        }
        if let Some(r) = g.region
            && !self.cfg.regions.iter().any(|x| x == r)
        {
            return false;
        }
        let max_cpu = self
            .cfg
            .max_grant_cpu_millicores
            .unwrap_or(self.cfg.max_cpu_millicores);
        g.cpu_millicores <= max_cpu && g.ram_mib <= self.cfg.max_ram_mib
    }

    /// `provision` at time `now`.
    pub fn provision(&self, g: &Grant<'_>, user: &str, now: u64) -> Result<Provisioned, Error> {
        if let Some(kind) = &self.cfg.provision_error {
            let msg = format!("fake configured to fail with {kind}");
            return Err(match kind.as_str() {
                "no-capacity" => Error::NoCapacity(msg),
                "transient" => Error::Transient(msg),
                "rejected" => Error::Rejected(msg),
                "config" => Error::Config(msg),
                _ => Error::Internal(msg),
            });
        }
        let region = g
            .region
            .map(str::to_string)
            .or_else(|| self.cfg.regions.first().cloned())
            .unwrap_or_default();
        if self.cfg.full_regions.contains(&region) {
            return Err(Error::NoCapacity(format!(
                "fake configured with no capacity in {region}"
            )));
        }
        if self.cfg.fail_percent > 0 && fnv1a(g.request_id) % 100 < u64::from(self.cfg.fail_percent)
        {
            return Err(Error::Transient("fake random failure".into()));
        }
        let handle = Handle {
            started: now,
            cpu: g.cpu_millicores,
            ram: g.ram_mib,
        };
        Ok(Provisioned {
            instance_id: format!("fake-{}", g.request_id),
            region,
            host: self.cfg.host.clone(),
            port: self.cfg.ssh_port,
            user: self.cfg.user.clone().unwrap_or_else(|| user.to_string()),
            handle: serde_json::to_string(&handle).expect("handle serializes"),
        })
    }

    /// `status` at time `now`.
    pub fn status(&self, handle: &str, now: u64) -> Result<State, Error> {
        let h = parse_handle(handle)?;
        let age = now.saturating_sub(h.started);
        Ok(if age < self.cfg.starting_seconds {
            State::Starting
        } else if age < self.cfg.run_seconds {
            State::Running
        } else {
            State::Exited(self.cfg.exit_code)
        })
    }

    /// `usage` at time `now`: allocation × time alive.
    pub fn usage(&self, handle: &str, now: u64) -> Result<(u64, u64, u64), Error> {
        let h = parse_handle(handle)?;
        let alive = now.saturating_sub(h.started).min(self.cfg.run_seconds);
        Ok((
            u64::from(h.cpu) * alive / 1000,
            u64::from(h.ram) * alive,
            alive * 1000,
        ))
    }
}

fn parse_handle(handle: &str) -> Result<Handle, Error> {
    serde_json::from_str(handle).map_err(|e| Error::Rejected(format!("not a fake handle: {e}")))
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str) -> Grant<'_> {
        Grant {
            request_id: id,
            cpu_millicores: 2000,
            ram_mib: 1024,
            region: None,
            tdx_required: false,
        }
    }

    #[test]
    fn lifecycle_follows_the_clock() {
        let f = Fake {
            cfg: serde_json::from_str(
                r#"{"starting_seconds": 2, "run_seconds": 10, "exit_code": 3}"#,
            )
            .unwrap(),
        };
        let p = f.provision(&grant("a"), "u", 100).unwrap();
        assert_eq!(f.status(&p.handle, 101).unwrap(), State::Starting);
        assert_eq!(f.status(&p.handle, 105).unwrap(), State::Running);
        assert_eq!(f.status(&p.handle, 200).unwrap(), State::Exited(3));
        assert_eq!(f.usage(&p.handle, 200).unwrap(), (20, 10240, 10_000));
    }

    #[test]
    fn fail_percent_is_deterministic_and_roughly_right() {
        let f = Fake {
            cfg: serde_json::from_str(r#"{"fail_percent": 30}"#).unwrap(),
        };
        let failed = (0..1000)
            .filter(|i| f.provision(&grant(&format!("r{i}")), "u", 0).is_err())
            .count();
        assert!((200..400).contains(&failed), "{failed}");
    }
}
