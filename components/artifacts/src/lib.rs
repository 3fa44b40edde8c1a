//! Paths and bytes of the backends shipped inside the `compute-bridge`
//! binary (aws, baremetal, gcp, azure), built for `wasm32-wasip2` by this
//! crate's build script: [`BUILTIN`] holds their bytes. The test
//! components (fake, hostile, hostile-imports, hostile-sandbox) are built
//! by `compute-bridge-test-components`, which only tests depend on, so no
//! release build compiles or embeds a backend that advertises capacity it
//! does not have; [`TEST_ONLY`] names them and where their file is, for
//! the host's refusal of `builtin:fake`.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// How to build the test components' files ([`TEST_ONLY`]): what the
/// host tells an operator who named one as a builtin.
pub const TEST_BUILD: &str = "cargo build --release -p compute-bridge-test-components";

#[cfg(test)]
mod tests {
    #[test]
    fn the_binary_ships_exactly_the_four_production_backends() {
        let names: Vec<&str> = super::BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["aws", "baremetal", "gcp", "azure"]);
        for (name, bytes) in super::BUILTIN {
            assert!(
                bytes.starts_with(b"\0asm"),
                "{name} is not a wasm component"
            );
        }
        for (name, _) in super::TEST_ONLY {
            assert!(!names.contains(name), "test component {name} is shipped");
        }
    }
}
