//! Paths and bytes of the backend components, built for `wasm32-wasip2` by
//! this crate's build script: [`BUILTIN`] holds the bytes of the backends
//! shipped inside the `compute-bridge` binary (aws, baremetal, gcp, azure);
//! the test components (fake, hostile, hostile-imports) are only files,
//! named by their path constants and [`TEST_ONLY`], so no release binary
//! carries a backend that advertises capacity it does not have.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
