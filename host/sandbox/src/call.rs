//! One backend component behind the [`Backend`] trait, each call in a fresh
//! sandbox.
//!
//! A call takes one of its backend's own call slots and a slot of the
//! runtime's pool, waiting for them no longer than its deadline (then it
//! fails `transient`, and the fleet moves on), instantiates the component
//! from its `InstancePre` into a new `Store` (pooled, copy-on-write memory,
//! so this costs microseconds), runs the export under the backend's memory
//! budget (one sum over all its memories and tables, see [`crate::Budget`])
//! with epoch-based yielding, and is dropped at its deadline: the backend's
//! `call_timeout_sec`, or the shorter `capabilities_timeout_sec` and
//! `can_satisfy_timeout_sec` for those two. Whatever the guest left in
//! memory dies with the store, so nothing of one grant's call reaches
//! another's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::wasi;

use compute_bridge_contract::backend::{
    self, Backend, BackendError, GrantSpec, Instance, InstanceState, Offer, Usage, Workload,
};

use crate::bindings::{self, provider::Guest as Provider};
use crate::budget::{Budget, OverBudget};
use crate::capabilities::log::escape;
use crate::capabilities::{Calls, Provided};
use crate::engine::Shared;

/// Standard error kept per call, for trap reports (bytes).
const STDERR_KEEP: usize = 4096;

/// Per-backend sandbox limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Memory budget per call, bytes: all its memories and tables together.
    pub memory_bytes: usize,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
    /// Deadline of a `capabilities` call.
    pub capabilities_deadline: Duration,
    /// Deadline of a `can-satisfy` call.
    pub can_satisfy_deadline: Duration,
    /// This backend's calls in flight at once.
    pub max_concurrent_calls: u32,
}

impl Limits {
    /// The deadline of export `what`.
    pub fn deadline_of(&self, what: &str) -> Duration {
        match what {
            "capabilities" => self.capabilities_deadline,
            "can-satisfy" => self.can_satisfy_deadline,
            _ => self.deadline,
        }
    }
}

/// What a call's `Store` holds: the WASI context (empty environment, no
/// files, no sockets; [`crate::wasi::ctx`]), the resource table WASI and
/// `wasi:http` share, and each capability's state in this call.
pub struct CallState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) calls: Calls,
    budget: Budget,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Calls made and how they ended, per backend.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls started.
    pub calls: AtomicU64,
    /// Calls that trapped (including memory cap and stack overflow).
    pub traps: AtomicU64,
    /// Calls stopped at their deadline.
    pub deadlines: AtomicU64,
    /// Calls that found no free slot within their deadline.
    pub busy: AtomicU64,
    /// Calls in flight now.
    pub in_flight: AtomicU64,
    /// The most calls ever in flight at once.
    pub peak_in_flight: AtomicU64,
    /// The most memory one call's memories and tables held, bytes.
    pub peak_memory_bytes: AtomicU64,
}

/// A backend component, ready to be called.
pub struct ComponentBackend {
    name: Arc<str>,
    pre: bindings::BackendPre<CallState>,
    granted: Provided,
    limits: Limits,
    shared: Arc<Shared>,
    /// This backend's own call slots.
    slots: Semaphore,
    /// Counters.
    pub stats: CallStats,
}

/// Counts a call in flight while it lives.
struct InFlight<'a>(&'a CallStats);

