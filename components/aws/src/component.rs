//! The wasm glue: the configuration from the host, [`Aws`] over the host's
//! capabilities.

use compute_bridge_sdk::WasmHost;
use compute_bridge_sdk::prelude::*;

use crate::{Aws, AwsConfig};

struct AwsBackend;

fn aws() -> Result<Aws<'static, WasmHost>> {
    let json = config::get(config::CONFIG_JSON).unwrap_or_else(|| "{}".into());
    Aws::new(
        AwsConfig::from_json(&json)?,
        config::provider_id(),
        &WasmHost,
    )
}

impl Backend for AwsBackend {
    fn capabilities() -> Result<Offer> {
        Ok(aws()?.offer())
    }
    fn can_satisfy(g: &GrantSpec) -> bool {
        aws().is_ok_and(|a| a.can_satisfy(g))
    }
    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        aws()?.provision(&g, &w)
    }
    fn status(i: Instance) -> Result<InstanceState> {
        aws()?.status(&i)
    }
    fn usage(i: Instance) -> Result<ResourceUsage> {
        aws()?.usage(&i)
    }
    fn terminate(i: Instance) -> Result<()> {
        aws()?.terminate(&i)
    }
    fn list_instances() -> Result<Vec<Instance>> {
        aws()?.list_instances()
    }
}

compute_bridge_sdk::export_backend!(AwsBackend);
