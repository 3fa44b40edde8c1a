//! What a backend component may import and must export, and how much of
//! the sandbox one instance of it may take, checked before it is ever
//! instantiated (at load, and by `compute-bridge components inspect`).
//!
//! The counts ([`MAX_MEMORIES`], [`MAX_TABLES`], [`MAX_CORE_INSTANCES`]) are
//! also the pooling allocator's limits per component, so wasmtime refuses a
//! component past them when it compiles it; [`explain_pool_refusal`] turns
//! that refusal into the same reason this module gives.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The interface every backend exports.
pub const PROVIDER_EXPORT: &str = concat!(our_interface!("provider"), "0");

/// The world a conforming component targets.
pub const WORLD: &str = concat!(our_interface!("backend"), "0");

/// The version of the `compute-bridge:backend` WIT package this host
/// loads, and what it changed from the one before (`wit/backend.wit`).
pub const WIT_VERSION: &str = concat!(wit_series!(), "0");
const WIT_CHANGE: &str = "0.3.0 replaced our http and log with wasi:http and wasi:logging";

/// The version of `compute-bridge:backend` that `name` (an import or
/// export) belongs to, when it is not one this host loads ([`wit_series!`]).
fn foreign_version(name: &str) -> Option<&str> {
    let (_, version) = name
        .strip_prefix("compute-bridge:backend/")?
        .split_once('@')?;
    (!version.starts_with(wit_series!())).then_some(version)
}

/// Why a component built for `version` of the WIT does not load, and the fix.
fn built_for(version: &str) -> String {
    format!(
        "was built for compute-bridge:backend@{version}; this bridge loads \
         compute-bridge:backend@{WIT_VERSION} only ({WIT_CHANGE}): rebuild it against the \
         {WIT_VERSION} WIT in wit/ (or compute-bridge-sdk of this release)"
    )
}

/// Linear memories one instance of a backend may have. A Rust
/// `wasm32-wasip2` backend has exactly one, and so has a componentize-py
/// 0.25.1 backend (its fourteen core modules share CPython's); the
/// backend's `memory_limit_mib` is one budget for the whole component, and a
/// second memory is only room to get around it.
pub const MAX_MEMORIES: u32 = 1;
/// Tables one instance may have (a Rust backend has two: its own and the
/// one `wit-component` adds for its import shims; a componentize-py 0.25.1
/// backend has two as well: CPython's indirect-function table and the
/// shims').
pub const MAX_TABLES: u32 = 4;
/// Core module instances one instance may have (a Rust backend has three; a
/// componentize-py 0.25.1 backend fourteen: CPython, libc, its glue, the
/// WASI adapter and their shims, dynamically linked). Sixteen leaves room
/// for two more, not for a second runtime.
pub const MAX_CORE_INSTANCES: u32 = 16;

/// Why a backend may have no more than that, for refusals.
pub const WHY_ONE_MEMORY: &str = "a backend runs in one linear memory (a Rust wasm32-wasip2 \
     backend has exactly one): memory_limit_mib is one budget for the whole component, and \
     every further memory, table or core module would only be room around it";

/// Import name prefixes every backend may use, and why; the capabilities
/// add theirs ([`crate::capabilities::IMPORTS`]). The WASI ones are what
/// Rust's standard library and language runtimes (componentize-py's
/// CPython) link; they are all linked and grant nothing ([`crate::wasi`]).
const BASE: &[(&str, &str)] = &[
    (our_interface!("types"), "contract types"),
    ("wasi:io/", "streams for the standard library"),
    ("wasi:clocks/", "clocks"),
    ("wasi:random/", "randomness"),
    (
        "wasi:cli/environment@",
        "an empty environment, no arguments",
    ),
    ("wasi:cli/exit@", "exit"),
    ("wasi:cli/stdin@", "empty standard input"),
    ("wasi:cli/stdout@", "standard output (discarded)"),
    ("wasi:cli/stderr@", "standard error (kept for trap reports)"),
    ("wasi:cli/terminal-", "terminal queries (never a terminal)"),
    (
        "wasi:filesystem/",
        "linked for language runtimes: no directory is preopened",
    ),
    (
        "wasi:sockets/",
        "linked for language runtimes: every bind, connect and lookup is refused",
    ),
];

/// Why well-known interfaces are refused, for a message that helps.
const REFUSED: &[(&str, &str)] = &[
    (
        "wasi:http/incoming-handler",
        "a backend serves no HTTP: it makes outbound requests \
         (wasi:http/outgoing-handler) and exports the provider interface only",
    ),
    (
        "wasi:http/",
        "only wasi:http/outgoing-handler and wasi:http/types of WASI 0.2 are offered",
    ),
    (
        "wasi:keyvalue/",
        "no key-value store is offered: use compute-bridge:backend/cache for credentials",
    ),
    (
        "wasi:cli/",
        "of wasi:cli only the environment, exit, standard streams and terminal queries are linked",
    ),
];

