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
/// `config` error with serde's explanation, starting with the key path it
/// is about (`` `vm_sizes[1].regions`: invalid type … ``) so the host can
/// point at that key's line.
pub fn load<T: serde::de::DeserializeOwned>() -> Result<T, BackendError> {
    let json = get(CONFIG_JSON).unwrap_or_else(|| "{}".to_string());
    parse(&json)
}

/// [`load`] over a given JSON text: what the wasm glue reads, for a core's
/// native tests and for glue that has the text already.
pub fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, BackendError> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        BackendError::config(if path == "." {
            format!("[backends.config]: {e}")
        } else {
            format!("`{path}`: {e}")
        })
    })
}

/// The name the operator gave this backend in the boot config.
pub fn backend_name() -> String {
    get(BACKEND_NAME).unwrap_or_default()
}

/// The provider id of the bridge (safe to put in tags and labels).
pub fn provider_id() -> String {
    get(PROVIDER_ID).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        sizes: Vec<Size>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Size {
        regions: Vec<String>,
    }

    #[test]
    fn errors_start_with_the_key_they_are_about() {
        let e = parse::<Section>(r#"{"sizes": [{"regions": []}, {"regions": "eu"}]}"#).unwrap_err();
        let msg = e.message();
        assert!(msg.starts_with("`sizes[1].regions`: invalid type"), "{msg}");
        let e = parse::<Section>(r#"{}"#).unwrap_err();
        assert!(
            e.message()
                .starts_with("[backends.config]: missing field `sizes`"),
            "{}",
            e.message()
        );
    }
}
