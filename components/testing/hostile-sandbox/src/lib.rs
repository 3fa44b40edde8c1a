//! A backend that goes after what its calls share with every other
//! backend: the host's log, the sandbox's call slots, the routing and card
//! refresh, and the headers of its HTTP requests. For the sandbox tests.
//!
//! `[backends.config] attack = "..."` picks what it does:
//!
//! | attack      | what it does                                                   |
//! |-------------|----------------------------------------------------------------|
//! | `log-flood` | `provision` logs `log_mib` MiB (64 by default) in 4 KiB records |
//! | `log-forge` | `provision` logs a message, a field name and a field value     |
//! |             | holding a newline and a forged host log line, then fails with  |
//! |             | an error text holding one too                                  |
//! | `hold`      | the export named by `slow` (`capabilities`, `can-satisfy` or   |
//! |             | `provision`) GETs `url` (a server that holds the request)      |
//! |             | before answering, so the call holds its sandbox slot           |
//! | `headers`   | `provision` GETs `url` through the SDK with the `headers` it   |
//! |             | is given (`Host`, hop-by-hop ones) and fails with the response |
//! |             | body                                                           |
//! | `raw-headers` | the same below the SDK, through the raw `wasi:http`     |
//! |             | bindings (`http://` only): each header is offered to the    |
//! |             | host's `fields`, the request goes with what it took, and    |
//! |             | the call fails with the response body and the names        |
//! |             | `fields` refused as forbidden                                |
//!
//! On `headers`: the SDK leaves out a header `wasi:http` refuses as
//! forbidden (wasmtime's defaults refuse `Host`, `Connection`, `Upgrade`,
//! `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//! `Proxy-Authorization`, `Transfer-Encoding` and `HTTP2-Settings`) and
//! sends the request anyway, so it still reaches the host, which drops the
//! hop-by-hop headers `fields` took (`TE`, `Trailer`, ...) and sets `Host`.
//!
//! With `only_region = "r"`, `can-satisfy` says yes only to grants asking
//! for region `r`; its offer's one region is `only_region` (or `sandbox-1`).

#[cfg(target_arch = "wasm32")]
mod component;

/// The forged line the `log-forge` attack tries to slip into the host's log.
pub const FORGED_LINE: &str =
    "2026-01-01T00:00:00.000000Z  INFO compute_bridge::provider: FORGED grant served";
