//! What a cloud VM was allocated, and its usage as allocation × time: the
//! clouds bill a VM's size for every second it exists, and none reports
//! what the workload inside used. A backend's instance handle carries an
//! [`Allocation`] (flattened, so its fields sit beside the cloud's own in
//! the handle's JSON). Keeps nothing.

use compute_bridge_sdk::ResourceUsage;
use serde::{Deserialize, Serialize};

/// A VM's size and when it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Its vCPUs (0 when the size is not in the operator's catalog).
    pub cpus: u32,
    /// Its memory, MiB (0 likewise).
    pub ram_mib: u32,
    /// Unix seconds it was created.
    pub started: u64,
}

impl Allocation {
    /// Usage as allocated × time: the vCPUs and memory for every second
    /// from creation to `end` (none if `end` is before it); no network
    /// figure.
    pub fn usage(&self, end: u64) -> ResourceUsage {
        let secs = end.saturating_sub(self.started);
        ResourceUsage {
            cpu_core_seconds: u64::from(self.cpus) * secs,
            ram_mib_seconds: u64::from(self.ram_mib) * secs,
            net_bytes: 0,
        }
    }
}

/// What the backends' handle tests share (the feature `testing`, which
/// only their dev-dependencies turn on).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::Allocation;

    /// An allocation for a handle under test: 4 vCPUs, 16 GiB, created at
    /// Unix second 100.
    pub const ALLOCATION: Allocation = Allocation {
        cpus: 4,
        ram_mib: 16384,
        started: 100,
    };

    /// Assert that `json`, a handle as a backend encodes it, carries
    /// [`ALLOCATION`] flattened as its last fields (`…,"cpus":4,
    /// "ram_mib":16384,"started":100}`), where the handle kept them before
    /// they were shared: handles written then still parse.
    pub fn assert_allocation_flattened_last(json: &str) {
        let tail = format!(
            r#","cpus":{},"ram_mib":{},"started":{}}}"#,
            ALLOCATION.cpus, ALLOCATION.ram_mib, ALLOCATION.started
        );
        assert!(json.ends_with(&tail), "{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_allocation_times_time_and_never_negative() {
        let a = Allocation {
            cpus: 4,
            ram_mib: 16384,
            started: 1000,
        };
        let u = a.usage(1600);
        assert_eq!(
            (u.cpu_core_seconds, u.ram_mib_seconds, u.net_bytes),
            (2400, 16384 * 600, 0)
        );
        assert_eq!(a.usage(10).cpu_core_seconds, 0);
    }
}
