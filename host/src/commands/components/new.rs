//! `compute-bridge components new`: scaffold a backend project from the
//! template.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) fn run(
    name: &str,
    dir: Option<&Path>,
    sdk_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    let sdk = match sdk_path {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/sdk");
            built_from.is_dir().then_some(built_from)
        }
    };
    let files = compute_bridge_daemon::template::render(name, sdk.as_deref())?;
    compute_bridge_daemon::template::write(&dir, &files)?;
    println!("created {} ({} files)", dir.display(), files.len());
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --release");
    println!(
        "  compute-bridge components inspect target/wasm32-wasip2/release/{}.wasm",
        compute_bridge_daemon::template::wasm_stem(name)
    );
    Ok(ExitCode::SUCCESS)
}
