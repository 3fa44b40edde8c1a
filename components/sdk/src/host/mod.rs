//! The seam between a backend's logic and the host: [`Host`].
//!
//! A backend written as a *core* over `H: Host` runs unchanged in two
//! places: inside the sandbox over [`WasmHost`] (the host's capabilities,
//! through this crate's wrappers), and natively in its own tests over
//! [`MemoryHost`] (scripted or forwarding HTTP, scripted SSH, captured
//! logs, a TTL cache and a manual clock), so a core is tested with
//! `cargo test -p <crate>` and no sandbox.
//!
//! The trait names what the WIT world imports for a backend to use
//! (`wasi:http/outgoing-handler`, `ssh`, `wasi:logging/logging`, `cache`)
//! plus the two WASI things a backend reads (the wall clock) or does
//! (wait). Configuration is not on it: the wasm glue reads
//! [`config`](crate::config) once and hands the core a typed struct.
//!
//! Nothing here keeps grant data: [`MemoryHost`] records what a test sent
//! so the test can assert on it, and is dropped with the test.

use crate::http::{HttpError, Request, Response};
use crate::log::Level;
use crate::ssh::{ExecOutput, SshError};

#[cfg(not(target_arch = "wasm32"))]
mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub use memory::{LogRecord, MemoryHost, SshCall};

/// What a backend core needs from its surroundings: the host's imports, one
/// method each.
pub trait Host {
    /// Send one request and wait for the whole response (over
    /// `WasmHost`: [`Request::send`], through `wasi:http`, following
    /// redirects).
    fn send(&self, req: &Request) -> Result<Response, HttpError>;
    /// Labels of the SSH hosts this backend was given, in configuration
    /// order (`ssh.hosts`).
    fn ssh_hosts(&self) -> Vec<String>;
    /// Run `command` on the host labelled `host`, feeding it `stdin`
    /// (`ssh.exec`).
    fn ssh_exec(&self, host: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError>;
    /// One record for the operator's log (over `WasmHost`:
    /// [`log::with_fields`](crate::log::with_fields), through
    /// `wasi:logging`). Never pass secrets or anything about the requester.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
    /// The bytes cached under `key`, unless they expired or were dropped
    /// (`cache.get`).
    fn cache_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Cache `value` under `key` for `ttl_seconds`; 0 removes the key
    /// (`cache.set`).
    fn cache_set(&self, key: &str, value: &[u8], ttl_seconds: u32);
    /// Unix seconds now.
    fn now(&self) -> u64;
    /// Wait `secs` seconds.
    fn sleep(&self, secs: u64);
}

/// A reference to a host is a host, so a core may hold `&H` or own `H`.
impl<H: Host + ?Sized> Host for &H {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        (**self).send(req)
    }
    fn ssh_hosts(&self) -> Vec<String> {
        (**self).ssh_hosts()
    }
    fn ssh_exec(&self, host: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        (**self).ssh_exec(host, command, stdin)
    }
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        (**self).log(level, message, fields)
    }
    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        (**self).cache_get(key)
    }
    fn cache_set(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        (**self).cache_set(key, value, ttl_seconds)
    }
    fn now(&self) -> u64 {
        (**self).now()
    }
    fn sleep(&self, secs: u64) {
        (**self).sleep(secs)
    }
}

/// The host's capabilities as seen from inside the sandbox: each method is
/// the matching wrapper of this crate ([`http`](crate::http),
/// [`ssh`](crate::ssh), [`log`](crate::log), [`cache`](crate::cache)), the
/// clock is WASI's, and `sleep` blocks the call (the host's call deadline
/// still applies).
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

#[cfg(target_arch = "wasm32")]
impl Host for WasmHost {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        req.send_ref()
    }
    fn ssh_hosts(&self) -> Vec<String> {
        crate::ssh::hosts()
    }
    fn ssh_exec(&self, host: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        crate::ssh::exec_with_stdin(host, command, stdin)
    }
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        crate::log::with_fields(level, message, fields)
    }
    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        crate::cache::get(key)
    }
    fn cache_set(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        crate::cache::set(key, value, ttl_seconds)
    }
    fn now(&self) -> u64 {
        crate::now_unix()
    }
    fn sleep(&self, secs: u64) {
        std::thread::sleep(std::time::Duration::from_secs(secs))
    }
}
