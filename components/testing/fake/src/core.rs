//! The fake's behaviour over a [`Host`]: SDK types in and out,
//! [`BackendError`] its only error. The host is only asked the time.

use compute_bridge_sdk::{
    BackendError, GrantSpec, Host, Instance, InstanceState, Offer, ResourceUsage, Result,
    TdxRequirement, Workload,
};
use serde::{Deserialize, Serialize};

use crate::FakeConfig;

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

/// The fake for one configuration, over a host.
pub struct Fake<'h, H: Host> {
    cfg: FakeConfig,
    host: &'h H,
}

impl<'h, H: Host> Fake<'h, H> {
    /// The fake configured by `cfg`, asking `host` the time.
    pub fn new(cfg: FakeConfig, host: &'h H) -> Self {
        Self { cfg, host }
    }

    /// Its configuration.
    pub fn config(&self) -> &FakeConfig {
        &self.cfg
    }

    /// `capabilities`: what the configuration claims.
    pub fn offer(&self) -> Offer {
        Offer {
            regions: self.cfg.regions.clone(),
            tdx_capable: self.cfg.tdx_capable,
            max_cpu_millicores: self.cfg.max_cpu_millicores,
            max_ram_mib: self.cfg.max_ram_mib,
            td_measurements: vec![],
        }
    }

    /// `can-satisfy`: region, TDX and size.
    pub fn can_satisfy(&self, g: &GrantSpec) -> bool {
        if g.tdx == TdxRequirement::Required && !self.cfg.tdx_capable {
            return false;
        }
        if let Some(r) = &g.region
            && !self.cfg.regions.contains(r)
        {
            return false;
        }
        let max_cpu = self
            .cfg
            .max_grant_cpu_millicores
            .unwrap_or(self.cfg.max_cpu_millicores);
        g.cpu_millicores <= max_cpu && g.ram_mib <= self.cfg.max_ram_mib
    }

    /// `provision` now: fails as configured, else mints an instance.
    pub fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance> {
        if let Some(kind) = &self.cfg.provision_error {
            let msg = format!("fake configured to fail with {kind}");
            return Err(match kind.as_str() {
                "no-capacity" => BackendError::NoCapacity(msg),
                "transient" => BackendError::Transient(msg),
                "rejected" => BackendError::Rejected(msg),
                "config" => BackendError::Config(msg),
                _ => BackendError::Internal(msg),
            });
        }
        let region = g
            .region
            .clone()
            .or_else(|| self.cfg.regions.first().cloned())
            .unwrap_or_default();
        if self.cfg.full_regions.contains(&region) {
            return Err(BackendError::NoCapacity(format!(
                "fake configured with no capacity in {region}"
            )));
        }
        if self.cfg.fail_percent > 0
            && fnv1a(&g.request_id) % 100 < u64::from(self.cfg.fail_percent)
        {
            return Err(BackendError::Transient("fake random failure".into()));
        }
        let handle = Handle {
            started: self.host.now(),
            cpu: g.cpu_millicores,
            ram: g.ram_mib,
        };
        Ok(Instance {
            instance_id: format!("fake-{}", g.request_id),
            region,
            public_host: self.cfg.host.clone(),
            ssh_port: self.cfg.ssh_port,
            user: self.cfg.user.clone().unwrap_or_else(|| w.ssh_user.clone()),
            host_key: self.cfg.host_key.clone(),
            handle: serde_json::to_string(&handle).expect("handle serializes"),
        })
    }

    /// `status` now: starting, then running, then exited, by age.
    pub fn status(&self, i: &Instance) -> Result<InstanceState> {
        let h = parse_handle(&i.handle)?;
        let age = self.host.now().saturating_sub(h.started);
        Ok(if age < self.cfg.starting_seconds {
            InstanceState::Starting
        } else if age < self.cfg.run_seconds {
            InstanceState::Running
        } else {
            InstanceState::Exited(self.cfg.exit_code)
        })
    }

    /// `usage` now: allocation × time alive.
    pub fn usage(&self, i: &Instance) -> Result<ResourceUsage> {
        let h = parse_handle(&i.handle)?;
        let alive = self
            .host
            .now()
            .saturating_sub(h.started)
            .min(self.cfg.run_seconds);
        Ok(ResourceUsage {
            cpu_core_seconds: u64::from(h.cpu) * alive / 1000,
            ram_mib_seconds: u64::from(h.ram) * alive,
            net_bytes: alive * 1000,
        })
    }

    /// `terminate`: nothing to remove.
    pub fn terminate(&self, _i: &Instance) -> Result<()> {
        Ok(())
    }

    /// `list-instances`: the fake keeps none.
    pub fn list_instances(&self) -> Result<Vec<Instance>> {
        Ok(Vec::new())
    }
}

fn parse_handle(handle: &str) -> Result<Handle> {
    serde_json::from_str(handle)
        .map_err(|e| BackendError::Rejected(format!("not a fake handle: {e}")))
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_sdk::MemoryHost;

    fn grant(id: &str) -> GrantSpec {
        GrantSpec {
            request_id: id.into(),
            cpu_millicores: 2000,
            ram_mib: 1024,
            region: None,
            tdx: TdxRequirement::None,
            image: String::new(),
            valid_to: 0,
        }
    }

    fn workload() -> Workload {
        Workload {
            ssh_user: "u".into(),
            ssh_public_key: String::new(),
        }
    }

    fn config(json: &str) -> FakeConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lifecycle_follows_the_clock() {
        let host = MemoryHost::at(100);
        let f = Fake::new(
            config(r#"{"starting_seconds": 2, "run_seconds": 10, "exit_code": 3}"#),
            &host,
        );
        let i = f.provision(&grant("a"), &workload()).unwrap();
        host.set_now(101);
        assert_eq!(f.status(&i).unwrap(), InstanceState::Starting);
        host.set_now(105);
        assert_eq!(f.status(&i).unwrap(), InstanceState::Running);
        host.set_now(200);
        assert_eq!(f.status(&i).unwrap(), InstanceState::Exited(3));
        assert_eq!(
            f.usage(&i).unwrap(),
            ResourceUsage {
                cpu_core_seconds: 20,
                ram_mib_seconds: 10240,
                net_bytes: 10_000
            }
        );
    }

    #[test]
    fn fail_percent_is_deterministic_and_roughly_right() {
        let host = MemoryHost::at(0);
        let f = Fake::new(config(r#"{"fail_percent": 30}"#), &host);
        let failed = (0..1000)
            .filter(|i| f.provision(&grant(&format!("r{i}")), &workload()).is_err())
            .count();
        assert!((200..400).contains(&failed), "{failed}");
    }
}
