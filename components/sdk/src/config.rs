//! The backend's own section of the boot config (`[backends.config]`),
//! served by the host through `wasi:config/store`.
//!
//! Each top-level key is one entry: strings as written, numbers and booleans
//! as their TOML text, tables and arrays as JSON. [`load`] deserializes the
//! whole section into a typed struct, which is usually what you want.

use crate::BackendError;
use crate::bindings::wasi::config::store;

/// Reserved key: the name the operator gave this backend.
pub const BACKEND_NAME: &str = "bridge.backend-name";
/// Reserved key: the provider id of the bridge running this backend.
pub const PROVIDER_ID: &str = "bridge.provider-id";
/// Reserved key: the whole `config` table as one JSON object.
pub const CONFIG_JSON: &str = "bridge.config-json";

/// One value, if the operator set it.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// One value the backend cannot work without: a missing key is a `config`
/// error naming it.
pub fn require(key: &str) -> Result<String, BackendError> {
    get(key).ok_or_else(|| {
        BackendError::config(format!(
            "missing key `{key}` in this backend's [backends.config] section"
        ))
    })
}

/// The whole section, deserialized into `T`. Unknown or mistyped keys are a
/// `config` error with serde's explanation.
pub fn load<T: serde::de::DeserializeOwned>() -> Result<T, BackendError> {
    let json = get(CONFIG_JSON).unwrap_or_else(|| "{}".to_string());
    serde_json::from_str(&json).map_err(|e| BackendError::config(format!("[backends.config]: {e}")))
}

/// The name the operator gave this backend in the boot config.
pub fn backend_name() -> String {
    get(BACKEND_NAME).unwrap_or_default()
}

/// The provider id of the bridge (safe to put in tags and labels).
pub fn provider_id() -> String {
    get(PROVIDER_ID).unwrap_or_default()
}
