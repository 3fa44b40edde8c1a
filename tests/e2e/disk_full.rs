//! The journal's disk fills up under a running bridge: new grants are
//! declined with `journal-unavailable` (nothing is served that could not be
//! remembered across a crash), the workload already running is still
//! watched to its end and reported, and once space is back the bridge
//! takes grants again. The state dir is a small tmpfs, filled for real.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use compute_bridge_testkit::coalition::TestCoalition;

use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// A tmpfs of `mib` MiB mounted at `path` until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u32) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(path.to_path_buf())
    }

    /// Write zeros to `filler` until the file system says it is full.
    fn fill(&self, filler: &Path) {
        use std::io::Write;
        let mut f = std::fs::File::create(filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_journal_disk_declines_new_grants_and_loses_no_running_one() {
    let net = TestCoalition::start(&network_name("disk-full"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let disk = Tmpfs::mount(&state, 64);
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 3600");
    let mut bridge = start_bridge(&config);

    // A workload that runs until its valid_to.
    let mut running = request_small(&net, "40s", &[]);
    running.wait_for_log("access opened with the reply key", MIN);

    let filler = state.join("filler");
    disk.fill(&filler);
    // Its window only has to outlast the decline; a roomy one keeps a slow
    // machine from turning the decline into `expired`.
    let mut refused = request_small(&net, "60s", &[]);
    assert_eq!(
        refused.wait(Duration::from_secs(120)),
        Some(3),
        "{}\n--- bridge:\n{}",
        refused.log(),
        bridge.log()
    );
    assert!(
        refused.log().contains("declined: journal-unavailable"),
        "{}\n--- bridge:\n{}",
        refused.log(),
        bridge.log()
    );
    // The running grant was the first to arrive, the refused one the
    // second (the log numbers grants; it names no request id).
    let log = bridge.log();
    assert!(
        log.lines()
            .any(|l| l.contains("grant=#2") && l.contains("journal")),
        "no journal error for the refused grant:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    // Space comes back before the running workload ends: it is reported
    // once, and new grants are taken again.
    std::fs::remove_file(&filler).unwrap();
    running.wait_for_log(
        "usage report: expired at valid_to",
        Duration::from_secs(120),
    );
    assert_eq!(running.wait(MIN), Some(0), "{}", running.log());
    bridge.wait_for_log("usage report sent", MIN);
    assert_eq!(
        count_lines(&bridge.log(), &["usage report sent", "grant=#1"]),
        1
    );
    let mut again = request_small(&net, "15s", &[]);
    again.wait_for_log("access opened with the reply key", MIN);
    assert_eq!(
        again.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        again.log()
    );

    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
}
