//! One memory budget per call, across everything the component grows.
//!
//! wasmtime's own `StoreLimits` caps each linear memory and each table on
//! its own, so a component carrying several core modules, each with a
//! memory of its own, got the cap once per memory. [`Budget`] is the
//! store's `ResourceLimiter` instead: every memory and table growth of the
//! call, including the initial sizes at instantiation, is added to one sum
//! that may not pass the backend's `memory_limit_mib`. It also holds the
//! store to the counts a backend needs (one memory; see
//! [`crate::policy::MAX_MEMORIES`]), in case the pool's per-component limits
//! ever allow more. A growth that does not fit traps the call.
//!
//! Keeps only byte counts; nothing of what the guest stores.

use wasmtime::ResourceLimiter;

use crate::policy;

/// Bytes a table element takes in the pool: one machine word (a `funcref`
/// is a pointer; wasmtime's pooling allocator sizes tables in words).
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Why a growth was refused; the trap's cause.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory budget of {limit_mib} MiB for the whole component reached: growing a {what} by {more} bytes \
     would bring its memories and tables to {would} bytes"
)]
pub struct OverBudget {
    /// The budget, MiB.
    pub limit_mib: usize,
    /// `memory` or `table`.
    pub what: &'static str,
    /// Bytes asked for.
    pub more: usize,
    /// What the total would have been.
    pub would: usize,
}

/// The `ResourceLimiter` of one call's store.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: usize,
    peak: usize,
    /// The last growth allowed, taken back if the allocation then fails.
    pending: usize,
}

impl Budget {
    /// A budget of `limit` bytes for all memories and tables together.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            peak: 0,
            pending: 0,
        }
    }

    /// The most the call's memories and tables held at once, bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }

    fn grow(&mut self, what: &'static str, more: usize) -> wasmtime::Result<bool> {
        let would = self.used.saturating_add(more);
        if would > self.limit {
            return Err(OverBudget {
                limit_mib: self.limit >> 20,
                what,
                more,
                would,
            }
            .into());
        }
        self.used = would;
        self.peak = self.peak.max(would);
        self.pending = more;
        Ok(true)
    }

    fn failed(&mut self) {
        self.used = self.used.saturating_sub(self.pending);
        self.pending = 0;
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            // Past the memory's own maximum: wasm's memory.grow says -1.
            return Ok(false);
        }
        self.grow("memory", desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed();
        Err(error.context("growing a memory failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let more = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", more)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed();
        Err(error.context("growing a table failed"))
    }

    fn instances(&self) -> usize {
        policy::MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        policy::MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        policy::MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_add_up_to_one_budget() {
        let mut b = Budget::new(16 << 20);
        // Two memories of 8 MiB fit exactly; a third page does not.
        assert!(b.memory_growing(0, 8 << 20, None).unwrap());
        assert!(b.memory_growing(0, 8 << 20, None).unwrap());
        let e = b.memory_growing(0, 64 << 10, None).unwrap_err();
        assert!(
            e.to_string().contains("16 MiB for the whole component"),
            "{e}"
        );
        // Nor does a table element.
        assert!(b.table_growing(0, 1, None).is_err());
        assert_eq!(b.peak(), 16 << 20);
    }

    #[test]
    fn a_failed_allocation_gives_its_share_back() {
        let mut b = Budget::new(1 << 20);
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        let _ = b.memory_grow_failed(wasmtime::Error::msg("mmap failed"));
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        // Past a memory's own maximum is a plain -1, not a trap.
        assert!(!b.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
    }
}
