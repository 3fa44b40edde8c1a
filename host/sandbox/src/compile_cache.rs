//! Ahead-of-time compiled components, cached under the state dir.
//!
//! The key is the SHA-256 of the component bytes together with a hash of
//! the engine's compatibility settings (wasmtime version, target, tunables),
//! so an unchanged component on an unchanged engine is never recompiled and
//! anything else is. The cache is trusted like the binary: it lives in the
//! operator's state dir, which nobody else may write.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hits and misses since start.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: AtomicU64,
    /// Components compiled (and stored).
    pub misses: AtomicU64,
}

/// Where compiled components live.
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
    /// Counters.
    pub stats: CacheStats,
}

/// How a component was obtained: found in the cache or compiled now (the
/// log says `cache = "hit"` or `"miss"`). Not an http `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Read from the cache.
    Cached,
    /// Compiled now.
    Compiled,
}

impl CompileCache {
    /// A cache in `dir` (created on first store), or none.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self {
            dir,
            engine_key: format!("{:016x}", h.finish()),
            stats: CacheStats::default(),
        }
    }

    /// SHA-256 of component bytes, hex.
    pub fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", &digest[..32], self.engine_key)))
    }

    /// The compiled form of `bytes`, from the cache or compiled now.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, Lookup)> {
        let digest = Self::digest(bytes);
        if let Some(path) = self.path_for(&digest)
            && path.is_file()
        {
            // SAFETY: the file was written by `store` below from wasmtime's
            // own serialization, in a directory only the operator writes;
            // wasmtime checks its header and engine compatibility.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((c, Lookup::Cached));
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "ignoring unusable compile-cache entry: {e:#}"
                ),
            }
        }
        let component = Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = self.path_for(&digest)
            && let Err(e) = store(&path, &component)
        {
            tracing::warn!(path = %path.display(), "cannot write the compile cache: {e:#}");
        }
        Ok((component, Lookup::Compiled))
    }
}

fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize()?;
    // Write then rename, so a crash never leaves a torn entry behind.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
