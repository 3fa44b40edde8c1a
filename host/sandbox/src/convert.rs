//! Conversions between the generated WIT types and the contract's. What a
//! component returns is checked on the way in (`compute_bridge_contract::
//! backend`'s bounds, applied in [`crate::call`]: the access a requester
//! will use, capacity ceilings); an error's text is escaped and cut to its
//! bound here. The generated types are used nowhere else in the host.
//! Keeps nothing.

use compute_bridge_contract::backend::{
    BackendError, GrantSpec, Instance, InstanceState, Offer, TdMeasurement, TdxRequirement, Usage,
};

use crate::bindings;
use crate::capabilities::log::escape;

impl From<bindings::types::Offer> for Offer {
    fn from(o: bindings::types::Offer) -> Self {
        Self {
            regions: o.regions,
            tdx_capable: o.tdx_capable,
            max_cpu_millicores: o.max_cpu_millicores,
            max_ram_mib: o.max_ram_mib,
            td_measurements: (o.td_measurements.into_iter())
                .map(|m| TdMeasurement {
                    region: m.region,
                    mrtd: m.mrtd,
                })
                .collect(),
        }
    }
}

impl From<&GrantSpec> for bindings::types::GrantSpec {
    fn from(g: &GrantSpec) -> Self {
        use TdxRequirement as T;
        Self {
            request_id: g.request_id.clone(),
            cpu_millicores: g.cpu_millicores,
            ram_mib: g.ram_mib,
            region: g.region.clone(),
            tdx: match g.tdx {
                T::None => bindings::types::TdxRequirement::None,
                T::Preferred => bindings::types::TdxRequirement::Preferred,
                T::Required => bindings::types::TdxRequirement::Required,
            },
            image: g.image.clone(),
            valid_to: g.valid_to,
        }
    }
}

impl From<bindings::types::Instance> for Instance {
    fn from(i: bindings::types::Instance) -> Self {
        Self {
            instance_id: i.instance_id,
            region: i.region,
            public_host: i.public_host,
            ssh_port: i.ssh_port,
            user: i.user,
            host_key: i.host_key,
            handle: i.handle,
        }
    }
}

impl From<&Instance> for bindings::types::Instance {
    fn from(i: &Instance) -> Self {
        Self {
            instance_id: i.instance_id.clone(),
            region: i.region.clone(),
            public_host: i.public_host.clone(),
            ssh_port: i.ssh_port,
            user: i.user.clone(),
            host_key: i.host_key.clone(),
            handle: i.handle.clone(),
        }
    }
}

impl From<bindings::types::InstanceState> for InstanceState {
    fn from(s: bindings::types::InstanceState) -> Self {
        match s {
            bindings::types::InstanceState::Starting => Self::Starting,
            bindings::types::InstanceState::Running => Self::Running,
            bindings::types::InstanceState::Exited(c) => Self::Exited(c),
            bindings::types::InstanceState::Gone => Self::Gone,
        }
    }
}

impl From<bindings::types::ResourceUsage> for Usage {
    fn from(u: bindings::types::ResourceUsage) -> Self {
        Self {
            cpu_core_seconds: u.cpu_core_seconds,
            ram_mib_seconds: u.ram_mib_seconds,
            net_bytes: u.net_bytes,
        }
    }
}

impl From<bindings::types::BackendError> for BackendError {
    fn from(e: bindings::types::BackendError) -> Self {
        use bindings::types::BackendError as W;
        match e {
            // The host logs these texts: escaped, each stays on one line.
            W::NoCapacity(m) => Self::NoCapacity(escape(&m).into_owned()),
            W::Transient(m) => Self::Transient(escape(&m).into_owned()),
            W::Rejected(m) => Self::Rejected(escape(&m).into_owned()),
            W::Config(m) => Self::Config(escape(&m).into_owned()),
            W::Internal(m) => Self::Internal(escape(&m).into_owned()),
        }
        .bounded()
    }
}
