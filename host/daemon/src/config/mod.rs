//! The boot config: what the operator writes, validated before anything
//! starts. `config/example.toml` documents every key.
//!
//! Loading is strict: unknown keys, wrong types, unlisted schemes, a missing
//! `${ENV}` variable or a non-loopback dashboard are errors that name the
//! file, line, column and key.

mod backends;
pub mod component;
mod source;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use component::ComponentSource;
pub use source::{ConfigError, Source};

use compute_bridge_coalition::CoalitionConfig;
use compute_bridge_contract::keypath::Seg;
use compute_bridge_contract::measurement::Measurement;
use compute_bridge_sandbox::BootView;
use compute_bridge_sandbox::Sections;

/// The embedded default (`config/local.toml`): the bare-metal backend on this
/// machine, an in-process relay and local coalition, dashboard on 127.0.0.1.
pub const LOCAL_TOML: &str = include_str!("../../../../config/local.toml");

/// Display name of the embedded default in messages.
pub const LOCAL_NAME: &str = "<embedded config/local.toml>";

/// The whole boot config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// The bridge itself.
    #[serde(default)]
    pub bridge: BridgeConfig,
    /// The coalition network.
    #[serde(default)]
    pub coalition: CoalitionConfig,
    /// The operator dashboard.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// TDX attestation.
    #[serde(default)]
    pub attestation: AttestationConfig,
    /// Operator's cost rates per backend name, for the dashboard.
    #[serde(default)]
    pub rates: BTreeMap<String, Rate>,
    /// Backends in routing order.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Directory relative paths resolve against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config came from, for messages.
    #[serde(skip)]
    pub source_name: String,
}

/// `[bridge]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Durable state: journal, compile cache, identity. Relative paths are
    /// relative to the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Most grants served at once.
    #[serde(default = "default_cap")]
    pub concurrency_cap: u32,
    /// Seconds between provider-card refreshes (and dashboard reloads).
    #[serde(default = "default_refresh")]
    pub capacity_refresh_sec: u64,
    /// Largest number of component calls in flight at once, across backends
    /// (each holds a pooled instance slot).
    #[serde(default = "default_max_calls")]
    pub max_concurrent_calls: u32,
    /// Bad probation polls in a row after a live swap (`compute-bridge
    /// components swap`) before the bridge rolls back to the old component
    /// by itself; the probation lasts twice as many polls, one a second.
    #[serde(default = "default_swap_rollback_polls")]
    pub swap_rollback_polls: u32,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".compute-bridge")
}
fn default_cap() -> u32 {
    20
}
fn default_refresh() -> u64 {
    30
}
fn default_max_calls() -> u32 {
    256
}
fn default_swap_rollback_polls() -> u32 {
    3
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            concurrency_cap: default_cap(),
            capacity_refresh_sec: default_refresh(),
            max_concurrent_calls: default_max_calls(),
            swap_rollback_polls: default_swap_rollback_polls(),
        }
    }
}

/// `[dashboard]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Must be `127.0.0.1`: the dashboard is reached over an SSH tunnel,
    /// never directly.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Port on `bind`.
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    8080
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            port: default_port(),
        }
    }
}

/// `[attestation]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// `none` (development: the card says so) or `tdx`.
    #[serde(default)]
    pub mode: AttestationMode,
    /// Expected MR_TD, 96 hex digits; required in `tdx` mode.
    #[serde(default)]
    pub expected_mrtd: Option<String>,
}

impl AttestationConfig {
    /// The expected MR_TD, parsed (validation has checked it).
    pub fn expected(&self) -> Option<Measurement> {
        self.expected_mrtd.as_deref().and_then(|m| m.parse().ok())
    }
}

/// How the bridge attests itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationMode {
    /// No attestation.
    #[default]
    None,
    /// A TDX quote through configfs-tsm.
    Tdx,
}

/// `[rates.<backend>]`: what a backend costs the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// USD per core-hour.
    #[serde(default)]
    pub core_hour_usd: f64,
    /// USD per GiB-hour.
    #[serde(default)]
    pub ram_gib_hour_usd: f64,
}

