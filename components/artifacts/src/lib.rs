//! Paths and bytes of the backend components, built for `wasm32-wasip2` by
//! this crate's build script.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
