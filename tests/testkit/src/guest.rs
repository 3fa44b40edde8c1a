//! The bare-metal `vm` runtime's test guest: a Debian cloud kernel and a
//! busybox + dropbear initramfs, built by `scripts/guest/build-guest.sh`
//! from Debian's packages into `target/test-peers/guest` once; a rerun
//! with the same inputs finds the script's stamp and does nothing.
//!
//! The guest reads its user, authorised key and host key from QEMU's
//! fw_cfg (see `scripts/guest/guest-init`). Nothing secret is kept here.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::{require_executable, workspace_root};

/// A built guest.
pub struct Guest {
    /// The kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

static BUILDING: Mutex<()> = Mutex::new(());

/// Build the guest if it is missing or stale, and return it.
pub fn build() -> Guest {
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    require_executable(
        "/usr/bin/qemu-system-x86_64",
        "QEMU (apt-get install qemu-system-x86)",
    );
    require_executable("/bin/busybox", "busybox-static");
    require_executable("/usr/sbin/dropbear", "dropbear-bin");
    require_executable("/usr/bin/cpio", "cpio");
    let root = workspace_root();
    let out = root.join("target/test-peers/guest");
    let result = Command::new("/bin/sh")
        .arg(root.join("scripts/guest/build-guest.sh"))
        .arg(&out)
        .output()
        .expect("running scripts/guest/build-guest.sh");
    assert!(
        result.status.success(),
        "building the test guest failed (scripts/install-test-peers.sh installs what it needs):\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    Guest {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.img"),
    }
}
