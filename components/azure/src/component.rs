//! The wasm glue: the configuration from the host, [`Azure`] over the
//! host's capabilities.

use compute_bridge_sdk::WasmHost;
use compute_bridge_sdk::prelude::*;

use crate::{Azure, AzureConfig};

struct AzureBackend;

fn azure() -> Result<Azure<'static, WasmHost>> {
    let cfg: AzureConfig = config::load()?;
    Azure::new(
        cfg,
        config::provider_id(),
        config::backend_name(),
        &WasmHost,
    )
}

impl Backend for AzureBackend {
    fn capabilities() -> Result<Offer> {
        Ok(azure()?.offer())
    }
    fn can_satisfy(g: &GrantSpec) -> bool {
        azure().is_ok_and(|c| c.can_satisfy(g))
    }
    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        azure()?.provision(&g, &w)
    }
    fn status(i: Instance) -> Result<InstanceState> {
        azure()?.status(&i)
    }
    fn usage(i: Instance) -> Result<ResourceUsage> {
        azure()?.usage(&i)
    }
    fn terminate(i: Instance) -> Result<()> {
        azure()?.terminate(&i)
    }
    fn list_instances() -> Result<Vec<Instance>> {
        azure()?.list_instances()
    }
}

compute_bridge_sdk::export_backend!(AzureBackend);