/// `[[backends]]`: one backend component and what it may touch (read by
/// `backends.rs`: the keys below, then each capability's section).
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Unique name (`[a-z0-9-]+`), used in logs, the dashboard and rates.
    pub name: String,
    /// `builtin:<name>` for a backend shipped in the binary, or a path to a
    /// `.wasm` component (relative to the config file).
    pub component: String,
    /// A disabled backend is listed on the dashboard but never routed to.
    pub enabled: bool,
    /// Memory cap per call, MiB.
    pub memory_limit_mib: u32,
    /// Wall-clock deadline per call, seconds.
    pub call_timeout_sec: u64,
    /// Deadline of a `capabilities` call, seconds: short, so a backend
    /// that is slow to answer keeps only its own offer out of the card.
    pub capabilities_timeout_sec: u64,
    /// Deadline of a `can-satisfy` call, seconds: short, because routing
    /// asks it of the backends in order for every grant.
    pub can_satisfy_timeout_sec: u64,
    /// Calls of this backend in flight at once (each holds one of the
    /// `[bridge] max_concurrent_calls` sandbox slots, which no other backend
    /// can then take). Unset: an even share of the slots the backends with
    /// a value leave. Use [`BootConfig::call_slots`].
    pub max_concurrent_calls: Option<u32>,
    /// At start, terminate the instances this backend lists for this
    /// provider that the journal does not know (see [`crate::grant::sweep_orphans`]).
    /// Off by default: an operator opts in once nothing else launches
    /// instances with this provider id.
    pub sweep_orphans: bool,
    /// What it may touch: each capability's `[backends.<section>]` (`log`,
    /// `http`, `ssh`, and `config`, the component's own settings served
    /// through `wasi:config/store`), owned by the capability's folder in
    /// the sandbox.
    pub sections: Sections,
}

pub(super) fn yes() -> bool {
    true
}
pub(super) fn default_memory() -> u32 {
    64
}
pub(super) fn default_call_timeout() -> u64 {
    60
}
pub(super) fn default_capabilities_timeout() -> u64 {
    10
}
pub(super) fn default_can_satisfy_timeout() -> u64 {
    5
}

