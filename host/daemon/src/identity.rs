//! The bridge's identity: one random 32-byte secret, created on first start
//! and kept in `state_dir/identity.key` (mode 0600), from which everything
//! the coalition knows the bridge by is derived, so it is the same across
//! restarts:
//! - the HPKE envelope key grants are sealed to;
//! - the provider id (bound to the envelope key's public half);
//! - the mosaik node key (a stable peer id, so requesters waiting on a
//!   restarted bridge find it again).
//!
//! Losing the file makes the bridge a new provider; copying it to another
//! machine makes that machine this provider.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use compute_bridge_coalition::envelope::EnvelopeKey;
use compute_bridge_contract::protocol::ProviderId;

/// File name of the secret under the state dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// The bridge's keys and id.
pub struct Identity {
    /// The provider id (bound to the envelope key).
    pub provider_id: ProviderId,
    /// The HPKE envelope key.
    pub envelope: EnvelopeKey,
    /// The mosaik node key.
    pub node_key: mosaik::SecretKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("provider_id", &self.provider_id)
            .field("node", &self.node_key.public())
            .finish_non_exhaustive()
    }
}

fn derive(master: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"compute-bridge/identity/v1/");
    h.update(label);
    h.update(master);
    Zeroizing::new(h.finalize().into())
}

impl Identity {
    /// The identity derived from `master`.
    pub fn from_master(master: &[u8; 32]) -> Self {
        let envelope = EnvelopeKey::derive(&*derive(master, b"envelope"));
        let node_key = mosaik::SecretKey::from_bytes(&derive(master, b"node"));
        Self {
            provider_id: envelope.provider_id(),
            envelope,
            node_key,
        }
    }

    /// The identity kept in `state_dir`, created if absent.
    pub fn load_or_create(state_dir: &Path) -> anyhow::Result<Self> {
        let path = state_dir.join(IDENTITY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = Zeroizing::new(hex::decode(text.trim()).unwrap_or_default());
                let master: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{} does not hold an identity (64 hex digits); restore it from a backup, \
                         or remove it to become a new provider",
                        path.display()
                    )
                })?;
                Ok(Self::from_master(&master))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir)
                    .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
                let master: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                write_secret(&path, &Zeroizing::new(hex::encode(*master)))?;
                Ok(Self::from_master(&master))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Write `text` to `path` atomically with mode 0600, fsync'd.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.provider_id, b.provider_id);
        assert_eq!(a.envelope.public(), b.envelope.public());
        assert_eq!(a.node_key.public(), b.node_key.public());
        assert_eq!(
            a.provider_id,
            ProviderId::from_envelope_key(&a.envelope.public())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_identity_is_an_error_not_a_new_provider() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "nope").unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("does not hold an identity"), "{e}");
    }
}
