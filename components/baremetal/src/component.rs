//! The wasm glue: the SDK's `ssh`, `log` and `config` as a [`Host`], WIT
//! types in and out.

use crate::Error;
use crate::backend::{Baremetal, ExecError, Host, Level, Output, Provisioned, State};
use crate::config::Config;
use crate::grant::Grant;
use crate::script::COMMAND;
use compute_bridge_sdk::prelude::*;
use compute_bridge_sdk::ssh::SshError;

struct BaremetalBackend;

/// The bridge's side of the backend: the SDK's capabilities.
struct Bridge;

impl Host for Bridge {
    fn labels(&self) -> Vec<String> {
        ssh::hosts()
    }

    fn exec(&self, label: &str, script: &str) -> Result<Output, ExecError> {
        match ssh::exec_with_stdin(label, COMMAND, script.as_bytes()) {
            Ok(out) => Ok(Output {
                code: out.exit_code,
                stdout: out.stdout_lossy(),
                stderr: out.stderr_lossy(),
            }),
            Err(SshError::UnknownHost(_)) => Err(ExecError::UnknownHost),
            Err(SshError::HostKeyMismatch(_)) => Err(ExecError::HostKeyMismatch),
            Err(SshError::Unreachable(m)) => Err(ExecError::Unreachable(m)),
            Err(SshError::Auth(m)) => Err(ExecError::Auth(m)),
            Err(SshError::Timeout) => Err(ExecError::Timeout),
        }
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        log::with_fields(level, message, fields);
    }

    fn pause(&self, secs: u64) {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
}

fn backend() -> Result<Baremetal<'static, Bridge>> {
    let json = config::get(config::CONFIG_JSON).unwrap_or_else(|| "{}".into());
    let cfg = Config::from_json(&json).map_err(err)?;
    Ok(Baremetal::new(
        cfg,
        &config::provider_id(),
        &config::backend_name(),
        &Bridge,
    ))
}

fn grant(g: &GrantSpec) -> Grant<'_> {
    Grant {
        request_id: &g.request_id,
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.as_deref(),
        tdx_required: g.tdx == TdxRequirement::Required,
        image: &g.image,
        valid_to: g.valid_to,
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

fn instance(p: Provisioned) -> Instance {
    Instance {
        instance_id: p.instance_id,
        region: p.region,
        public_host: p.public_host,
        ssh_port: p.ssh_port,
        user: p.user,
        host_key: p.host_key,
        handle: p.handle,
    }
}

impl Backend for BaremetalBackend {
    fn capabilities() -> Result<Offer> {
        let b = backend()?;
        b.check().map_err(err)?;
        let o = b.config().offer();
        Ok(Offer {
            regions: o.regions,
            tdx_capable: o.tdx_capable,
            max_cpu_millicores: o.max_cpu_millicores,
            max_ram_mib: o.max_ram_mib,
            td_measurements: (o.td_measurements.into_iter())
                .map(|(region, mrtd)| TdMeasurement { region, mrtd })
                .collect(),
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        backend().is_ok_and(|b| b.can_satisfy(&grant(g)))
    }

    fn provision(g: GrantSpec, workload: Workload) -> Result<Instance> {
        backend()?
            .provision(&grant(&g), &workload.ssh_public_key)
            .map(instance)
            .map_err(err)
    }

    fn status(i: Instance) -> Result<InstanceState> {
        Ok(match backend()?.status(&i.handle).map_err(err)? {
            State::Starting => InstanceState::Starting,
            State::Running => InstanceState::Running,
            State::Exited(c) => InstanceState::Exited(c),
            State::Gone => InstanceState::Gone,
        })
    }

    fn usage(i: Instance) -> Result<ResourceUsage> {
        let u = backend()?.usage(&i.handle).map_err(err)?;
        Ok(ResourceUsage {
            cpu_core_seconds: u.cpu_core_seconds,
            ram_mib_seconds: u.ram_mib_seconds,
            net_bytes: u.net_bytes,
        })
    }

    fn terminate(i: Instance) -> Result<()> {
        backend()?.terminate(&i.handle).map_err(err)
    }

    fn list_instances() -> Result<Vec<Instance>> {
        Ok(backend()?
            .list()
            .map_err(err)?
            .into_iter()
            .map(instance)
            .collect())
    }
}

compute_bridge_sdk::export_backend!(BaremetalBackend);
