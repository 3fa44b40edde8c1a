//! `compute-bridge components new`: a backend project from the template in
//! `templates/backend`, embedded in the binary.

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

/// The project's files for backend `name`, depending on the SDK at `sdk`
/// (a path) or, without one, on the SDK's git repository.
pub fn render(name: &str, sdk: Option<&Path>) -> anyhow::Result<Vec<(String, String)>> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        anyhow::bail!(
            "{name:?} is not a usable backend name: start with a letter, then lower-case letters, digits and '-'"
        );
    }
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
}
