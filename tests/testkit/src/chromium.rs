//! Headless Chromium (Debian's `chromium`) for the dashboard's browser
//! tests: the rendered DOM of a page, and a screenshot of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::require_executable;

/// Where Debian installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(extra: &[&str], url: &str) -> Output {
    let bin = require_executable(CHROMIUM, "Chromium (apt-get install chromium)");
    let profile = tempfile::tempdir().expect("a profile dir");
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The DOM of `url` after Chromium loaded and rendered it.
pub fn dump_dom(url: &str) -> String {
    String::from_utf8_lossy(&chromium(&["--dump-dom"], url).stdout).into_owned()
}

/// A 1280×900 PNG of `url`, written to `path`.
pub fn screenshot(url: &str, path: &Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating the artifact dir");
    }
    chromium(
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
        url,
    );
    let png =
        std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
}

/// `target/artifacts/<name>` in the workspace: where tests keep what a
/// person may want to look at afterwards.
pub fn artifact(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("target")
        .join("artifacts")
        .join(name)
}
