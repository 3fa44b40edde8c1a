//! `compute-bridge components new`: scaffold a backend project from the
//! template of its language (Rust or Python).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use compute_bridge_daemon::template::{self, Lang};

pub(crate) fn run(
    name: &str,
    dir: Option<&Path>,
    lang: Lang,
    sdk_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if lang == Lang::Python && sdk_path.is_some() {
        anyhow::bail!(
            "--sdk-path is the Rust SDK crate; a Python backend carries its own bridge_sdk.py \
             (drop --sdk-path, or use --lang rust)"
        );
    }
    let files = match lang {
        Lang::Rust => {
            let sdk = match sdk_path {
                Some(p) => Some(p.to_path_buf()),
                None => {
                    let built_from =
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/sdk");
                    built_from.is_dir().then_some(built_from)
                }
            };
            template::render(name, sdk.as_deref())?
        }
        Lang::Python => template::render_python(name)?,
    };
    template::write(&dir, &files)?;
    println!("created {} ({} files)", dir.display(), files.len());
    println!("next:");
    println!("  cd {}", dir.display());
    match lang {
        Lang::Rust => {
            println!("  cargo build --release");
            println!(
                "  compute-bridge components inspect target/wasm32-wasip2/release/{}.wasm",
                template::wasm_stem(name)
            );
        }
        Lang::Python => {
            println!("  pip install componentize-py==0.25.1");
            println!("  componentize-py -d wit -w backend componentize -p . app -o {name}.wasm");
            println!("  compute-bridge components inspect {name}.wasm");
        }
    }
    Ok(ExitCode::SUCCESS)
}
