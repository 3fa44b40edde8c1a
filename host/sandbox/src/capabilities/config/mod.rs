//! The `wasi:config/store` capability: a backend reads its own
//! `[backends.config]` table (with `${ENV}` already expanded) and nothing
//! else. Served by `wasmtime-wasi-config`.

use std::sync::Arc;

use compute_bridge_contract::keypath::Invalid;
use wasmtime::component::Linker;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use super::{Capability, HasCall};
use crate::spec::LoadContext;

/// Reserved key: the backend's name.
pub const BACKEND_NAME: &str = "bridge.backend-name";
/// Reserved key: this bridge's provider id.
pub const PROVIDER_ID: &str = "bridge.provider-id";
/// Reserved key: the whole table as JSON.
pub const CONFIG_JSON: &str = "bridge.config-json";

/// The `config` capability of one backend: its variables, shared by all its
/// calls.
pub struct ConfigCapability {
    /// What `wasi:config/store` serves.
    pub variables: WasiConfigVariables,
}

/// One call's `config`.
pub struct ConfigCall(pub Arc<ConfigCapability>);

impl Capability for ConfigCapability {
    const SECTION: Option<&'static str> = Some("config");
    const IMPORTS: &'static [(&'static str, &'static str)] =
        &[("wasi:config/store@0.2.0-rc.1", "its own config section")];
    type Config = toml::Table;
    type Call = ConfigCall;

    /// The `bridge.` keys are the host's.
    fn validate(cfg: &toml::Table, _at: &LoadContext) -> Result<(), Invalid> {
        match cfg.keys().find(|k| k.starts_with("bridge.")) {
            Some(key) => Err(Invalid {
                path: vec![key.clone().into()],
                message: "keys starting with `bridge.` are reserved for the host".into(),
            }),
            None => Ok(()),
        }
    }

    fn provide(cfg: &toml::Table, at: &LoadContext) -> anyhow::Result<Self> {
        Ok(Self {
            variables: variables(&at.backend, &at.provider_id, cfg),
        })
    }

    fn start_call(this: &Arc<Self>, _export: &'static str) -> ConfigCall {
        ConfigCall(this.clone())
    }

    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi_config::add_to_linker(linker, |t| {
            WasiConfig::new(&HasCall::<Self>::call_state(t).0.variables)
        })
    }
}

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
