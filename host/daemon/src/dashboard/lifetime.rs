//! Lifetime counters and their file in the state dir.
//!
//! Only these aggregates are written to disk, never an event: a small JSON
//! file replaced atomically (write a temporary file, fsync, rename, fsync
//! the directory), so a crash leaves either the old or the new counters.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Counters over the bridge's whole life, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetime {
    /// Grants placed on a backend.
    pub grants_served: u64,
    /// Grants whose workload ended.
    pub grants_completed: u64,
    /// Grants declined.
    pub grants_declined: u64,
    /// Provisioning failovers.
    pub failovers: u64,
    /// Core-seconds used by finished workloads.
    pub cpu_core_seconds: u64,
    /// MiB-seconds used by finished workloads.
    pub ram_mib_seconds: u64,
    /// Bytes moved by finished workloads.
    pub net_bytes: u64,
    /// Settled revenue, micro-USD.
    pub revenue_micros: u64,
}

/// The on-disk form, versioned so a later format can read this one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    lifetime: Lifetime,
}

const VERSION: u32 = 1;

/// Why the lifetime file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A filesystem error.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file exists but does not hold lifetime counters.
    #[error("{} does not hold dashboard lifetime counters: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The lifetime file in a state dir.
#[derive(Debug, Clone)]
pub struct LifetimeStore {
    path: PathBuf,
}

impl LifetimeStore {
    /// Its name inside the state dir.
    pub const FILE_NAME: &'static str = "dashboard-lifetime.json";

    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(Self::FILE_NAME),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved counters, or zeros when there is no file yet.
    pub fn load(&self) -> Result<Lifetime, PersistError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lifetime::default()),
            Err(source) => {
                return Err(PersistError::Io {
                    action: "reading",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| PersistError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if disk.version != VERSION {
            return Err(PersistError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "format version {} (this build reads {VERSION})",
                    disk.version
                ),
            });
        }
        Ok(disk.lifetime)
    }

    /// Replace the file with `lifetime`, atomically.
    pub fn save(&self, lifetime: &Lifetime) -> Result<(), PersistError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| PersistError::Io {
                action,
                path,
                source,
            }
        };
        let text = serde_json::to_vec_pretty(&OnDisk {
            version: VERSION,
            lifetime: *lifetime,
        })
        .expect("plain counters serialize");
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&text).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io("replacing", &self.path))?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing", dir))?;
        }
        Ok(())
    }

    /// Move an unreadable file aside (to `<name>.corrupt`) so a fresh one
    /// can be written; returns where it went.
    pub fn set_aside(&self) -> Result<PathBuf, PersistError> {
        let aside = self.path.with_extension("json.corrupt");
        std::fs::rename(&self.path, &aside).map_err(|source| PersistError::Io {
            action: "moving aside",
            path: self.path.clone(),
            source,
        })?;
        Ok(aside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_a_missing_file_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = LifetimeStore::new(dir.path());
        assert_eq!(store.load().unwrap(), Lifetime::default());
        let l = Lifetime {
            grants_served: 1842,
            revenue_micros: 228_710_000,
            ..Lifetime::default()
        };
        store.save(&l).unwrap();
        assert_eq!(store.load().unwrap(), l);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![LifetimeStore::FILE_NAME]);
    }

    #[test]
    fn a_damaged_file_is_reported_and_can_be_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = LifetimeStore::new(dir.path());
        std::fs::write(store.path(), "{\"version\":1,\"lifetime\":").unwrap();
        let e = store.load().unwrap_err();
        assert!(
            e.to_string()
                .contains("does not hold dashboard lifetime counters"),
            "{e}"
        );
        let aside = store.set_aside().unwrap();
        assert!(aside.exists());
        assert_eq!(store.load().unwrap(), Lifetime::default());
    }
}
