//! The wasm glue: the configuration from the host, [`Gcp`] over the host's
//! capabilities.

use compute_bridge_sdk::WasmHost;
use compute_bridge_sdk::prelude::*;

use crate::{Gcp, GcpConfig};

struct GcpBackend;

fn gcp() -> Result<Gcp<'static, WasmHost>> {
    let cfg: GcpConfig = config::load()?;
    Gcp::new(
        cfg,
        config::provider_id(),
        config::backend_name(),
        &WasmHost,
    )
}

impl Backend for GcpBackend {
    fn capabilities() -> Result<Offer> {
        gcp()?.offer()
    }
    fn can_satisfy(g: &GrantSpec) -> bool {
        gcp().is_ok_and(|c| c.can_satisfy(g))
    }
    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        gcp()?.provision(&g, &w)
    }
    fn status(i: Instance) -> Result<InstanceState> {
        gcp()?.status(&i)
    }
    fn usage(i: Instance) -> Result<ResourceUsage> {
        gcp()?.usage(&i)
    }
    fn terminate(i: Instance) -> Result<()> {
        gcp()?.terminate(&i)
    }
    fn list_instances() -> Result<Vec<Instance>> {
        gcp()?.list_instances()
    }
}

compute_bridge_sdk::export_backend!(GcpBackend);
