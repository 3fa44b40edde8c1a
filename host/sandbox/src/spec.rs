//! What the daemon tells the sandbox about one backend, and nothing more.
//!
//! A [`BackendSpec`] is a backend as the sandbox sees it: its name, the
//! component's bytes, its limits and its capability sections. The
//! [`LoadContext`] is what its capabilities may know while they are built
//! (the backend's name, the provider id it serves under, the directory
//! relative paths resolve against, whether it is shipped in the binary).
//! [`BootView`] is the seam the daemon's boot config implements, so the
//! sandbox can size itself and load a `[[backends]]` entry without knowing
//! the config's type. Keeps nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::call::Limits;
pub use crate::capabilities::Sections;
use crate::engine::RuntimeOptions;

/// What a capability may know about the backend it is built for.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// The backend's name (tags its logs and errors).
    pub backend: Arc<str>,
    /// The provider id the bridge serves under.
    pub provider_id: String,
    /// Where relative paths in its sections resolve (the config file's
    /// directory).
    pub base_dir: PathBuf,
    /// Whether its component is shipped in the binary (`builtin:...`): only
    /// such a backend may run commands on this machine.
    pub builtin: bool,
}

impl LoadContext {
    /// `p` resolved against [`Self::base_dir`].
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// One backend, ready for [`crate::Runtime::load`].
#[derive(Debug, Clone)]
pub struct BackendSpec {
    /// Its component as the operator wrote it (`builtin:aws`, a path), for
    /// messages.
    pub component: String,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// What its capabilities may know.
    pub at: LoadContext,
    /// Its capability sections.
    pub sections: Sections,
    /// Its sandbox limits.
    pub limits: Limits,
}

/// The daemon's boot config as the sandbox reads it: how big the runtime is
/// and what each `[[backends]]` entry is. The daemon implements it; the
/// sandbox never sees the rest of the config.
pub trait BootView {
    /// One `[[backends]]` entry.
    type Backend;
    /// The runtime's sizing.
    fn runtime_options(&self) -> RuntimeOptions;
    /// What `backend`'s capabilities may know when it serves `provider_id`.
    fn load_context(&self, backend: &Self::Backend, provider_id: &str) -> LoadContext;
    /// `backend`, component bytes read, ready to load.
    fn backend_spec(
        &self,
        backend: &Self::Backend,
        provider_id: &str,
    ) -> anyhow::Result<BackendSpec>;
    /// `backend`'s capability sections.
    fn sections(&self, backend: &Self::Backend) -> Sections;
}
