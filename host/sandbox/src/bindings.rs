//! Host-side bindings generated from `wit/` (the `backend` world).
//!
//! `http.send` and `ssh.exec` are async on the host (they wait on the
//! network); every other import is a plain function. Exports are async so a
//! call can be bounded by epoch interruption and cancelled at its deadline.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "compute-bridge:backend/backend@0.2.0",
    imports: {
        "compute-bridge:backend/http.send": async,
        "compute-bridge:backend/ssh.exec": async,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

pub use self::compute_bridge::backend::{cache, http, log, ssh, types};
pub use self::exports::compute_bridge::backend::provider;
