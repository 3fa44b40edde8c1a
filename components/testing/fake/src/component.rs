//! The wasm glue: the configuration from the host, [`Fake`] over the
//! host's capabilities.

use crate::Fake;
use compute_bridge_sdk::WasmHost;
use compute_bridge_sdk::prelude::*;

struct FakeBackend;

fn fake() -> Result<Fake<'static, WasmHost>> {
    Ok(Fake::new(config::load()?, &WasmHost))
}

impl Backend for FakeBackend {
    fn capabilities() -> Result<Offer> {
        Ok(fake()?.offer())
    }
    fn can_satisfy(g: &GrantSpec) -> bool {
        fake().is_ok_and(|f| f.can_satisfy(g))
    }
    fn provision(g: GrantSpec, w: Workload) -> Result<Instance> {
        fake()?.provision(&g, &w)
    }
    fn status(i: Instance) -> Result<InstanceState> {
        fake()?.status(&i)
    }
    fn usage(i: Instance) -> Result<ResourceUsage> {
        fake()?.usage(&i)
    }
    fn terminate(i: Instance) -> Result<()> {
        fake()?.terminate(&i)
    }
    fn list_instances() -> Result<Vec<Instance>> {
        fake()?.list_instances()
    }
}

compute_bridge_sdk::export_backend!(FakeBackend);
