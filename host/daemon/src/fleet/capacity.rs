//! Capacity: the concurrency cap and each backend's declared room, taken
//! by a [`Reservation`] when a grant is placed (or adopted after a restart)
//! and given back when it drops. A reservation is how the rest of the fleet
//! finds the backend of a placed grant ([`Reservation::backend`]); it is
//! never looked up by name. Keeps no grant: only counts.

use std::sync::Arc;

use compute_bridge_contract::backend::GrantSpec;

use super::{Fleet, FleetState, Member, PlaceError};

/// Capacity and a concurrency slot held by one running grant; released on
/// drop.
pub struct Reservation {
    inner: Arc<FleetState>,
    member: usize,
    cpu: u64,
    ram: u64,
    /// Whether dropping it also frees a concurrency slot.
    holds_slot: bool,
}

impl Reservation {
    /// The backend holding it.
    pub fn backend(&self) -> &str {
        &self.member().name
    }

    /// The member it holds room on: the only way the fleet finds the
    /// backend of a placed grant.
    pub(super) fn member(&self) -> &Member {
        &self.inner.members[self.member]
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut u = self.inner.members[self.member].used.lock().unwrap();
            u.cpu_millicores = u.cpu_millicores.saturating_sub(self.cpu);
            u.ram_mib = u.ram_mib.saturating_sub(self.ram);
            u.grants = u.grants.saturating_sub(1);
        }
        if self.holds_slot {
            let mut a = self.inner.active.lock().unwrap();
            *a = a.saturating_sub(1);
        }
    }
}

impl Fleet {
    pub(super) fn take_slot(&self) -> Result<(), PlaceError> {
        let mut a = self.inner.active.lock().unwrap();
        if *a >= self.inner.cap {
            return Err(PlaceError::ConcurrencyCap {
                active: *a,
                cap: self.inner.cap,
            });
        }
        *a += 1;
        Ok(())
    }

    pub(super) fn release_slot(&self) {
        let mut a = self.inner.active.lock().unwrap();
        *a = a.saturating_sub(1);
    }

    /// Reserve room for `grant` on member `i`, if its declared capacity
    /// allows. The concurrency slot must already be held.
    pub(super) fn reserve(&self, i: usize, grant: &GrantSpec) -> Option<Reservation> {
        let m = &self.inner.members[i];
        let caps = m.caps.lock().unwrap().clone()?;
        let mut u = m.used.lock().unwrap();
        let cpu = u64::from(grant.cpu_millicores);
        let ram = u64::from(grant.ram_mib);
        if u.cpu_millicores + cpu > u64::from(caps.max_cpu_millicores)
            || u.ram_mib + ram > u64::from(caps.max_ram_mib)
        {
            return None;
        }
        u.cpu_millicores += cpu;
        u.ram_mib += ram;
        u.grants += 1;
        Some(Reservation {
            inner: self.inner.clone(),
            member: i,
            cpu,
            ram,
            holds_slot: true,
        })
    }

    /// Re-take capacity for a grant already placed on `backend` (after a
    /// restart), so it can be watched or torn down there. Over-commits
    /// rather than refusing: the workload exists. `None` when this fleet
    /// has no backend of that name.
    pub fn adopt(&self, backend: &str, grant: &GrantSpec) -> Option<Reservation> {
        let i = self.index_of(backend)?;
        *self.inner.active.lock().unwrap() += 1;
        let mut u = self.inner.members[i].used.lock().unwrap();
        u.cpu_millicores += u64::from(grant.cpu_millicores);
        u.ram_mib += u64::from(grant.ram_mib);
        u.grants += 1;
        Some(Reservation {
            inner: self.inner.clone(),
            member: i,
            cpu: u64::from(grant.cpu_millicores),
            ram: u64::from(grant.ram_mib),
            holds_slot: true,
        })
    }
}

/// Give back a reservation's capacity but keep the concurrency slot: the
/// grant is still being placed elsewhere.
pub(super) fn release_capacity_only(mut r: Reservation) {
    r.holds_slot = false;
}
