//! Components are compiled once: a second start with the same component and
//! engine loads the cached artifact instead of compiling.

use std::sync::atomic::Ordering;

use compute_bridge_sandbox::{Lookup, Runtime, RuntimeOptions};
use compute_bridge_testkit::components;

use crate::support::*;

#[tokio::test]
async fn the_second_start_hits_the_compile_cache() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path(), &backend_toml("fake", components::FAKE, ""));
    let first = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let (_, origin) = first.load_backend(&cfg, &cfg.backends[0], "p").unwrap();
    assert_eq!(origin, Lookup::Compiled);
    assert_eq!(first.cache_stats().misses.load(Ordering::Relaxed), 1);
    drop(first);

    // A new runtime, as after a restart.
    let second = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let (backend, origin) = second.load_backend(&cfg, &cfg.backends[0], "p").unwrap();
    assert_eq!(origin, Lookup::Cached);
    assert_eq!(second.cache_stats().hits.load(Ordering::Relaxed), 1);
    assert_eq!(second.cache_stats().misses.load(Ordering::Relaxed), 0);
    // And the cached artifact works.
    use compute_bridge_contract::backend::Backend;
    backend.capabilities().await.unwrap();
}

#[tokio::test]
async fn a_changed_component_or_a_corrupt_entry_is_compiled_again() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path(), &backend_toml("fake", components::FAKE, ""));
    let rt = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    rt.load_backend(&cfg, &cfg.backends[0], "p").unwrap();
    // Corrupt every cache entry: the next load must not trust it.
    let dir = cfg.state_dir().join("compiled");
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(e.unwrap().path(), b"not a compiled component").unwrap();
    }
    let rt = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
    let (_, origin) = rt.load_backend(&cfg, &cfg.backends[0], "p").unwrap();
    assert_eq!(origin, Lookup::Compiled);
    // A different component is a different key.
    let other = config(
        state.path(),
        &backend_toml("hostile", components::HOSTILE, ""),
    );
    let (_, origin) = rt.load_backend(&other, &other.backends[0], "p").unwrap();
    assert_eq!(origin, Lookup::Compiled);
}
