//! Builds the test components for `wasm32-wasip2` with the nested cargo
//! the shipped backends use ([`cb_artifacts_build::build`]), and makes,
//! from WAT, the ones no guest SDK can express ([`crafted`]):
//! `CRAFTED_MANY_MEMORIES`, `CRAFTED_MEMORY_AND_TABLE` and
//! `CRAFTED_BUILT_FOR_0_1_0`.

mod crafted;

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

/// (package, constant name).
const COMPONENTS: &[(&str, &str)] = &[
    ("cb-fake", "FAKE"),
    ("cb-hostile", "HOSTILE"),
    ("cb-hostile-imports", "HOSTILE_IMPORTS"),
    ("cb-hostile-sandbox", "HOSTILE_SANDBOX"),
];

fn main() {
    let packages: Vec<&str> = COMPONENTS.iter().map(|(p, _)| *p).collect();
    let files = cb_artifacts_build::build(&packages);
    let mut code = String::new();
    for ((package, konst), file) in COMPONENTS.iter().zip(&files) {
        writeln!(
            code,
            "/// `{package}` as built for {}.\npub const {konst}: &str = {:?};",
            cb_artifacts_build::TARGET,
            file.display().to_string()
        )
        .unwrap();
    }
    // The hand-made attackers (see crafted.rs), with the sizes the sandbox
    // tests attack a 16 MiB budget with.
    let workspace = cb_artifacts_build::workspace();
    let crafted_dir = cb_artifacts_build::target_dir(&workspace).join("crafted");
    std::fs::create_dir_all(&crafted_dir).unwrap();
    let wit = workspace.join("wit");
    for (konst, stem, bytes) in [
        (
            "CRAFTED_MANY_MEMORIES",
            "many_memories",
            // 13 more core modules, 15 MiB of memory each.
            crafted::many_memories(&wit, 13, 15),
        ),
        (
            "CRAFTED_MEMORY_AND_TABLE",
            "memory_and_table",
            // 64 KiB short of 16 MiB of memory, then 10,000 table elements.
            crafted::memory_and_table(&wit, 16, 10_000),
        ),
        (
            "CRAFTED_BUILT_FOR_0_1_0",
            "built_for_0_1_0",
            // A backend of the 0.1.0 world, which 0.3.0 hosts refuse.
            crafted::built_for(&wit, "0.1.0"),
        ),
    ] {
        let file = crafted_dir.join(format!("{stem}.wasm"));
        // A new file, not the old one rewritten in place: a target dir
        // made by hard-linking another's shares its inodes, and writing
        // through them would change the other tree's components too.
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, bytes).unwrap();
        writeln!(
            code,
            "/// Test-only hand-made component `{stem}` (see \
             `components/testing/artifacts/crafted.rs`).\n\
             pub const {konst}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("components.rs");
    std::fs::write(out, code).unwrap();
}
