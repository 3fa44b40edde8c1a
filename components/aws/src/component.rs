//! The wasm glue: the host's capabilities as an [`Env`], WIT types in and
//! out of [`Aws`].

use compute_bridge_sdk::http::{self as sdk_http, HttpError};
use compute_bridge_sdk::log::Level as SdkLevel;
use compute_bridge_sdk::prelude::*;

use crate::backend::{self, Aws, Env, Level};
use crate::config::AwsConfig;
use crate::ec2::{HttpRequest, HttpResponse};
use crate::error::Error;

struct AwsBackend;

/// The host's `http`, clock and `log`.
struct HostEnv;

impl Env for HostEnv {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let mut r = sdk_http::Request::post(req.url.clone()).body(req.body.clone());
        for (k, v) in &req.headers {
            r = r.header(k.clone(), v.clone());
        }
        match r.send() {
            Ok(resp) => Ok(HttpResponse {
                status: resp.status,
                body: resp.body,
            }),
            Err(e) => {
                let msg = format!("{}: {}", req.url, sdk_http::describe(&e));
                Err(match e {
                    HttpError::Denied(_) => Error::Config(format!(
                        "{msg}; list the EC2 endpoint in this backend's http.allowed_hosts"
                    )),
                    HttpError::Timeout | HttpError::Transport(_) => Error::Transient(msg),
                    HttpError::InvalidRequest(_) | HttpError::TooLarge(_) => Error::Internal(msg),
                })
            }
        }
    }

    fn now(&self) -> u64 {
        compute_bridge_sdk::now_unix()
    }

    fn sleep(&self, secs: u64) {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Debug => SdkLevel::Debug,
            Level::Info => SdkLevel::Info,
            Level::Warn => SdkLevel::Warn,
        };
        log::with_fields(level, message, fields);
    }
}

static ENV: HostEnv = HostEnv;

fn aws() -> Result<Aws<'static, HostEnv>> {
    let json = config::get(config::CONFIG_JSON).unwrap_or_else(|| "{}".into());
    let cfg = AwsConfig::from_json(&json).map_err(err)?;
    Aws::new(cfg, config::provider_id(), &ENV).map_err(err)
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

fn grant(g: &GrantSpec) -> backend::Grant<'_> {
    backend::Grant {
        request_id: &g.request_id,
        cpu_millicores: g.cpu_millicores,
        ram_mib: g.ram_mib,
        region: g.region.as_deref(),
        tdx_required: g.tdx == TdxRequirement::Required,
        image: &g.image,
        valid_to: g.valid_to,
    }
}

fn instance(l: backend::Launched) -> Instance {
    Instance {
        instance_id: l.instance_id,
        region: l.region,
        public_host: l.public_host,
        ssh_port: l.ssh_port,
        user: l.user,
        host_key: String::new(),
        handle: l.handle,
    }
}

impl Backend for AwsBackend {
    fn capabilities() -> Result<Offer> {
        let o = aws()?.offer();
        Ok(Offer {
            regions: o.regions,
            tdx_capable: false,
            max_cpu_millicores: o.max_cpu_millicores,
            max_ram_mib: o.max_ram_mib,
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        aws().map(|a| a.can_satisfy(&grant(g))).unwrap_or(false)
    }

    fn provision(g: GrantSpec, workload: Workload) -> Result<Instance> {
        aws()?
            .provision(&grant(&g), &workload.ssh_user, &workload.ssh_public_key)
            .map(instance)
            .map_err(err)
    }

    fn status(i: Instance) -> Result<InstanceState> {
        Ok(
            match aws()?.status(&i.instance_id, &i.handle).map_err(err)? {
                backend::State::Starting => InstanceState::Starting,
                backend::State::Running => InstanceState::Running,
                backend::State::Exited(c) => InstanceState::Exited(c),
                backend::State::Gone => InstanceState::Gone,
            },
        )
    }

    fn usage(i: Instance) -> Result<ResourceUsage> {
        let u = aws()?.usage(&i.instance_id, &i.handle).map_err(err)?;
        Ok(ResourceUsage {
            cpu_core_seconds: u.cpu_core_seconds,
            ram_mib_seconds: u.ram_mib_seconds,
            net_bytes: u.net_bytes,
        })
    }

    fn terminate(i: Instance) -> Result<()> {
        aws()?.terminate(&i.instance_id, &i.handle).map_err(err)
    }

    fn list_instances() -> Result<Vec<Instance>> {
        Ok(aws()?
            .list_instances()
            .map_err(err)?
            .into_iter()
            .map(instance)
            .collect())
    }
}

compute_bridge_sdk::export_backend!(AwsBackend);
