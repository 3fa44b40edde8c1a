//! The `wasi:config/store` capability: a backend reads its own
//! `[backends.config]` table (with `${ENV}` already expanded) and nothing
//! else. Served by `wasmtime-wasi-config`.

use wasmtime_wasi_config::WasiConfigVariables;

/// Reserved key: the backend's name.
pub const BACKEND_NAME: &str = "bridge.backend-name";
/// Reserved key: this bridge's provider id.
pub const PROVIDER_ID: &str = "bridge.provider-id";
/// Reserved key: the whole table as JSON.
pub const CONFIG_JSON: &str = "bridge.config-json";

/// The variables one backend sees: each top-level key of its table (strings
/// verbatim, other scalars as TOML text, tables and arrays as JSON) and the
/// reserved `bridge.*` keys.
pub fn variables(backend: &str, provider_id: &str, table: &toml::Table) -> WasiConfigVariables {
    let mut vars = WasiConfigVariables::new();
    for (k, v) in table {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(_) | toml::Value::Table(_) => to_json(v).to_string(),
            other => other.to_string(),
        };
        vars.insert(k.clone(), text);
    }
    let json =
        serde_json::Value::Object(table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect());
    vars.insert(CONFIG_JSON, json.to_string());
    vars.insert(BACKEND_NAME, backend);
    vars.insert(PROVIDER_ID, provider_id);
    vars
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}
