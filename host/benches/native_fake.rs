//! The fake backend's logic (`cb_fake::Fake`) behind the host's `Backend`
//! trait as plain native code: the baseline the sandbox is measured against.
//! Same logic, same config, same JSON handle; only the sandbox is missing.

use compute_bridge::backend::{
    Backend, BackendError, Capabilities, GrantSpec, Instance, InstanceState, TdxRequirement, Usage,
    Workload,
};

pub struct NativeFake {
    name: String,
    fake: cb_fake::Fake,
}

impl NativeFake {
    pub fn new(name: &str, config_json: &str) -> Self {
        Self {
            name: name.into(),
            fake: cb_fake::Fake {
                cfg: serde_json::from_str(config_json).expect("fake config"),
            },
        }
    }
}

fn now() -> u64 {
    compute_bridge::fleet::now_unix()
}

fn err(e: cb_fake::Error) -> BackendError {
    match e {
        cb_fake::Error::NoCapacity(m) => BackendError::NoCapacity(m),
        cb_fake::Error::Transient(m) => BackendError::Transient(m),
        cb_fake::Error::Rejected(m) => BackendError::Rejected(m),
        cb_fake::Error::Config(m) => BackendError::Config(m),
        cb_fake::Error::Internal(m) => BackendError::Internal(m),
    }
}

fn grant(g: &GrantSpec) -> cb_fake::Grant<'_> {
    cb_fake::Grant {
        request_id: &g.request_id,
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.as_deref(),
        tdx_required: g.tdx == TdxRequirement::Required,
    }
}

#[async_trait::async_trait]
impl Backend for NativeFake {
    fn name(&self) -> &str {
        &self.name
    }
    async fn capabilities(&self) -> Result<Capabilities, BackendError> {
        let c = &self.fake.cfg;
        Ok(Capabilities {
            regions: c.regions.clone(),
            tdx_capable: c.tdx_capable,
            max_cpu_millicores: c.max_cpu_millicores,
            max_ram_mib: c.max_ram_mib,
        })
    }
    async fn can_satisfy(&self, g: &GrantSpec) -> bool {
        self.fake.can_satisfy(&grant(g))
    }
    async fn provision(&self, g: &GrantSpec, w: &Workload) -> Result<Instance, BackendError> {
        let p = self
            .fake
            .provision(&grant(g), &w.ssh_user, now())
            .map_err(err)?;
        Ok(Instance {
            instance_id: p.instance_id,
            region: p.region,
            public_host: p.host,
            ssh_port: p.port,
            user: p.user,
            host_key: String::new(),
            handle: p.handle,
        })
    }
    async fn status(&self, i: &Instance) -> Result<InstanceState, BackendError> {
        Ok(match self.fake.status(&i.handle, now()).map_err(err)? {
            cb_fake::State::Starting => InstanceState::Starting,
            cb_fake::State::Running => InstanceState::Running,
            cb_fake::State::Exited(c) => InstanceState::Exited(c),
        })
    }
    async fn usage(&self, i: &Instance) -> Result<Usage, BackendError> {
        let (cpu, ram, net) = self.fake.usage(&i.handle, now()).map_err(err)?;
        Ok(Usage {
            cpu_core_seconds: cpu,
            ram_mib_seconds: ram,
            net_bytes: net,
        })
    }
    async fn terminate(&self, _i: &Instance) -> Result<(), BackendError> {
        Ok(())
    }
    async fn list_instances(&self) -> Result<Vec<Instance>, BackendError> {
        Ok(Vec::new())
    }
}
