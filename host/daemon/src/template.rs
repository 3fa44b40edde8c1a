//! `compute-bridge components new`: a backend project from a template,
//! embedded in the binary: `templates/backend` (Rust, over the SDK crate)
//! or `templates/backend-python` (Python, built with componentize-py; the
//! project gets the `bridge_sdk` module of `components/hetzner` and the
//! world's WIT, so it builds on its own).

use std::path::Path;

use anyhow::Context;

/// The template's files: (path in the project, text).
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/backend/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/backend/src/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../templates/backend/README.md.tmpl"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../templates/backend/.cargo/config.toml"),
    ),
];

/// The language of a new backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, over compute-bridge-sdk (`templates/backend`).
    Rust,
    /// Python, built with componentize-py (`templates/backend-python`).
    Python,
}

/// The Python template's files: (path in the project, text). The WIT is
/// the host's own, so the project builds against exactly the world this
/// binary loads.
const PYTHON_FILES: &[(&str, &str)] = &[
    (
        "app.py",
        include_str!("../../../templates/backend-python/app.py.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../templates/backend-python/README.md.tmpl"),
    ),
    (
        "bridge_sdk.py",
        include_str!("../../../components/hetzner/bridge_sdk.py"),
    ),
    ("wit/backend.wit", include_str!("../../../wit/backend.wit")),
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/config/store.wit",
        include_str!("../../../wit/deps/config/store.wit"),
    ),
    (
        "wit/deps/config/world.wit",
        include_str!("../../../wit/deps/config/world.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "wit/deps/logging/logging.wit",
        include_str!("../../../wit/deps/logging/logging.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// The crate name for a backend called `name`.
pub fn crate_name(name: &str) -> String {
    format!("{name}-backend")
}

/// File stem of the built component.
pub fn wasm_stem(name: &str) -> String {
    crate_name(name).replace('-', "_")
}

fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<String>()
        + "Backend"
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        anyhow::bail!(
            "{name:?} is not a usable backend name: start with a letter, then lower-case letters, digits and '-'"
        );
    }
    Ok(())
}

/// The Python project's files for backend `name`.
pub fn render_python(name: &str) -> anyhow::Result<Vec<(String, String)>> {
    check_name(name)?;
    Ok(PYTHON_FILES
        .iter()
        .map(|(path, text)| {
            // The WIT and the SDK module are copied as they are.
            let text = if path.starts_with("wit/") || *path == "bridge_sdk.py" {
                text.to_string()
            } else {
                text.replace("{{name}}", name)
            };
            (path.to_string(), text)
        })
        .collect())
}

/// The project's files for backend `name`, depending on the SDK at `sdk`
/// (a path) or, without one, on the SDK's git repository.
pub fn render(name: &str, sdk: Option<&Path>) -> anyhow::Result<Vec<(String, String)>> {
    check_name(name)?;
    let sdk_dependency = match sdk {
        Some(p) => {
            let p = std::fs::canonicalize(p)
                .with_context(|| format!("the SDK path {} does not exist", p.display()))?;
            format!("path = {:?}", p.display().to_string())
        }
        None => "git = \"https://example.invalid/compute-bridge\"".to_string(),
    };
    Ok(FILES
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace("{{name}}", name)
                .replace("{{crate_name}}", &crate_name(name))
                .replace("{{type_name}}", &type_name(name))
                .replace("{{sdk_dependency}}", &sdk_dependency);
            (path.to_string(), text)
        })
        .collect())
}

/// Write `files` under `dir`, which must not exist or be empty.
pub fn write(dir: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    for (path, text) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_substituted() {
        assert!(render("Hetzner", None).is_err());
        assert!(render("9lives", None).is_err());
        let files = render("home-lab", None).unwrap();
        let lib = &files.iter().find(|(p, _)| p == "src/lib.rs").unwrap().1;
        assert!(lib.contains("struct HomeLabBackend;"));
        assert!(!files.iter().any(|(_, t)| t.contains("{{")));
    }

    #[test]
    fn the_python_project_carries_the_sdk_module_and_the_whole_wit() {
        assert!(render_python("Bad Name").is_err());
        let files = render_python("home-lab").unwrap();
        let app = &files.iter().find(|(p, _)| p == "app.py").unwrap().1;
        assert!(app.contains("class Provider(exports.Provider)"));
        assert!(!files.iter().any(|(_, t)| t.contains("{{name}}")));
        assert!(
            files
                .iter()
                .any(|(p, t)| p == "bridge_sdk.py" && t.contains("def request("))
        );
        // Every file of the world's WIT, so the project builds on its own.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut wit = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                    wit.push(format!("wit/{rel}"));
                }
            }
        }
        for w in wit {
            assert!(
                files.iter().any(|(p, _)| *p == w),
                "{w} is not in the Python template"
            );
        }
    }
}
