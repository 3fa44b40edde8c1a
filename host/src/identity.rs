//! The bridge's provider id: random, created on first start and kept in the
//! state dir so the coalition sees the same provider across restarts.

use std::path::Path;

use anyhow::Context;

/// The provider id stored in `state_dir`, created if absent.
pub fn provider_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("provider-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id);
        }
        anyhow::bail!(
            "{} does not hold a provider id (32 hex digits); remove it to mint a new one",
            path.display()
        );
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}
