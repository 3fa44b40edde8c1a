//! The wasmtime host: one engine, the compile cache, the pooled instance
//! slots and the epoch ticker, shared by every backend component.
//!
//! [`Runtime::load`] turns a [`BackendSpec`] (a `[[backends]]` entry with
//! its component's bytes) into a [`ComponentBackend`]: it refuses it
//! if it imports outside the backend world or needs more of the sandbox
//! than a backend gets (more than one memory; see [`policy`]), compiles it
//! (or loads it from the cache), links it against this backend's
//! capabilities only, and pre-instantiates it.
//!
//! The pool is sized so that it never runs out under the call slots: each
//! of the `max_concurrent_calls` slots has room for one instance of the
//! largest component the policy lets in (its memories, tables and core
//! instances), and each backend has its own share of the slots (see
//! the daemon's `BootConfig::call_slots`), so one backend's calls cannot
//! take another's.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::call::{CallState, ComponentBackend, Limits};
use crate::capabilities::{self, Provided};
use crate::compile_cache::{CacheStats, CompileCache, Lookup};
use crate::spec::{BackendSpec, BootView};
use crate::{policy, wasi};

/// How often the epoch advances; a spinning guest yields this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizing of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Calls in flight at once across all backends (pool slots).
    pub max_concurrent_calls: u32,
    /// Largest per-call memory cap of any backend, MiB.
    pub max_memory_mib: u32,
}

impl RuntimeOptions {
    /// Sizing for a boot config (the daemon's: the cache under its state
    /// dir, its pool, its largest memory cap).
    pub fn for_config(boot: &impl BootView) -> Self {
        boot.runtime_options()
    }
}

/// What every backend's calls share: the engine, the linker, the pool's
/// call slots.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    linker: Linker<CallState>,
    pub(crate) slots: tokio::sync::Semaphore,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The component host.
pub struct Runtime {
    shared: Arc<Shared>,
    cache: CompileCache,
}

impl Runtime {
    /// Build the engine (pooling allocator, epoch interruption), the linker
    /// and the epoch ticker.
    pub fn new(opts: &RuntimeOptions) -> anyhow::Result<Self> {
        let slots = opts.max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Per component: what the policy lets a backend have, so wasmtime
        // itself refuses anything more when it compiles it. In total: that
        // much per call slot, so the pool cannot run out before the slots.
        pool.total_component_instances(slots)
            .max_core_instances_per_component(policy::MAX_CORE_INSTANCES)
            .total_core_instances(slots * policy::MAX_CORE_INSTANCES)
            .max_memories_per_component(policy::MAX_MEMORIES)
            .total_memories(slots * policy::MAX_MEMORIES)
            .max_tables_per_component(policy::MAX_TABLES)
            .total_tables(slots * policy::MAX_TABLES)
            .total_stacks(slots)
            .max_memory_size(opts.max_memory_mib as usize * 1024 * 1024)
            // Reset only the pages a call dirtied (PAGEMAP_SCAN, Linux 6.7+)
            // and keep them resident, so the next call takes no page faults.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(64 * 1024);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::<CallState>::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        capabilities::link_all(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?;
        }

        Ok(Self {
            cache: CompileCache::new(&engine, opts.cache_dir.clone()),
            shared: Arc::new(Shared {
                engine,
                linker,
                slots: tokio::sync::Semaphore::new(slots as usize),
                ticker_stop,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Compile-cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.cache.stats
    }

    /// Compile (or load from cache) and check a component. Refuses one that
    /// imports outside the backend world or does not export the provider
    /// interface.
    pub fn compile(&self, label: &str, bytes: &[u8]) -> anyhow::Result<(Component, Lookup)> {
        let (component, origin) = match self.cache.load(self.engine(), bytes) {
            Ok(c) => c,
            Err(e) => match policy::explain_pool_refusal(&e) {
                Some(why) => anyhow::bail!("component {label} is refused:\n  - {why}"),
                None => return Err(e.context(format!("loading component {label}"))),
            },
        };
        let report = policy::check(self.engine(), &component);
        if !report.conforms() {
            anyhow::bail!(
                "component {label} is refused:\n  - {}",
                report.violations.join("\n  - ")
            );
        }
        Ok((component, origin))
    }

    /// Pre-instantiate `component` for one backend with the capabilities it
    /// was granted.
    pub fn backend(
        &self,
        name: &str,
        component: &Component,
        granted: Provided,
        limits: Limits,
    ) -> anyhow::Result<ComponentBackend> {
        let pre = self
            .shared
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("linking backend {name}"))?;
        let pre = bindings::BackendPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("backend {name} does not match the backend world"))?;
        Ok(ComponentBackend::new(
            name,
            pre,
            granted,
            limits,
            self.shared.clone(),
        ))
    }

    /// Everything for one backend: check, compile or load from cache,
    /// provide its capabilities, pre-instantiate.
    pub fn load(&self, spec: &BackendSpec) -> anyhow::Result<(ComponentBackend, Lookup)> {
        let name = &*spec.at.backend;
        let (component, lookup) =
            self.compile(&format!("{name} ({})", spec.component), &spec.bytes)?;
        tracing::info!(
            backend = %name,
            component = %spec.component,
            sha256 = &CompileCache::digest(&spec.bytes)[..16],
            cache = match lookup { Lookup::Cached => "hit", Lookup::Compiled => "miss" },
            "component loaded"
        );
        let provided = Provided::new(&spec.sections, &spec.at)
            .with_context(|| format!("granting capabilities to backend {name}"))?;
        Ok((
            self.backend(name, &component, provided, spec.limits)?,
            lookup,
        ))
    }

    /// Everything for one `[[backends]]` entry of `boot`: read its
    /// component, then [`Self::load`].
    pub fn load_backend<B: BootView>(
        &self,
        boot: &B,
        backend: &B::Backend,
        provider_id: &str,
    ) -> anyhow::Result<(ComponentBackend, Lookup)> {
        self.load(&boot.backend_spec(backend, provider_id)?)
    }
}