impl BootConfig {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::from_file(path)?, &|k| std::env::var(k).ok())
    }

    /// The text a config was read from, to locate errors found after
    /// loading (a backend refusing its own section, in `check-config`).
    pub fn source_of(path: Option<&Path>) -> Result<Source, ConfigError> {
        match path {
            Some(p) => Source::from_file(p),
            None => Ok(Source::embedded(LOCAL_NAME, LOCAL_TOML)),
        }
    }

    /// Load and validate the embedded default.
    pub fn local() -> Result<Self, ConfigError> {
        Self::from_source(&Source::embedded(LOCAL_NAME, LOCAL_TOML), &|k| {
            std::env::var(k).ok()
        })
    }

    /// Parse, expand `${ENV}` with `env`, and validate.
    pub fn from_source(
        source: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // Parse once as written so type errors point at the text...
        toml::from_str::<BootConfig>(&source.text).map_err(|e| source.from_toml_error(&e))?;
        // ...then expand variables and take the values from the result.
        let mut value: toml::Value = toml::from_str::<toml::Table>(&source.text)
            .map(toml::Value::Table)
            .map_err(|e| source.from_toml_error(&e))?;
        source::expand_env(source, &mut value, &mut Vec::new(), env)?;
        let mut cfg: BootConfig = value
            .try_into()
            .map_err(|e: toml::de::Error| source.error_at(None, None, e.message().to_string()))?;
        cfg.base_dir = source.base_dir.clone();
        cfg.source_name = source.name.clone();
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// The state directory, resolved against the config's directory.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve_path(&self.bridge.state_dir)
    }

    /// `p` resolved against the config's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn validate(&self, src: &Source) -> Result<(), ConfigError> {
        let at = |path: &[Seg], msg: String| src.error_at_path(path, msg);

        if self.bridge.concurrency_cap == 0 {
            return Err(at(
                &["bridge".into(), "concurrency_cap".into()],
                "must be at least 1".into(),
            ));
        }
        if self.bridge.capacity_refresh_sec == 0 {
            return Err(at(
                &["bridge".into(), "capacity_refresh_sec".into()],
                "must be at least 1 second".into(),
            ));
        }
        if self.bridge.swap_rollback_polls == 0 || self.bridge.swap_rollback_polls > 100 {
            return Err(at(
                &["bridge".into(), "swap_rollback_polls".into()],
                "must be between 1 and 100".into(),
            ));
        }
        if self.bridge.max_concurrent_calls == 0 || self.bridge.max_concurrent_calls > 10_000 {
            return Err(at(
                &["bridge".into(), "max_concurrent_calls".into()],
                "must be between 1 and 10000".into(),
            ));
        }
        match self.dashboard.bind.parse::<IpAddr>() {
            Ok(ip) if ip == IpAddr::from([127, 0, 0, 1]) => {}
            _ => {
                return Err(at(
                    &["dashboard".into(), "bind".into()],
                    format!(
                        "the dashboard binds to 127.0.0.1 only, not {:?}; \
                         reach it from your workstation with `ssh -L {p}:localhost:{p} <host>`",
                        self.dashboard.bind,
                        p = self.dashboard.port
                    ),
                ));
            }
        }
        if self.coalition.network.trim().is_empty() {
            return Err(at(
                &["coalition".into(), "network".into()],
                "the coalition name must not be empty".into(),
            ));
        }
        self.validate_coalition(src)?;
        if self.attestation.mode == AttestationMode::Tdx {
            match &self.attestation.expected_mrtd {
                None => {
                    return Err(at(
                        &["attestation".into()],
                        "attestation.mode = \"tdx\" needs expected_mrtd (48 bytes of hex): \
                         `compute-bridge attest` prints this guest's MR_TD"
                            .into(),
                    ));
                }
                Some(m) if m.parse::<Measurement>().is_err() => {
                    return Err(at(
                        &["attestation".into(), "expected_mrtd".into()],
                        "must be 48 bytes of hex (96 characters)".into(),
                    ));
                }
                Some(_) => {}
            }
        }

        if self.backends.is_empty() {
            return Err(src.error_at(
                None,
                Some("backends".into()),
                "no backends configured: add at least one [[backends]] table \
                 (see config/example.toml)",
            ));
        }
        let mut seen = BTreeMap::new();
        for (i, b) in self.backends.iter().enumerate() {
            let p = |rest: &[Seg]| {
                let mut v: Vec<Seg> = vec!["backends".into(), i.into()];
                v.extend_from_slice(rest);
                v
            };
            if b.name.is_empty()
                || b.name.len() > crate::journal::MAX_NAME_BYTES
                || !b
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(at(
                    &p(&["name".into()]),
                    format!(
                        "{:?} is not a valid backend name: use 1 to {} lower-case letters, digits and '-'",
                        b.name,
                        crate::journal::MAX_NAME_BYTES
                    ),
                ));
            }
            if let Some(first) = seen.insert(b.name.clone(), i) {
                return Err(at(
                    &p(&["name".into()]),
                    format!(
                        "backend name {:?} is already used by backends[{first}]",
                        b.name
                    ),
                ));
            }
            match b.component_source() {
                ComponentSource::Builtin(name) => {
                    if let Some((_, built)) = compute_bridge_components::TEST_ONLY
                        .iter()
                        .find(|(n, _)| *n == name)
                    {
                        return Err(at(
                            &p(&["component".into()]),
                            format!(
                                "`builtin:{name}` is a test backend: it is not shipped in this \
                                 binary, and a real coalition must never be offered its \
                                 capacity. To run it anyway (tests, demos), set `component` \
                                 to its .wasm file: `{}` writes it to {built}",
                                compute_bridge_components::TEST_BUILD
                            ),
                        ));
                    }
                    if !component::builtin_names().contains(&name.as_str()) {
                        return Err(at(
                            &p(&["component".into()]),
                            format!(
                                "no builtin component {name:?}; builtins are: {}",
                                component::builtin_names().join(", ")
                            ),
                        ));
                    }
                }
                ComponentSource::File(f) => {
                    let f = self.resolve_path(&f);
                    if !f.is_file() {
                        return Err(at(
                            &p(&["component".into()]),
                            format!("component file {} does not exist", f.display()),
                        ));
                    }
                }
            }
            if !(1..=4096).contains(&b.memory_limit_mib) {
                return Err(at(
                    &p(&["memory_limit_mib".into()]),
                    "must be between 1 and 4096 MiB".into(),
                ));
            }
            for (key, v) in [
                ("call_timeout_sec", b.call_timeout_sec),
                ("capabilities_timeout_sec", b.capabilities_timeout_sec),
                ("can_satisfy_timeout_sec", b.can_satisfy_timeout_sec),
            ] {
                if v == 0 {
                    return Err(at(&p(&[key.into()]), "must be at least 1 second".into()));
                }
            }
            if let Err(e) = b.sections.validate(&self.load_context(b, "")) {
                return Err(at(&p(&e.path), e.message));
            }
        }
        self.validate_call_slots(src)?;
        for (name, rate) in &self.rates {
            if !seen.contains_key(name) {
                return Err(at(
                    &["rates".into(), name.clone().into()],
                    format!("no backend named {name:?}"),
                ));
            }
            for (key, v) in [
                ("core_hour_usd", rate.core_hour_usd),
                ("ram_gib_hour_usd", rate.ram_gib_hour_usd),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(at(
                        &["rates".into(), name.clone().into(), key.into()],
                        "must be a non-negative number of dollars".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl BootConfig {
    /// Calls each backend may have in flight at once, in config order:
    /// its `max_concurrent_calls`, or an even share (at least one) of the
    /// `[bridge] max_concurrent_calls` slots that the backends with a value
    /// leave. Validation makes sure they add up to no more than the pool, so
    /// no backend's calls can take another's slot.
    pub fn call_slots(&self) -> Vec<u32> {
        let pool = self.bridge.max_concurrent_calls;
        let set: u32 = self
            .backends
            .iter()
            .filter_map(|b| b.max_concurrent_calls)
            .fold(0, u32::saturating_add);
        let unset = self
            .backends
            .iter()
            .filter(|b| b.max_concurrent_calls.is_none())
            .count() as u32;
        let share = (pool.saturating_sub(set) / unset.max(1)).max(1);
        self.backends
            .iter()
            .map(|b| b.max_concurrent_calls.unwrap_or(share))
            .collect()
    }

    /// The call slots of the backend called `name` (see [`Self::call_slots`]).
    pub fn call_slots_of(&self, name: &str) -> Option<u32> {
        let i = self.backends.iter().position(|b| b.name == name)?;
        self.call_slots().get(i).copied()
    }

    fn validate_call_slots(&self, src: &Source) -> Result<(), ConfigError> {
        let pool = self.bridge.max_concurrent_calls;
        let unset = self
            .backends
            .iter()
            .filter(|b| b.max_concurrent_calls.is_none())
            .count() as u32;
        let mut before = 0u32;
        for (i, b) in self.backends.iter().enumerate() {
            let Some(n) = b.max_concurrent_calls else {
                continue;
            };
            let key = ["backends".into(), i.into(), "max_concurrent_calls".into()];
            if n == 0 {
                return Err(src.error_at_path(&key, "must be at least 1"));
            }
            let need = before.saturating_add(n).saturating_add(unset);
            if need > pool {
                return Err(src.error_at_path(
                    &key,
                    format!(
                        "{n} calls for this backend, {before} for the backends before it and one \
                         at least for each of the {unset} without a value need {need} sandbox \
                         slots, more than [bridge] max_concurrent_calls = {pool}: lower this or \
                         raise max_concurrent_calls"
                    ),
                ));
            }
            before += n;
        }
        if unset > pool {
            return Err(src.error_at_path(
                &["bridge".into(), "max_concurrent_calls".into()],
                format!(
                    "{pool} sandbox slots cannot give each of the {unset} backends one of its own: \
                     raise it to at least {unset}"
                ),
            ));
        }
        Ok(())
    }

    fn validate_coalition(&self, src: &Source) -> Result<(), ConfigError> {
        let at = |path: &[Seg], msg: String| src.error_at_path(path, msg);
        let c = &self.coalition;
        if c.local == Some(true) && !(c.relays.is_empty() && c.bootstrap.is_empty()) {
            return Err(at(
                &["coalition".into(), "local".into()],
                "a local coalition runs its own relay: remove `relays` and `bootstrap`, \
                 or set local = false"
                    .into(),
            ));
        }
        if c.local == Some(false) && c.relays.is_empty() {
            return Err(at(
                &["coalition".into(), "relays".into()],
                "a coalition node needs at least one relay URL (or set local = true)".into(),
            ));
        }
        if c.is_local()
            && let Some(ip) = c.bind
            && !ip.is_loopback()
        {
            return Err(at(
                &["coalition".into(), "bind".into()],
                format!(
                    "a local coalition stays on this machine: bind it to a loopback address \
                     (127.0.0.1, the default), not {ip}; to reach other machines set \
                     `relays` and `local = false`"
                ),
            ));
        }
        if let Some(ip) = c.bind
            && ip.is_multicast()
        {
            return Err(at(
                &["coalition".into(), "bind".into()],
                format!("{ip} is a multicast address: give an address of this machine"),
            ));
        }
        for (i, r) in c.relays.iter().enumerate() {
            if let Err(msg) = compute_bridge_coalition::parse_relay_url(r) {
                return Err(at(&["coalition".into(), "relays".into(), i.into()], msg));
            }
        }
        for (i, b) in c.bootstrap.iter().enumerate() {
            if let Err(msg) = compute_bridge_coalition::parse_peer_addr(b) {
                return Err(at(&["coalition".into(), "bootstrap".into(), i.into()], msg));
            }
        }
        Ok(())
    }
}

impl BackendConfig {
    /// Where the component comes from.
    pub fn component_source(&self) -> ComponentSource {
        match self.component.strip_prefix("builtin:") {
            Some(name) => ComponentSource::Builtin(name.to_string()),
            None => ComponentSource::File(PathBuf::from(&self.component)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<BootConfig, ConfigError> {
        BootConfig::from_source(&Source::embedded("t.toml", text), &|k| {
            (k == "SECRET").then(|| "s3cret".to_string())
        })
    }

    const MIN: &str = "[[backends]]\nname = \"fake\"\ncomponent = \"builtin:aws\"\n";

    #[test]
    fn embedded_default_is_valid() {
        BootConfig::local().unwrap();
    }

    /// A throwaway key, only so the example's `${RACK1_SSH_KEY}` has a value.
    const EXAMPLE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDH1jXyIYJqGnpzaLQRW3tI5A+HyVVUitp7KS0S+SK73AAAAJjkFEV75BRF\newAAAAtzc2gtZWQyNTUxOQAAACDH1jXyIYJqGnpzaLQRW3tI5A+HyVVUitp7KS0S+SK73A\nAAAEDNKNEdcgoG2lc7dAf/35OvaqcUcANslpc1sRqstS1QpcfWNfIhgmoaenNotBFbe0jk\nD4fJVVSK2nspLRL5IrvcAAAAEWV4YW1wbGUtdGVzdC1vbmx5AQIDBA==\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn example_documents_a_valid_config() {
        let text = include_str!("../../../../config/example.toml");
        let cfg = BootConfig::from_source(&Source::embedded("example.toml", text), &|k| {
            (k == "RACK1_SSH_KEY").then(|| EXAMPLE_KEY.to_string())
        })
        .unwrap_or_else(|e| panic!("config/example.toml: {e}"));
        assert!(!cfg.backends.is_empty());
        // Without the variable it names the key to set.
        let e = BootConfig::from_source(&Source::embedded("example.toml", text), &|_| None)
            .unwrap_err();
        assert!(e.message.contains("RACK1_SSH_KEY"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = load(&format!("{MIN}colour = \"red\"\n")).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
    }

    /// The exact text an operator sees for each kind of broken config
    /// (file, line, column, key, message): moving the validation between
    /// crates must not change a word of it.
    #[test]
    fn broken_configs_are_refused_with_the_pinned_texts() {
        const KEY: &str =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";
        let ssh =
            |rest: &str| format!("{MIN}[backends.ssh.hosts.rack]\naddress = \"10.0.0.1\"\n{rest}");
        let cases: Vec<(&str, String)> = vec![
            ("unknown backend key", format!("{MIN}colour = \"red\"\n")),
            ("unknown section", format!("[bogus]\nx = 1\n{MIN}")),
            ("unknown bridge key", format!("[bridge]\nfoo = 1\n{MIN}")),
            ("no backends", "[bridge]\nconcurrency_cap = 4\n".into()),
            (
                "concurrency cap",
                format!("[bridge]\nconcurrency_cap = 0\n{MIN}"),
            ),
            (
                "swap rollback polls",
                format!("[bridge]\nswap_rollback_polls = 0\n{MIN}"),
            ),
            (
                "dashboard bind",
                format!("[dashboard]\nbind = \"0.0.0.0\"\n{MIN}"),
            ),
            (
                "tdx without mrtd",
                format!("[attestation]\nmode = \"tdx\"\n{MIN}"),
            ),
            (
                "bad mrtd",
                format!("[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"ab\"\n{MIN}"),
            ),
            (
                "relay",
                format!("[coalition]\nrelays = [\"not a url\"]\n{MIN}"),
            ),
            (
                "bootstrap",
                format!("[coalition]\nbootstrap = [\"abc@x\"]\n{MIN}"),
            ),
            (
                "local without relays",
                format!("[coalition]\nlocal = false\n{MIN}"),
            ),
            (
                "backend name",
                "[[backends]]\nname = \"Rack_1\"\ncomponent = \"builtin:aws\"\n".into(),
            ),
            ("duplicate name", format!("{MIN}{MIN}")),
            (
                "builtin name",
                "[[backends]]\nname = \"x\"\ncomponent = \"builtin:nope\"\n".into(),
            ),
            ("memory", format!("{MIN}memory_limit_mib = 0\n")),
            ("call timeout", format!("{MIN}call_timeout_sec = 0\n")),
            (
                "log budget",
                format!("{MIN}[backends.log]\nmax_bytes_per_call = 0\n"),
            ),
            (
                "http timeout",
                format!("{MIN}[backends.http]\ntimeout_sec = 0\n"),
            ),
            (
                "bad origin",
                format!("{MIN}[backends.http]\nallowed_hosts = [\"https://x.example/path\"]\n"),
            ),
            (
                "unknown http key",
                format!("{MIN}[backends.http]\nallowed = []\n"),
            ),
            (
                "ssh label",
                format!("{MIN}[backends.ssh.hosts.\"a b\"]\naddress = \"h\"\n"),
            ),
            ("ssh without user", ssh("")),
            ("ssh without host key", ssh("user = \"u\"\n")),
            (
                "ssh bad host key",
                ssh("user = \"u\"\nhost_key = \"nope\"\n"),
            ),
            (
                "ssh without key",
                ssh(&format!("user = \"u\"\nhost_key = \"{KEY}\"\n")),
            ),
            (
                "ssh bad private key",
                ssh(&format!(
                    "user = \"u\"\nhost_key = \"{KEY}\"\nprivate_key = \"${{SECRET}}\"\n"
                )),
            ),
            ("ssh unknown key", ssh("colour = 1\n")),
            (
                "reserved config key",
                format!("{MIN}[backends.config]\n\"bridge.x\" = \"1\"\n"),
            ),
            (
                "missing env",
                format!("{MIN}[backends.config]\ntoken = \"${{NOPE}}\"\n"),
            ),
            (
                "rates of no backend",
                format!("{MIN}[rates.other]\ncore_hour_usd = 1.0\n"),
            ),
            (
                "negative rate",
                format!("{MIN}[rates.fake]\ncore_hour_usd = 0.05\nram_gib_hour_usd = -1.0\n"),
            ),
            (
                "call slots",
                format!("[bridge]\nmax_concurrent_calls = 2\n{MIN}max_concurrent_calls = 3\n"),
            ),
        ];
        let mut out = String::new();
        for (name, text) in cases {
            let e = load(&text).unwrap_err();
            out.push_str(&format!("== {name}\n{e}\n"));
        }
        let expected = include_str!("errors.pins");
        if out != expected {
            let seen = std::env::temp_dir().join("config-errors.pins.seen");
            std::fs::write(&seen, &out).unwrap();
            panic!(
                "a config error's text differs from config/errors.pins (seen: {})",
                seen.display()
            );
        }
    }

    #[test]
    fn bad_origin_names_its_index() {
        let e = load(&format!(
            "{MIN}[backends.http]\nallowed_hosts = [\"https://ok.example\", \"https://x.example/path\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backends[0].http.allowed_hosts[1]"));
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn env_is_expanded_and_missing_env_is_located() {
        let c = load(&format!(
            "{MIN}[backends.config]\ntoken = \"${{SECRET}}\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.backends[0].sections.config["token"].as_str(),
            Some("s3cret")
        );
        let e = load(&format!("{MIN}[backends.config]\ntoken = \"${{NOPE}}\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backends[0].config.token"));
        assert!(e.message.contains("`NOPE` is not set"));
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn negative_rates_are_refused() {
        let e = load(&format!(
            "{MIN}[rates.fake]\ncore_hour_usd = 0.05\nram_gib_hour_usd = -1.0\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rates.fake.ram_gib_hour_usd"));
        assert!(e.message.contains("non-negative"), "{e}");
    }

    #[test]
    fn coalition_keys_are_checked_where_they_are_written() {
        let c = load(MIN).unwrap();
        assert!(c.coalition.is_local(), "no relays means a local coalition");
        let c = load(&format!(
            "[coalition]\nrelays = [\"http://127.0.0.1:3340/\"]\n{MIN}"
        ))
        .unwrap();
        assert!(!c.coalition.is_local());
        let e = load(&format!("[coalition]\nrelays = [\"not a url\"]\n{MIN}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("coalition.relays[0]"), "{e}");
        let e = load(&format!("[coalition]\nbootstrap = [\"abc@x\"]\n{MIN}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("coalition.bootstrap[0]"), "{e}");
        let e = load(&format!(
            "[coalition]\nlocal = true\nrelays = [\"http://127.0.0.1:1/\"]\n{MIN}"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("coalition.local"), "{e}");
        let e = load(&format!("[coalition]\nlocal = false\n{MIN}")).unwrap_err();
        assert!(e.message.contains("at least one relay"), "{e}");
    }

    #[test]
    fn call_slots_are_shared_out_and_must_fit_the_pool() {
        let two = format!(
            "[bridge]\nmax_concurrent_calls = 10\n{MIN}\
             [[backends]]\nname = \"b\"\ncomponent = \"builtin:aws\"\n"
        );
        assert_eq!(load(&two).unwrap().call_slots(), [5, 5]);
        let set = two.replace("name = \"b\"", "name = \"b\"\nmax_concurrent_calls = 8");
        assert_eq!(load(&set).unwrap().call_slots(), [2, 8]);
        // Eight for one leaves the other one; ten leaves it none.
        let over = two.replace("name = \"b\"", "name = \"b\"\nmax_concurrent_calls = 10");
        let e = load(&over).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backends[1].max_concurrent_calls"));
        assert_eq!(e.line, Some(8), "{e}");
        assert!(
            e.message.contains("need 11 sandbox slots")
                && e.message.contains("max_concurrent_calls = 10"),
            "{e}"
        );
    }

    #[test]
    fn a_test_backend_named_as_a_builtin_is_refused_with_where_its_file_is() {
        let text = "[bridge]\nconcurrency_cap = 2\n\n[[backends]]\nname = \"demo\"\ncomponent = \"builtin:fake\"\n";
        let e = load(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backends[0].component"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
        let shown = e.to_string();
        assert!(shown.contains("t.toml:6:"), "{shown}");
        assert!(
            shown.contains("`builtin:fake` is a test backend"),
            "{shown}"
        );
        assert!(
            shown.contains(compute_bridge_testkit::components::FAKE),
            "{shown}"
        );
        assert!(!component::builtin_names().contains(&"fake"));
        // Its file loads like any other component.
        let e = load(&format!(
            "[[backends]]\nname = \"demo\"\ncomponent = {:?}\n",
            compute_bridge_testkit::components::FAKE
        ));
        assert!(e.is_ok(), "{e:?}");
    }

    #[test]
    fn a_bind_address_is_kept_and_a_local_coalition_stays_on_loopback() {
        let c = load(MIN).unwrap();
        assert_eq!(c.coalition.node_bind(), Some(IpAddr::from([127, 0, 0, 1])));
        let c = load(&format!(
            "[coalition]\nrelays = [\"http://127.0.0.1:3340/\"]\nbind = \"10.0.0.5\"\n{MIN}"
        ))
        .unwrap();
        assert_eq!(c.coalition.node_bind(), Some(IpAddr::from([10, 0, 0, 5])));
        let c = load(&format!(
            "[coalition]\nrelays = [\"http://127.0.0.1:3340/\"]\n{MIN}"
        ))
        .unwrap();
        assert_eq!(c.coalition.node_bind(), None, "every interface");
        let c = load(&format!("[coalition]\nbind = \"127.0.0.2\"\n{MIN}")).unwrap();
        assert_eq!(c.coalition.node_bind(), Some(IpAddr::from([127, 0, 0, 2])));
        for text in [
            format!("[coalition]\nbind = \"10.0.0.5\"\n{MIN}"),
            format!("[coalition]\nlocal = true\nbind = \"::\"\n{MIN}"),
        ] {
            let e = load(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("coalition.bind"), "{e}");
            assert!(e.message.contains("loopback"), "{e}");
        }
    }

    #[test]
    fn dashboard_must_be_loopback() {
        let e = load(&format!("[dashboard]\nbind = \"0.0.0.0\"\n{MIN}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dashboard.bind"));
        assert!(e.message.contains("127.0.0.1 only"), "{e}");
    }
}
