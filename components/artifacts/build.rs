//! Builds the backends shipped inside the `compute-bridge` binary (aws,
//! baremetal, gcp, azure) for `wasm32-wasip2` with a nested cargo
//! ([`cb_artifacts_build::build`]), so `cargo build` from a clean clone
//! produces the `.wasm` files the host embeds. Test components are not
//! built here: `compute-bridge-test-components` builds them, and only the
//! tests depend on it, so a release build never compiles one.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

/// (package, constant name) of each shipped backend; its name in
/// `builtin:<name>` is the package's without `cb-`.
const SHIPPED: &[(&str, &str)] = &[
    ("cb-aws", "AWS"),
    ("cb-baremetal", "BAREMETAL"),
    ("cb-gcp", "GCP"),
    ("cb-azure", "AZURE"),
];

/// Test components a config may name as `builtin:<name>` by mistake: the
/// host refuses them and says where the test build writes their file.
const TEST_ONLY: &[&str] = &[
    "cb-fake",
    "cb-hostile",
    "cb-hostile-imports",
    "cb-hostile-sandbox",
];

fn main() {
    let packages: Vec<&str> = SHIPPED.iter().map(|(p, _)| *p).collect();
    let files = cb_artifacts_build::build(&packages);
    let mut code = String::new();
    let mut builtin = Vec::new();
    for ((package, konst), file) in SHIPPED.iter().zip(&files) {
        let file = file.display().to_string();
        writeln!(
            code,
            "/// `{package}` as built for {}.\npub const {konst}: &str = {file:?};",
            cb_artifacts_build::TARGET
        )
        .unwrap();
        let name = package.trim_start_matches("cb-");
        builtin.push(format!("({name:?}, include_bytes!({file:?}) as &[u8])"));
    }
    writeln!(
        code,
        "/// The backends shipped inside the `compute-bridge` binary, by name.\n\
         pub static BUILTIN: &[(&str, &[u8])] = &[{}];",
        builtin.join(", ")
    )
    .unwrap();
    let target_dir = cb_artifacts_build::target_dir(&cb_artifacts_build::workspace());
    let test_only: Vec<String> = TEST_ONLY
        .iter()
        .map(|package| {
            let name = package.trim_start_matches("cb-");
            let file = cb_artifacts_build::wasm_path(&target_dir, package);
            format!("({name:?}, {:?})", file.display().to_string())
        })
        .collect();
    writeln!(
        code,
        "/// Test components, by name, with the file the test build\n\
         /// ([`TEST_BUILD`]) writes: neither built by this crate nor in the\n\
         /// binary; a config loads them by path.\n\
         pub static TEST_ONLY: &[(&str, &str)] = &[{}];",
        test_only.join(", ")
    )
    .unwrap();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("components.rs");
    std::fs::write(out, code).unwrap();
}
