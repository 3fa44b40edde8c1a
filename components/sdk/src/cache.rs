//! A small cache in host memory, private to this backend, for credentials
//! such as OAuth access tokens.
//!
//! Every call runs in a fresh instance, so a token fetched in one call is
//! gone by the next unless it is kept here. The host keeps entries in
//! memory only, enforces their time-to-live and may drop any of them at any
//! time: always be ready to fetch the value again.
//!
//! Never put grant data here (requests, workloads, instances): what a
//! backend must remember about an instance belongs in its handle.
//!
//! ```text
//! let token = match cache::get_string("oauth-token") {
//!     Some(t) => t,
//!     None => {
//!         let (t, expires_in) = fetch_token()?;
//!         cache::set("oauth-token", t.as_bytes(), expires_in.saturating_sub(60));
//!         t
//!     }
//! };
//! ```

use crate::bindings::compute_bridge::backend::cache as raw;

/// The bytes under `key`, unless they expired or the host dropped them.
pub fn get(key: &str) -> Option<Vec<u8>> {
    raw::get(key)
}

/// The value under `key` as UTF-8 text (`None` if absent or not UTF-8).
pub fn get_string(key: &str) -> Option<String> {
    get(key).and_then(|v| String::from_utf8(v).ok())
}

/// Keep `value` under `key` for `ttl_seconds` (the host caps it at a day).
/// A ttl of 0 removes the key.
pub fn set(key: &str, value: &[u8], ttl_seconds: u32) {
    raw::set(key, value, ttl_seconds);
}

/// Forget `key` (e.g. a token the server has stopped accepting).
pub fn remove(key: &str) {
    raw::set(key, &[], 0);
}
