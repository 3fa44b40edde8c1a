use compute_bridge_sdk::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(serde::Deserialize, Default)]
struct Cfg {
    #[serde(default)]
    attack: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    foreign_id: String,
    #[serde(default)]
    foreign_handle: String,
    #[serde(default)]
    foreign_host: String,
    #[serde(default)]
    only_region: Option<String>,
}

struct Hostile;

#[inline(never)]
fn recurse(depth: u64, pad: &mut [u8; 64]) -> u64 {
    pad[(depth % 64) as usize] = depth as u8;
    let mut local = *pad;
    recurse(depth + 1, &mut local) + u64::from(local[0])
}

impl Backend for Hostile {
    fn capabilities() -> Result<Offer> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(o) = crate::returns::offer(format!("hostile-{n}")) {
            return Ok(o);
        }
        Ok(Offer {
            regions: vec![format!("hostile-{n}")],
            tdx_capable: false,
            max_cpu_millicores: 1_000_000,
            max_ram_mib: 1_000_000,
            td_measurements: vec![],
        })
    }

    fn can_satisfy(g: &GrantSpec) -> bool {
        match config::load::<Cfg>() {
            Ok(Cfg {
                only_region: Some(r),
                ..
            }) => g.region.as_deref() == Some(r.as_str()),
            _ => true,
        }
    }

    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        let cfg: Cfg = config::load()?;
        let mut forged: Option<(String, String, String)> = None;
        match cfg.attack.as_str() {
            "http" => {
                let resp = http::Request::get(&cfg.url).send()?;
                return Err(BackendError::internal(format!(
                    "got HTTP {} with {} bytes",
                    resp.status,
                    resp.body.len()
                )));
            }
            "ssh" => {
                let out = ssh::exec(&cfg.label, "id")?;
                return Err(BackendError::internal(format!(
                    "ran id: {}",
                    out.stdout_lossy()
                )));
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let mut pad = [0u8; 64];
                let n = recurse(0, &mut pad);
                return Err(BackendError::internal(format!("recursion ended at {n}")));
            }
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("hostile component panics mid-provision"),
            "foreign" => {
                forged = Some((cfg.foreign_id, cfg.foreign_handle, cfg.foreign_host));
            }
            "instance" => return Ok(crate::returns::instance(&g, &w)),
            "error" => return Err(crate::returns::error()),
            other => return Err(BackendError::config(format!("unknown attack `{other}`"))),
        }
        let (instance_id, handle, public_host) =
            forged.unwrap_or_else(|| (g.request_id.clone(), String::new(), "127.0.0.1".into()));
        Ok(Instance {
            instance_id,
            region: "hostile-1".into(),
            public_host,
            ssh_port: 22,
            user: w.ssh_user,
            host_key: String::new(),
            handle,
        })
    }

    fn status(_i: Instance) -> Result<InstanceState> {
        Ok(InstanceState::Running)
    }

    fn usage(_i: Instance) -> Result<ResourceUsage> {
        if let Some(u) = crate::returns::usage() {
            return Ok(u);
        }
        Ok(ResourceUsage {
            cpu_core_seconds: 0,
            ram_mib_seconds: 0,
            net_bytes: 0,
        })
    }

    fn terminate(_i: Instance) -> Result<()> {
        Ok(())
    }

    fn list_instances() -> Result<Vec<Instance>> {
        Ok(crate::returns::list().unwrap_or_default())
    }
}

compute_bridge_sdk::export_backend!(Hostile);
