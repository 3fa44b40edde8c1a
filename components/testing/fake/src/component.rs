//! The wasm glue: WIT types in, [`Fake`] logic, WIT types out.

use crate::{Error, Fake, Grant, State};
use compute_bridge_sdk::prelude::*;

struct FakeBackend;

fn fake() -> Result<Fake> {
    Ok(Fake {
        cfg: config::load()?,
    })
}

fn grant(g: &GrantSpec) -> Grant<'_> {
    Grant {
        request_id: &g.request_id,
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.as_deref(),
        tdx_required: g.tdx == TdxRequirement::Required,
    }
}

fn err(e: Error) -> BackendError {
    match e {
        Error::NoCapacity(m) => BackendError::NoCapacity(m),
        Error::Transient(m) => BackendError::Transient(m),
        Error::Rejected(m) => BackendError::Rejected(m),
        Error::Config(m) => BackendError::Config(m),
        Error::Internal(m) => BackendError::Internal(m),
    }
}

impl Backend for FakeBackend {
    fn capabilities() -> Result<Offer> {
        let f = fake()?;
        Ok(Offer {
            regions: f.cfg.regions,
            tdx_capable: f.cfg.tdx_capable,
            max_cpu_millicores: f.cfg.max_cpu_millicores,
            max_ram_mib: f.cfg.max_ram_mib,
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        fake().map(|f| f.can_satisfy(&grant(g))).unwrap_or(false)
    }

    fn provision(g: GrantSpec, workload: Workload) -> Result<Instance> {
        let f = fake()?;
        let p = f
            .provision(
                &grant(&g),
                &workload.ssh_user,
                compute_bridge_sdk::now_unix(),
            )
            .map_err(err)?;
        Ok(Instance {
            instance_id: p.instance_id,
            region: p.region,
            public_host: p.host,
            ssh_port: p.port,
            user: p.user,
            host_key: f.cfg.host_key,
            handle: p.handle,
        })
    }

    fn status(i: Instance) -> Result<InstanceState> {
        Ok(
            match fake()?
                .status(&i.handle, compute_bridge_sdk::now_unix())
                .map_err(err)?
            {
                State::Starting => InstanceState::Starting,
                State::Running => InstanceState::Running,
                State::Exited(c) => InstanceState::Exited(c),
            },
        )
    }

    fn usage(i: Instance) -> Result<ResourceUsage> {
        let (cpu, ram, net) = fake()?
            .usage(&i.handle, compute_bridge_sdk::now_unix())
            .map_err(err)?;
        Ok(ResourceUsage {
            cpu_core_seconds: cpu,
            ram_mib_seconds: ram,
            net_bytes: net,
        })
    }

    fn terminate(_i: Instance) -> Result<()> {
        Ok(())
    }
}

compute_bridge_sdk::export_backend!(FakeBackend);
