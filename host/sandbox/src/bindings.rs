//! Host-side bindings generated from `wit/` (the `backend` world).
//!
//! The standard interfaces the world imports are not generated here: `with`
//! maps `wasi:http` to `wasmtime-wasi-http`'s bindings and `wasi:io` and
//! `wasi:clocks` (which `wasi:http/types` uses) to `wasmtime-wasi`'s, so
//! their resources are the ones those crates serve. `wasi:logging` and
//! `wasi:config/store` are generated here and served by our `log` and
//! `config` capabilities. `ssh.exec` is async on the host (it waits on the
//! network); every other import of ours is a plain function. Exports are
//! async so a call can be bounded by epoch interruption and cancelled at
//! its deadline.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "compute-bridge:backend/backend@0.3.0",
    imports: {
        "compute-bridge:backend/ssh.exec": async,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    additional_derives: [PartialEq, Eq],
});

pub use self::compute_bridge::backend::{cache, ssh, types};
pub use self::exports::compute_bridge::backend::provider;
pub use self::wasi::logging::logging;