impl<'a> InFlight<'a> {
    fn new(stats: &'a CallStats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// How one call ended, and what the capabilities note about it for an
/// error (why the host denied a request the guest then failed on).
struct Called<R> {
    result: Result<R, BackendError>,
    notes: Vec<String>,
}

impl<R> Called<R> {
    /// The export's value; a trap or deadline with the notes appended.
    fn value(self) -> Result<R, BackendError> {
        let notes = self.notes;
        self.result.map_err(|e| noted(e, &notes))
    }
}

impl<T, E: Into<BackendError>> Called<Result<T, E>> {
    /// The export's own result, its error (or a trap, or the deadline)
    /// with the notes appended.
    fn outcome(self) -> Result<T, BackendError> {
        let notes = self.notes;
        match self.result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(noted(e.into(), &notes)),
            Err(e) => Err(noted(e, &notes)),
        }
    }
}

/// `e` with `; <note>` appended to its message for each note (escaped, so
/// it stays on one line), cut to the error's bound.
fn noted(e: BackendError, notes: &[String]) -> BackendError {
    if notes.is_empty() {
        return e;
    }
    let add = |mut m: String| {
        for n in notes {
            m.push_str("; ");
            m.push_str(&escape(n));
        }
        m
    };
    match e {
        BackendError::NoCapacity(m) => BackendError::NoCapacity(add(m)),
        BackendError::Transient(m) => BackendError::Transient(add(m)),
        BackendError::Rejected(m) => BackendError::Rejected(add(m)),
        BackendError::Config(m) => BackendError::Config(add(m)),
        BackendError::Internal(m) => BackendError::Internal(add(m)),
    }
    .bounded()
}

impl ComponentBackend {
    pub(crate) fn new(
        name: &str,
        pre: bindings::BackendPre<CallState>,
        granted: Provided,
        limits: Limits,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            name: name.into(),
            pre,
            granted,
            slots: Semaphore::new(limits.max_concurrent_calls.max(1) as usize),
            limits,
            shared,
            stats: CallStats::default(),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What this backend was granted.
    pub fn granted(&self) -> &Provided {
        &self.granted
    }

    /// Run one export in a fresh instance.
    async fn call<R: Send>(
        &self,
        what: &'static str,
        f: impl for<'a> FnOnce(&'a Provider, &'a mut Store<CallState>) -> CallFuture<'a, R> + Send,
    ) -> Called<R> {
        let (result, notes) = self.run(what, f).await;
        Called { result, notes }
    }

    /// [`Self::call`]'s work: the result, and the capabilities' notes for
    /// an error (empty when no instance ran).
    async fn run<R: Send>(
        &self,
        what: &'static str,
        f: impl for<'a> FnOnce(&'a Provider, &'a mut Store<CallState>) -> CallFuture<'a, R> + Send,
    ) -> (Result<R, BackendError>, Vec<String>) {
        let deadline = self.limits.deadline_of(what);
        // Its backend's own slot first, then one of the pool's: a backend
        // whose calls all hang waits on its own slots, never on another's.
        // Neither wait outlasts the call's deadline.
        let slots = async {
            let own = self.slots.acquire().await;
            let pool = self.shared.slots.acquire().await;
            (own, pool)
        };
        let (_own, _pool) = match tokio::time::timeout(deadline, slots).await {
            Ok((Ok(own), Ok(pool))) => (own, pool),
            Ok(_) => unreachable!("call slots are never closed"),
            Err(_) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "backend {} had no free call slot for {what} within {}s \
                     ({} of its calls in flight, max_concurrent_calls = {})",
                    self.name,
                    deadline.as_secs_f64(),
                    self.stats.in_flight.load(Ordering::Relaxed),
                    self.limits.max_concurrent_calls
                );
                tracing::warn!(backend = %self.name, call = what, "{msg}");
                return (Err(BackendError::Transient(msg)), Vec::new());
            }
        };
        let _in_flight = InFlight::new(&self.stats);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let stderr = MemoryOutputPipe::new(STDERR_KEEP);
        let wasi = wasi::ctx(stderr.clone(), |b| self.granted.shape_wasi(b));
        let mut store = Store::new(
            &self.shared.engine,
            CallState {
                wasi,
                table: ResourceTable::new(),
                calls: self.granted.start_call(what),
                budget: Budget::new(self.limits.memory_bytes),
            },
        );
        store.limiter(|s| &mut s.budget);
        // Yield to the executor every epoch tick: a spinning guest shares
        // its thread and the deadline below can always fire.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));

        let run = async {
            let world = self.pre.instantiate_async(&mut store).await?;
            f(world.compute_bridge_backend_provider(), &mut store).await
        };
        let result = tokio::time::timeout(deadline, run).await;
        self.stats
            .peak_memory_bytes
            .fetch_max(store.data().budget.peak() as u64, Ordering::Relaxed);
        let notes = store.data().calls.failure_notes();
        let result = match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                let msg = describe_trap(&e, &stderr);
                tracing::warn!(backend = %self.name, call = what, "component call failed: {msg}");
                Err(BackendError::Internal(format!(
                    "backend {} trapped in {what}: {msg}",
                    self.name
                )))
            }
            Err(_) => {
                self.stats.deadlines.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "backend {} exceeded its {}s deadline in {what}",
                    self.name,
                    deadline.as_secs_f64()
                );
                tracing::warn!(backend = %self.name, call = what, "{msg}");
                Err(BackendError::Internal(msg))
            }
        };
        (result, notes)
    }
}

