//! The `cache` capability: a small key/value store in host memory, one per
//! backend, for credentials such as OAuth access tokens.
//!
//! Every component call runs in a fresh instance, so a cloud backend could
//! not otherwise keep the token it fetched on one call for the next; with
//! this it asks the identity provider once per token lifetime instead of
//! once per call. It is deliberately narrow:
//!
//! - memory only, never written to disk or logged (values are secrets);
//! - private to one backend: each backend's [`Provided`](super::Provided)
//!   holds its own instance;
//! - bounded: [`CacheLimits`] caps entries, key and value sizes and the
//!   bytes held; when full, expired entries go first, then the ones closest
//!   to expiry;
//! - every entry has a time-to-live, enforced here (capped at a day);
//! - not for grant data (the WIT says so; the handle is the place for what
//!   a backend must remember about an instance).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HasCall, NoSection};
use crate::bindings::cache as wit;
use crate::spec::LoadContext;

/// Bounds on one backend's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries held at once.
    pub max_entries: usize,
    /// Longest key, bytes.
    pub max_key_bytes: usize,
    /// Largest value, bytes.
    pub max_value_bytes: usize,
    /// Most bytes (keys and values) held at once.
    pub max_total_bytes: usize,
    /// Longest time-to-live; longer requests are cut to this.
    pub max_ttl: Duration,
}

impl Default for CacheLimits {
    /// Room for a handful of tokens (an Entra ID access token is ~2 KiB).
    fn default() -> Self {
        Self {
            max_entries: 32,
            max_key_bytes: 256,
            max_value_bytes: 16 * 1024,
            max_total_bytes: 64 * 1024,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the cache did, since start (no keys, no values).
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// `get` calls that found a live entry.
    pub hits: AtomicU64,
    /// `get` calls that found nothing (or an expired entry).
    pub misses: AtomicU64,
    /// Values stored.
    pub stores: AtomicU64,
    /// `set` calls refused for their size.
    pub refused: AtomicU64,
    /// Live entries dropped to make room.
    pub evictions: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= key.len() + e.value.len();
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .map
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove(&k);
        }
    }

    /// The entry closest to expiry (the least useful one to keep).
    fn soonest(&self) -> Option<String> {
        self.map
            .iter()
            .min_by_key(|(_, e)| e.expires)
            .map(|(k, _)| k.clone())
    }
}

/// One backend's cache, shared by all its calls.
#[derive(Debug)]
pub struct CacheCapability {
    backend: Arc<str>,
    limits: CacheLimits,
    entries: Mutex<Entries>,
    /// Counters since start.
    pub counters: CacheCounters,
}

impl CacheCapability {
    /// An empty cache for `backend`.
    pub fn new(backend: &str, limits: CacheLimits) -> Self {
        Self {
            backend: backend.into(),
            limits,
            entries: Mutex::new(Entries::default()),
            counters: CacheCounters::default(),
        }
    }

