//! Watching: a placed workload is polled on the backend its
//! [`Reservation`] names until it exits, disappears or its grant expires,
//! then its usage is read and it is terminated ([`Fleet::watch_until_exit`],
//! [`Fleet::tear_down`]), each retried on `transient`. Keeps only the
//! instances being watched now, in their member's `watched` list, for a
//! swap to hand over.

use std::time::Duration;

use compute_bridge_contract::backend::{BackendError, ErrorKind, Instance, InstanceState, Usage};
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_sandbox::capabilities::log::escape;

use super::{Fleet, Member, Reservation};

/// The result of watching a workload to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOutcome {
    /// How it ended.
    pub ending: WorkloadEnding,
    /// What it used (zero if the backend could not say; see `usage_error`).
    pub usage: Usage,
    /// Why usage is zero, if the backend failed to report it.
    pub usage_error: Option<String>,
    /// Why terminate failed, if it did (the instance may still exist).
    pub terminate_error: Option<String>,
}

/// What tearing a workload down found ([`Fleet::tear_down`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// What it used (zero if the backend could not say; see `usage_error`).
    pub usage: Usage,
    /// Why usage is zero, if the backend failed to report it.
    pub usage_error: Option<String>,
    /// Why terminate failed, if it did (the instance may still exist).
    pub terminate_error: Option<String>,
}

/// Polling schedule for `watch_until_exit`.
#[derive(Debug, Clone, Copy)]
pub struct WatchPolicy {
    /// First interval.
    pub initial: Duration,
    /// Longest interval.
    pub max: Duration,
    /// Attempts at terminate and usage on transient failures.
    pub attempts: u32,
}

impl Default for WatchPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            attempts: 5,
        }
    }
}

impl Fleet {
    /// Poll `instance`, placed under `reservation`, with backoff until it
    /// exits, disappears or `valid_to` passes; then [`Self::tear_down`] it.
    ///
    /// The reservation names the backend: a grant is watched, read and
    /// terminated on the backend that placed it (or adopted it after a
    /// restart), and on no other. Every call asks the component serving
    /// that backend at that moment, so a swap takes over a running watch at
    /// its next call; the instance is listed in [`Self::watched`]
    /// meanwhile.
    pub async fn watch_until_exit(
        &self,
        reservation: &Reservation,
        instance: &Instance,
        valid_to: u64,
        policy: WatchPolicy,
    ) -> WatchOutcome {
        let m = reservation.member();
        let backend = m.name.as_str();
        m.watched
            .lock()
            .unwrap()
            .insert(instance.instance_id.clone(), instance.clone());
        struct Unwatch<'a>(&'a Member, &'a str);
        impl Drop for Unwatch<'_> {
            fn drop(&mut self) {
                self.0.watched.lock().unwrap().remove(self.1);
            }
        }
        let _unwatch = Unwatch(m, &instance.instance_id);
        let mut interval = policy.initial;
        let ending = loop {
            let now = now_unix();
            if now >= valid_to {
                break WorkloadEnding::Expired;
            }
            match m.backend().status(instance).await {
                Ok(InstanceState::Exited(c)) => break WorkloadEnding::Exited(c),
                Ok(InstanceState::Gone) => break WorkloadEnding::Gone,
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    backend,
                    instance = %escape(&instance.instance_id),
                    "status failed, will poll again: {e}"
                ),
            }
            let left = Duration::from_secs(valid_to.saturating_sub(now_unix()));
            tokio::time::sleep(interval.min(left.max(Duration::from_millis(50)))).await;
            interval = (interval * 2).min(policy.max);
        };
        let Teardown {
            usage,
            usage_error,
            terminate_error,
        } = self.tear_down(reservation, instance, policy).await;
        WatchOutcome {
            ending,
            usage,
            usage_error,
            terminate_error,
        }
    }

    /// Read the usage of `instance`, placed under `reservation`, then
    /// terminate it, each retried `policy.attempts` times on transient
    /// failures. Usage is read before terminate because some backends (bare
    /// metal) account from state that terminate removes.
    pub async fn tear_down(
        &self,
        reservation: &Reservation,
        instance: &Instance,
        policy: WatchPolicy,
    ) -> Teardown {
        let m = reservation.member();
        let backend = m.name.as_str();
        let (usage, usage_error) = match retry(policy.attempts, || async {
            m.backend().usage(instance).await
        })
        .await
        {
            Ok(u) => (u, None),
            Err(e) => {
                tracing::warn!(backend, instance = %escape(&instance.instance_id), "usage unavailable: {e}");
                (Usage::default(), Some(e.to_string()))
            }
        };
        let terminate_error = match retry(policy.attempts, || async {
            m.backend().terminate(instance).await
        })
        .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(backend, instance = %escape(&instance.instance_id), "terminate failed: {e}");
                Some(e.to_string())
            }
        };
        Teardown {
            usage,
            usage_error,
            terminate_error,
        }
    }
}

async fn retry<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut n = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == ErrorKind::Transient && n + 1 < attempts => {
                n += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}