/// What a trap was, for the error and the host's log: the component's own
/// words in it (its standard error) are escaped, so they stay on one line.
fn describe_trap(e: &wasmtime::Error, stderr: &MemoryOutputPipe) -> String {
    let mut msg = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".to_string(),
        Some(t) => t.to_string(),
        None => match e.chain().find_map(|c| c.downcast_ref::<OverBudget>()) {
            Some(over) => over.to_string(),
            None => {
                let root = e.root_cause().to_string();
                if root.contains("memory") && root.contains("grow") {
                    format!("memory cap reached ({root})")
                } else {
                    root
                }
            }
        },
    };
    let out = stderr.contents();
    let text = String::from_utf8_lossy(&out);
    // A Rust panic prints "panicked at FILE:LINE:COL:" then the message.
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .take(2)
        .collect();
    if !said.is_empty() {
        msg.push_str(&format!(" (stderr: {})", escape(&said.join(" "))));
    }
    msg
}

#[async_trait::async_trait]
impl Backend for ComponentBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capabilities(&self) -> Result<Offer, BackendError> {
        let offer = self
            .call("capabilities", |p, s| Box::pin(p.call_capabilities(s)))
            .await
            .outcome()?;
        backend::check_offer(&self.name, offer.into())
    }

    async fn can_satisfy(&self, grant: &GrantSpec) -> bool {
        let g = bindings::types::GrantSpec::from(grant);
        self.call("can-satisfy", move |p, s| {
            Box::pin(async move { p.call_can_satisfy(s, &g).await })
        })
        .await
        .value()
        .unwrap_or(false)
    }

    async fn provision(
        &self,
        grant: &GrantSpec,
        workload: &Workload,
    ) -> Result<Instance, BackendError> {
        let g = bindings::types::GrantSpec::from(grant);
        let w = bindings::types::Workload {
            ssh_user: workload.ssh_user.clone(),
            ssh_public_key: workload.ssh_public_key.clone(),
        };
        let instance: Instance = self
            .call("provision", move |p, s| {
                Box::pin(async move { p.call_provision(s, &g, &w).await })
            })
            .await
            .outcome()?
            .into();
        if let Err(e) = backend::check_provisioned(&self.name, &instance) {
            // It may exist: tear it down before refusing it.
            tracing::warn!(backend = %self.name, "{e}");
            if let Err(t) = self.terminate(&instance).await {
                tracing::error!(backend = %self.name, "tearing the refused instance down failed: {t}");
            }
            return Err(e);
        }
        Ok(instance)
    }

    async fn status(&self, instance: &Instance) -> Result<InstanceState, BackendError> {
        let i = bindings::types::Instance::from(instance);
        self.call("status", move |p, s| {
            Box::pin(async move { p.call_status(s, &i).await })
        })
        .await
        .outcome()
        .map(Into::into)
    }

    async fn usage(&self, instance: &Instance) -> Result<Usage, BackendError> {
        let i = bindings::types::Instance::from(instance);
        self.call("usage", move |p, s| {
            Box::pin(async move { p.call_usage(s, &i).await })
        })
        .await
        .outcome()
        .map(Into::into)
    }

    async fn terminate(&self, instance: &Instance) -> Result<(), BackendError> {
        let i = bindings::types::Instance::from(instance);
        self.call("terminate", move |p, s| {
            Box::pin(async move { p.call_terminate(s, &i).await })
        })
        .await
        .outcome()
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, BackendError> {
        let listed: Vec<Instance> = self
            .call("list-instances", |p, s| Box::pin(p.call_list_instances(s)))
            .await
            .outcome()?
            .into_iter()
            .map(Into::into)
            .collect();
        backend::check_listed(&self.name, &listed)?;
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_says_why_the_host_denied_its_request() {
        let notes =
            vec!["the host denied: https://x:443 is not in this backend's allowed_hosts".into()];
        let e = Called::<Result<(), BackendError>> {
            result: Ok(Err(BackendError::Transient(
                "EC2: denied by the host".into(),
            ))),
            notes: notes.clone(),
        }
        .outcome()
        .unwrap_err();
        assert_eq!(
            e,
            BackendError::Transient(
                "EC2: denied by the host; the host denied: https://x:443 is not in this \
                 backend's allowed_hosts"
                    .into()
            )
        );
        // A trap says it too; a call that succeeded says nothing.
        let trapped = Called::<Result<(), BackendError>> {
            result: Err(BackendError::Internal("trapped".into())),
            notes: notes.clone(),
        };
        assert!(
            matches!(trapped.outcome(), Err(BackendError::Internal(m)) if m.ends_with("allowed_hosts"))
        );
        let fine = Called::<Result<u8, BackendError>> {
            result: Ok(Ok(7)),
            notes,
        };
        assert_eq!(fine.outcome(), Ok(7));
        // Without a note, the error is the guest's, untouched.
        let plain = noted(BackendError::Rejected("r".into()), &[]);
        assert_eq!(plain, BackendError::Rejected("r".into()));
    }
}