    /// The value under `key` if it is still live.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    /// Store `value` under `key` for `ttl` (0 removes it).
    pub fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.set_at(key, value, ttl, Instant::now())
    }

    /// Drop every entry (the next call fetches its credentials again).
    pub fn clear(&self) {
        let mut e = self.entries.lock().unwrap();
        e.map.clear();
        e.bytes = 0;
    }

    /// Live entries now.
    pub fn len(&self) -> usize {
        let mut e = self.entries.lock().unwrap();
        e.purge_expired(Instant::now());
        e.map.len()
    }

    /// True when nothing live is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let mut e = self.entries.lock().unwrap();
        let live = match e.map.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                e.remove(key);
                None
            }
            None => None,
        };
        let counter = if live.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        live
    }

    fn set_at(&self, key: &str, value: Vec<u8>, ttl: Duration, now: Instant) {
        let mut e = self.entries.lock().unwrap();
        e.remove(key);
        if ttl.is_zero() {
            return;
        }
        let l = &self.limits;
        if key.len() > l.max_key_bytes
            || value.len() > l.max_value_bytes
            || key.len() + value.len() > l.max_total_bytes
        {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            // The key may be worth seeing; the value never is.
            tracing::warn!(
                backend = %self.backend,
                key_bytes = key.len(),
                value_bytes = value.len(),
                "cache entry over the size limits, not stored"
            );
            return;
        }
        e.purge_expired(now);
        let size = key.len() + value.len();
        while e.map.len() >= l.max_entries || e.bytes + size > l.max_total_bytes {
            let Some(victim) = e.soonest() else { break };
            e.remove(&victim);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        e.bytes += size;
        e.map.insert(
            key.to_string(),
            Entry {
                value,
                expires: now + ttl.min(l.max_ttl),
            },
        );
        self.counters.stores.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-call view handed to the generated `Host` trait.
pub struct CacheCall(pub Arc<CacheCapability>);

impl Capability for CacheCapability {
    /// No section: its bounds are the host's ([`CacheLimits::default`]).
    const SECTION: Option<&'static str> = None;
    const IMPORTS: &'static [(&'static str, &'static str)] =
        &[(our_interface!("cache"), "credential cache in host memory")];
    type Config = NoSection;
    type Call = CacheCall;

    fn provide(_cfg: &NoSection, at: &LoadContext) -> anyhow::Result<Self> {
        Ok(Self::new(&at.backend, CacheLimits::default()))
    }

    fn start_call(this: &Arc<Self>, _export: &'static str) -> CacheCall {
        CacheCall(this.clone())
    }

    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<CacheCall>>(linker, |t| HasCall::<Self>::call_state(t))
    }
}

impl wit::Host for CacheCall {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.0.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u32) -> wasmtime::Result<()> {
        self.0
            .set(&key, value, Duration::from_secs(u64::from(ttl_seconds)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(limits: CacheLimits) -> CacheCapability {
        CacheCapability::new("t", limits)
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn entries_live_until_their_ttl() {
        let c = cache(CacheLimits::default());
        let t0 = Instant::now();
        c.set_at("token", b"abc".to_vec(), 10 * S, t0);
        assert_eq!(c.get_at("token", t0 + 9 * S).as_deref(), Some(&b"abc"[..]));
        assert_eq!(c.get_at("token", t0 + 10 * S), None);
        // The expired entry is gone for good, and its bytes are released.
        assert_eq!(c.entries.lock().unwrap().bytes, 0);
        assert_eq!(c.counters.hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.counters.misses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn zero_ttl_removes_and_ttl_is_capped() {
        let c = cache(CacheLimits::default());
        let t0 = Instant::now();
        c.set_at("k", b"v".to_vec(), 60 * S, t0);
        c.set_at("k", Vec::new(), Duration::ZERO, t0);
        assert_eq!(c.get_at("k", t0), None);
        c.set_at(
            "k",
            b"v".to_vec(),
            Duration::from_secs(u64::from(u32::MAX)),
            t0,
        );
        assert!(c.get_at("k", t0 + 86_399 * S).is_some());
        assert_eq!(c.get_at("k", t0 + 86_400 * S), None);
    }

    #[test]
    fn oversized_keys_and_values_are_not_stored() {
        let c = cache(CacheLimits::default());
        let t0 = Instant::now();
        c.set_at(&"k".repeat(257), b"v".to_vec(), 60 * S, t0);
        c.set_at("big", vec![0; 16 * 1024 + 1], 60 * S, t0);
        assert!(c.entries.lock().unwrap().map.is_empty());
        assert_eq!(c.counters.refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bounds_hold_by_evicting_the_soonest_to_expire() {
        let c = cache(CacheLimits {
            max_entries: 3,
            max_total_bytes: 1000,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        c.set_at("a", vec![1], 30 * S, t0);
        c.set_at("b", vec![2], 10 * S, t0);
        c.set_at("c", vec![3], 20 * S, t0);
        c.set_at("d", vec![4], 40 * S, t0);
        assert_eq!(c.get_at("b", t0), None, "soonest to expire goes first");
        for k in ["a", "c", "d"] {
            assert!(c.get_at(k, t0).is_some(), "{k}");
        }
        // Bytes: a 900-byte value pushes the others out until it fits.
        c.set_at("e", vec![0; 900], 50 * S, t0);
        let e = c.entries.lock().unwrap();
        assert!(e.bytes <= 1000, "{}", e.bytes);
        assert!(e.map.contains_key("e"));
        assert_eq!(
            e.bytes,
            e.map
                .iter()
                .map(|(k, v)| k.len() + v.value.len())
                .sum::<usize>()
        );
    }

    #[test]
    fn replacing_a_key_keeps_the_byte_count_exact() {
        let c = cache(CacheLimits::default());
        let t0 = Instant::now();
        c.set_at("k", vec![0; 100], 60 * S, t0);
        c.set_at("k", vec![0; 10], 60 * S, t0);
        assert_eq!(c.entries.lock().unwrap().bytes, 11);
    }
}
