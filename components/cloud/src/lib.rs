//! What the cloud backends share, so gcp and azure do not each carry a
//! copy:
//!
//! - [`catalog`]: the operator's catalog of machine types (GCP) or VM sizes
//!   (Azure), the fields its entries share, and the choice of the cheapest
//!   entry that fits a grant;
//! - [`token`]: an OAuth 2.0 access-token answer, and [`token::Bearer`],
//!   which keeps the token in the host's cache and sends requests with it;
//! - [`tags`]: the names of the tags (labels) put on every resource, as
//!   each cloud spells them;
//! - [`allocation`]: what a VM was allocated, carried in its instance
//!   handle, and usage as allocation × time;
//! - [`EXIT_UNKNOWN`], the exit code of a workload whose VM stopped.
//!
//! Everything here runs over the SDK's [`Host`](compute_bridge_sdk::Host),
//! in the sandbox and in native tests alike. Keeps nothing itself: the
//! token lives in the host's cache, for its lifetime less a margin.

#![warn(missing_docs)]

pub mod allocation;
pub mod catalog;
pub mod tags;
pub mod token;

/// Exit code reported when the VM stopped: the cloud knows the VM powered
/// off, not the container's exit status.
pub const EXIT_UNKNOWN: i32 = -1;

/// The `[backends.config]` table of the first backend in the ` ```toml `
/// example of a crate's docs (`crate_source`, the crate's `lib.rs` read
/// with `include_str!`), as JSON, after replacing each `(from, to)` in the
/// example's text: what a backend's test of its documented example parses.
#[cfg(any(test, feature = "doc-example"))]
pub fn documented_config(crate_source: &str, fill: &[(&str, &str)]) -> serde_json::Value {
    let docs: String = crate_source
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mut block = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml example in the crate docs")
        .to_string();
    for (from, to) in fill {
        block = block.replace(from, to);
    }
    let boot: toml::Table = toml::from_str(&block).expect("the example is TOML");
    let config = &boot["backends"].as_array().expect("a [[backends]] entry")[0]["config"];
    serde_json::to_value(config).expect("TOML values are JSON values")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_config_is_the_first_backends_table_with_the_blanks_filled() {
        let src = "//! Intro.\n//!\n//! ```toml\n//! [[backends]]\n//! name = \"x\"\n\
                   //! [backends.config]\n//! project = \"...\"\n//! zones = [\"a\"]\n//! ```\n\
                   //!\n//! ```toml\n//! [[backends]]\n//! [backends.config]\n//! other = 1\n//! ```\n";
        let cfg = super::documented_config(src, &[("...", "p-1")]);
        assert_eq!(cfg, serde_json::json!({"project": "p-1", "zones": ["a"]}));
    }
}
