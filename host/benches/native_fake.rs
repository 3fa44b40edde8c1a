//! The fake backend's core (`cb_fake::Fake`) behind the host's `Backend`
//! trait as plain native code: the baseline the sandbox is measured against.
//! Same logic, same config, same JSON handle; only the sandbox is missing.
//! The one `sdk → contract` mapping of the benches lives here.

use std::sync::LazyLock;

use cb_fake::sdk::{self, MemoryHost};
use compute_bridge_contract::backend::{
    Backend, BackendError, GrantSpec, Instance, InstanceState, Offer, TdxRequirement, Usage,
    Workload,
};

/// The host the native fakes ask the time: the system clock.
static HOST: LazyLock<MemoryHost> = LazyLock::new(MemoryHost::with_system_clock);

pub struct NativeFake {
    name: String,
    fake: cb_fake::Fake<'static, MemoryHost>,
}

impl NativeFake {
    pub fn new(name: &str, config_json: &str) -> Self {
        let cfg = serde_json::from_str(config_json).expect("fake config");
        Self {
            name: name.into(),
            fake: cb_fake::Fake::new(cfg, &HOST),
        }
    }
}

fn err(e: sdk::BackendError) -> BackendError {
    match e {
        sdk::BackendError::NoCapacity(m) => BackendError::NoCapacity(m),
        sdk::BackendError::Transient(m) => BackendError::Transient(m),
        sdk::BackendError::Rejected(m) => BackendError::Rejected(m),
        sdk::BackendError::Config(m) => BackendError::Config(m),
        sdk::BackendError::Internal(m) => BackendError::Internal(m),
    }
}

fn grant(g: &GrantSpec) -> sdk::GrantSpec {
    sdk::GrantSpec {
        request_id: g.request_id.clone(),
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.clone(),
        tdx: match g.tdx {
            TdxRequirement::None => sdk::TdxRequirement::None,
            TdxRequirement::Preferred => sdk::TdxRequirement::Preferred,
            TdxRequirement::Required => sdk::TdxRequirement::Required,
        },
        image: g.image.clone(),
        valid_to: g.valid_to,
    }
}

/// The host's instance as the SDK's (a native core's argument).
pub fn instance(i: &Instance) -> sdk::Instance {
    sdk::Instance {
        instance_id: i.instance_id.clone(),
        region: i.region.clone(),
        public_host: i.public_host.clone(),
        ssh_port: i.ssh_port,
        user: i.user.clone(),
        host_key: i.host_key.clone(),
        handle: i.handle.clone(),
    }
}

#[async_trait::async_trait]
impl Backend for NativeFake {
    fn name(&self) -> &str {
        &self.name
    }
    async fn capabilities(&self) -> Result<Offer, BackendError> {
        let o = self.fake.offer();
        Ok(Offer {
            regions: o.regions,
            tdx_capable: o.tdx_capable,
            max_cpu_millicores: o.max_cpu_millicores,
            max_ram_mib: o.max_ram_mib,
            td_measurements: vec![],
        })
    }
    async fn can_satisfy(&self, g: &GrantSpec) -> bool {
        self.fake.can_satisfy(&grant(g))
    }
    async fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance, BackendError> {
        let w = sdk::Workload {
            ssh_user: w.ssh_user.clone(),
            ssh_public_key: w.ssh_public_key.clone(),
        };
        let i = self.fake.provision(&grant(g), &w).map_err(err)?;
        Ok(Instance {
            instance_id: i.instance_id,
            region: i.region,
            public_host: i.public_host,
            ssh_port: i.ssh_port,
            user: i.user,
            host_key: i.host_key,
            handle: i.handle,
        })
    }
    async fn status(&self, i: &Instance) -> Result<InstanceState, BackendError> {
        Ok(match self.fake.status(&instance(i)).map_err(err)? {
            sdk::InstanceState::Starting => InstanceState::Starting,
            sdk::InstanceState::Running => InstanceState::Running,
            sdk::InstanceState::Exited(c) => InstanceState::Exited(c),
            sdk::InstanceState::Gone => InstanceState::Gone,
        })
    }
    async fn usage(&self, i: &Instance) -> Result<Usage, BackendError> {
        let u = self.fake.usage(&instance(i)).map_err(err)?;
        Ok(Usage {
            cpu_core_seconds: u.cpu_core_seconds,
            ram_mib_seconds: u.ram_mib_seconds,
            net_bytes: u.net_bytes,
        })
    }
    async fn terminate(&self, i: &Instance) -> Result<(), BackendError> {
        self.fake.terminate(&instance(i)).map_err(err)
    }
    async fn list_instances(&self) -> Result<Vec<Instance>, BackendError> {
        Ok(Vec::new())
    }
}