/// Why an interface export other than [`PROVIDER_EXPORT`] is refused. A
/// plain-named export (`exports`, which componentize-py adds for its own
/// start-up) is let be: no standard world serves one, and the host never
/// calls anything but the provider interface.
const ONE_EXPORT: &str = "a backend exports the provider interface and nothing else: \
     the host calls nothing else, and serves nothing (no wasi:cli/run, no wasi:http/incoming-handler)";

/// One import and the verdict on it.
#[derive(Debug, Clone)]
pub struct Import {
    /// Interface or function name.
    pub name: String,
    /// `None` if allowed; the reason it is refused otherwise.
    pub refused: Option<String>,
    /// What it is for, when allowed.
    pub purpose: &'static str,
}

/// What a component imports and exports, and whether it may be loaded.
#[derive(Debug, Clone)]
pub struct Report {
    /// Imports in declaration order.
    pub imports: Vec<Import>,
    /// Export names.
    pub exports: Vec<String>,
    /// Everything that stops it from loading.
    pub violations: Vec<String>,
    /// What one instance takes from the sandbox (`None`: it imports core
    /// modules, so it cannot be told before instantiation).
    pub resources: Option<Resources>,
}

/// What one instance of a component takes from the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Linear memories, across all its core modules.
    pub memories: u32,
    /// Tables, across all its core modules.
    pub tables: u32,
}

