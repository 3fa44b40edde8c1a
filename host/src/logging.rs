//! The log filter of `compute-bridge`: which crates' lines reach the
//! operator's log, and at what level.
//!
//! Our own targets (`compute_bridge`, and `component` for the backends' own
//! lines through the log capability) log at the level the operator asks for
//! (`info` by default). Their lines were written to name no requester: no
//! peer id, request id, reply key, workload key, image, region asked for or
//! settlement amount (the provider loop's module doc says what it logs
//! instead). Third-party crates (mosaik, iroh, iroh-relay, russh, hyper,
//! reqwest, wasmtime, redb…) were not: mosaik logs requesters' peer ids
//! at `info` and `warn`, iroh and its relay log remote endpoint ids and IP
//! addresses from `debug` on, and at `trace` the HTTP and SSH clients log
//! what they send (which can include a request id a backend puts in a tag
//! or a script). So they stay at `error` whatever bare level is asked for;
//! an operator who wants more from one names it (`debug,iroh=trace`) and
//! gets what docs/dashboard.md says such a line can show.
//!
//! This module never keeps anything; it only builds the filter.

use tracing_subscriber::EnvFilter;

/// Targets whose lines are ours and name no requester.
pub const OWN_TARGETS: &[&str] = &["compute_bridge", "component"];

/// The level every other crate is held at unless a directive names it.
pub const THIRD_PARTY_LEVEL: &str = "error";

/// Our targets' level when none is asked for.
pub const DEFAULT_LEVEL: &str = "info";

/// The filter directives for `spec`, the value of `COMPUTE_BRIDGE_LOG` (or
/// `RUST_LOG`) if set. A bare level (`debug`) sets our targets' level only;
/// a directive that names a target (`mosaik=debug`, `iroh::relay=trace`)
/// is kept as written, so third-party output is opt-in by name.
pub fn directives(spec: Option<&str>) -> String {
    let mut level = DEFAULT_LEVEL.to_string();
    let mut named: Vec<&str> = Vec::new();
    for d in spec
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        if is_level(d) {
            level = d.to_ascii_lowercase();
        } else {
            named.push(d);
        }
    }
    let names_target = |t: &str| {
        named
            .iter()
            .any(|d| d.split_once('=').map_or(*d, |(target, _)| target) == t)
    };
    let mut out = vec![THIRD_PARTY_LEVEL.to_string()];
    out.extend(
        OWN_TARGETS
            .iter()
            .filter(|t| !names_target(t))
            .map(|t| format!("{t}={level}")),
    );
    out.extend(named.iter().map(|d| d.to_string()));
    out.join(",")
}

/// The filter for `spec` (see [`directives`]); a spec that does not parse
/// falls back to the default, with the reason.
pub fn filter(spec: Option<&str>) -> (EnvFilter, Option<String>) {
    match EnvFilter::try_new(directives(spec)) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new(directives(None)),
            Some(format!(
                "COMPUTE_BRIDGE_LOG={:?} is not a log filter ({e}); logging at {DEFAULT_LEVEL}",
                spec.unwrap_or_default()
            )),
        ),
    }
}

fn is_level(d: &str) -> bool {
    ["trace", "debug", "info", "warn", "error", "off"]
        .iter()
        .any(|l| d.eq_ignore_ascii_case(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_ours_only_and_third_parties_stay_at_error() {
        assert_eq!(directives(None), "error,compute_bridge=info,component=info");
        assert_eq!(
            directives(Some("debug")),
            "error,compute_bridge=debug,component=debug"
        );
        assert_eq!(
            directives(Some("TRACE")),
            "error,compute_bridge=trace,component=trace"
        );
    }

    #[test]
    fn a_named_crate_is_opt_in_and_a_named_own_target_wins() {
        assert_eq!(
            directives(Some("info,iroh::address_lookup=error,mosaik=debug")),
            "error,compute_bridge=info,component=info,iroh::address_lookup=error,mosaik=debug"
        );
        assert_eq!(
            directives(Some("warn,compute_bridge=trace")),
            "error,component=warn,compute_bridge=trace"
        );
    }

    #[test]
    fn every_result_parses_and_a_bad_spec_falls_back_with_a_reason() {
        for spec in [None, Some("debug"), Some("info,mosaik=trace"), Some("")] {
            let (_, warning) = filter(spec);
            assert!(warning.is_none(), "{spec:?}: {warning:?}");
        }
        let (f, warning) = filter(Some("mosaik=loud"));
        assert!(warning.unwrap().contains("mosaik=loud"));
        assert_eq!(f.to_string(), EnvFilter::new(directives(None)).to_string());
    }
}
