//! The orphan sweep: at start, terminate the instances a backend runs for
//! this provider that the journal does not know.
//!
//! An instance can outlive the bridge's memory of it: a crash between
//! `provision` returning and the journal write, or a journal lost with its
//! disk. Such an instance serves no grant and costs the operator money. A
//! backend that can list its instances (by tag, label, naming convention)
//! lets the bridge find them; with `sweep_orphans = true` on that backend
//! the provider loop calls [`sweep_orphans`] once at start, before it takes
//! grants, with the instance ids the journal knows.
//!
//! Opt-in because it terminates: an operator who runs two bridges with the
//! same provider id (never intended) would have each sweep the other's
//! instances.

use std::collections::HashSet;

use crate::backend::Backend;

/// List `backend`'s instances, terminate each one whose id is not in
/// `known_instance_ids`, and return the ids it terminated.
///
/// Every orphan found is logged with its id and region (never anything
/// about a requester: instances carry none). A failed listing or
/// termination is logged and skipped; the sweep never stops the bridge.
pub async fn sweep_orphans(
    backend: &dyn Backend,
    known_instance_ids: &HashSet<String>,
) -> Vec<String> {
    let instances = match backend.list_instances().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(backend = backend.name(), error = %e, "orphan sweep: could not list instances");
            return Vec::new();
        }
    };
    let mut terminated = Vec::new();
    for instance in instances {
        if known_instance_ids.contains(&instance.instance_id) {
            continue;
        }
        tracing::warn!(
            backend = backend.name(),
            instance = %instance.instance_id,
            region = %instance.region,
            "orphan sweep: instance unknown to the journal; terminating"
        );
        match backend.terminate(&instance).await {
            Ok(()) => terminated.push(instance.instance_id),
            Err(e) => tracing::warn!(
                backend = backend.name(),
                instance = %instance.instance_id,
                error = %e,
                "orphan sweep: could not terminate"
            ),
        }
    }
    if !terminated.is_empty() {
        tracing::info!(
            backend = backend.name(),
            count = terminated.len(),
            "orphan sweep: terminated instances the journal did not know"
        );
    }
    terminated
}