impl Report {
    /// True if the component targets the backend world.
    pub fn conforms(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Check `component`'s imports and exports against the backend world.
pub fn check(engine: &Engine, component: &Component) -> Report {
    let ty = component.component_type();
    let mut imports = Vec::new();
    let mut violations = Vec::new();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    // Of another version of the contract: one violation says so, with the
    // fix, before anything else.
    let version = (ty.imports(engine).map(|(n, _)| n))
        .chain(exports.iter().map(String::as_str))
        .find_map(foreign_version)
        .map(str::to_string);
    if let Some(v) = &version {
        violations.push(built_for(v));
    }
    for (name, item) in ty.imports(engine) {
        let verdict = interface_verdict(name);
        let refused = match &verdict {
            Ok(_) if matches!(item.ty, ComponentItem::ComponentInstance(_)) => None,
            Ok(_) => Some("only interface imports are allowed".to_string()),
            Err(why) => Some(why.clone()),
        };
        if let Some(why) = &refused {
            violations.push(format!("imports {name}: {why}"));
        }
        imports.push(Import {
            name: name.to_string(),
            refused,
            purpose: verdict.unwrap_or(""),
        });
    }
    if version.is_none() && !exports.iter().any(|e| e == PROVIDER_EXPORT) {
        violations.push(format!(
            "does not export {PROVIDER_EXPORT}: build it against the WIT in wit/ (world `backend`)"
        ));
    }
    if version.is_none() {
        for e in exports
            .iter()
            .filter(|e| *e != PROVIDER_EXPORT && e.contains(':'))
        {
            violations.push(format!("exports {e}: {ONE_EXPORT}"));
        }
    }
    let resources = component.resources_required().map(|r| Resources {
        memories: r.num_memories,
        tables: r.num_tables,
    });
    match &resources {
        None => violations.push(
            "imports core modules, so what it allocates cannot be known before it runs: \
             a backend defines its modules itself"
                .into(),
        ),
        Some(r) => {
            if r.memories > MAX_MEMORIES {
                violations.push(format!(
                    "has {} linear memories, at most {MAX_MEMORIES} allowed: {WHY_ONE_MEMORY}",
                    r.memories
                ));
            }
            if r.tables > MAX_TABLES {
                violations.push(format!(
                    "has {} tables, at most {MAX_TABLES} allowed: {WHY_ONE_MEMORY}",
                    r.tables
                ));
            }
        }
    }
    Report {
        imports,
        exports,
        violations,
        resources,
    }
}

/// Whether an interface named `name` may be imported: what it is for, or
/// why not.
fn interface_verdict(name: &str) -> Result<&'static str, String> {
    let allowed = BASE
        .iter()
        .chain(crate::capabilities::IMPORTS.iter().copied().flatten())
        .find(|(p, _)| name.starts_with(p));
    match allowed {
        Some((_, purpose)) => Ok(*purpose),
        None if foreign_version(name).is_some() => Err(format!(
            "of another version of the contract: rebuild against the {WIT_VERSION} WIT"
        )),
        None => Err(REFUSED
            .iter()
            .find(|(p, _)| name.starts_with(p))
            .map(|(_, why)| why.to_string())
            .unwrap_or_else(|| format!("not part of the {WORLD} world"))),
    }
}

/// If `e` is the pooling allocator refusing a component at compile time
/// (more memories, tables or core instances than [`MAX_MEMORIES`],
/// [`MAX_TABLES`], [`MAX_CORE_INSTANCES`]), the refusal with its reason.
pub fn explain_pool_refusal(e: &anyhow::Error) -> Option<String> {
    let refused = e
        .chain()
        .map(ToString::to_string)
        .find(|m| m.contains("in the pooling allocator"))?;
    Some(format!(
        "{}; {WHY_ONE_MEMORY} (at most {MAX_MEMORIES} memory, {MAX_TABLES} tables and \
         {MAX_CORE_INSTANCES} core instances per component)",
        refused.replace(" in the pooling allocator", " of the sandbox")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WIT this host is built from, its `bindgen!` world and the
    /// version the policy checks are one version: bumping `wit/backend.wit`
    /// without `wit_series!` (or the other way round) fails here instead of
    /// refusing every component at load.
    #[test]
    fn the_wit_the_bindings_and_the_policy_name_one_version() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let wit = std::fs::read_to_string(format!("{root}/wit/backend.wit")).unwrap();
        assert!(
            wit.lines()
                .any(|l| l.trim() == format!("package compute-bridge:backend@{WIT_VERSION};")),
            "wit/backend.wit is not compute-bridge:backend@{WIT_VERSION}"
        );
        let bindings =
            std::fs::read_to_string(format!("{root}/host/sandbox/src/bindings.rs")).unwrap();
        assert!(
            bindings.contains(&format!("world: \"{WORLD}\"")),
            "bindings.rs does not bind {WORLD}"
        );
        assert_eq!(
            PROVIDER_EXPORT,
            format!("compute-bridge:backend/provider@{WIT_VERSION}")
        );
        assert_eq!(foreign_version(PROVIDER_EXPORT), None);
        assert_eq!(
            foreign_version("compute-bridge:backend/types@0.1.0"),
            Some("0.1.0")
        );
        for (prefix, _) in BASE.iter().chain(
            crate::capabilities::IMPORTS
                .iter()
                .flat_map(|list| list.iter()),
        ) {
            if let Some(rest) = prefix.strip_prefix("compute-bridge:backend/") {
                assert!(
                    rest.ends_with(&format!("@{}", wit_series!())),
                    "{prefix} is not in the series this host loads"
                );
            }
        }
    }

    /// What a Rust backend and a language runtime import is linked; what a
    /// backend never needs is refused with a reason; a component of an
    /// older contract is told its version and the fix.
    #[test]
    fn imports_a_runtime_links_pass_and_the_rest_is_refused_with_a_reason() {
        for name in [
            "wasi:http/outgoing-handler@0.2.12",
            "wasi:http/types@0.2.0",
            "wasi:logging/logging@0.1.0-draft",
            "wasi:config/store@0.2.0-rc.1",
            "wasi:filesystem/types@0.2.0",
            "wasi:filesystem/preopens@0.2.12",
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/ip-name-lookup@0.2.0",
            "wasi:cli/environment@0.2.0",
            "wasi:cli/terminal-stdout@0.2.0",
            "wasi:random/insecure-seed@0.2.0",
            concat!(our_interface!("ssh"), "0"),
            concat!(our_interface!("cache"), "0"),
            concat!(our_interface!("types"), "0"),
        ] {
            assert!(interface_verdict(name).is_ok(), "{name} refused");
        }
        for (name, why) in [
            (
                "wasi:http/incoming-handler@0.2.12",
                "a backend serves no HTTP",
            ),
            ("wasi:http/handler@0.3.0", "only wasi:http/outgoing-handler"),
            (
                "wasi:keyvalue/store@0.2.0-draft",
                "compute-bridge:backend/cache",
            ),
            ("wasi:cli/run@0.2.0", "of wasi:cli only"),
            (
                "compute-bridge:backend/http@0.2.0",
                "another version of the contract",
            ),
            (
                "compute-bridge:backend/log@0.2.0",
                "another version of the contract",
            ),
            ("acme:secrets/vault@1.0.0", "not part of the"),
        ] {
            let e = interface_verdict(name).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        for (old, name) in [
            ("0.2.0", "compute-bridge:backend/provider@0.2.0"),
            ("0.1.0", "compute-bridge:backend/http@0.1.0"),
        ] {
            assert_eq!(foreign_version(name), Some(old));
            assert_eq!(
                built_for(old),
                format!(
                    "was built for compute-bridge:backend@{old}; this bridge loads \
                     compute-bridge:backend@0.3.0 only (0.3.0 replaced our http and log with \
                     wasi:http and wasi:logging): rebuild it against the 0.3.0 WIT in wit/ \
                     (or compute-bridge-sdk of this release)"
                )
            );
        }
    }
}
