//! Paths of the test components, built for `wasm32-wasip2` by this crate's
//! build script: the SDK-written ones (`FAKE`, `HOSTILE`,
//! `HOSTILE_IMPORTS`, `HOSTILE_SANDBOX`) and the hand-made attackers no
//! SDK can express (`CRAFTED_MANY_MEMORIES`, `CRAFTED_MEMORY_AND_TABLE`).
//! Only files: no bytes are embedded, and only tests, benches and the
//! testkit depend on this crate, so the binary never carries them.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
