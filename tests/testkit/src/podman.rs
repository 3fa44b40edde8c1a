//! A container image for the podman runtime's tests, made without a
//! registry: a busybox rootfs `podman import`ed under a name of the test's
//! choosing, referred to by its manifest digest as a grant's image is.
//!
//! The image has a CMD that idles until stopped, as a registry image with a
//! long-running service has (an imported rootfs has none, and `podman run
//! IMAGE` then fails). Every import gets a new digest (the config carries
//! its creation time), so the digest is read back after importing.
//! Dropping the [`Image`] removes it, so no test leaves layers behind.
//! Recipe verified on this machine: /work/brief/r19 `podman-image.sh`.

use std::path::Path;
use std::process::Command;

use crate::require_executable;

/// An imported image; removed on drop.
pub struct Image {
    /// `localhost/NAME:TAG`.
    pub tag: String,
    /// `sha256:<64 hex>`: the manifest digest.
    pub digest: String,
}

impl Image {
    /// The image pinned by digest, as grants carry it:
    /// `localhost/NAME@sha256:<64 hex>`.
    pub fn pinned(&self) -> String {
        let name = self.tag.rsplit_once(':').map_or(&*self.tag, |(n, _)| n);
        format!("{name}@{}", self.digest)
    }
}

/// `podman` with the runtime and cgroup manager this machine needs.
pub fn podman() -> Command {
    let bin = require_executable("/usr/bin/podman", "podman (apt-get install podman runc)");
    let mut c = Command::new(bin);
    c.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
    c
}

fn ok(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Import a busybox rootfs as `localhost/<name>:test` (replacing one of
/// that name).
pub fn import_busybox(name: &str) -> Image {
    let busybox = require_executable("/bin/busybox", "busybox-static");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = ok(Command::new(&busybox).arg("--list"), "busybox --list");
    for applet in list.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::os::unix::fs::symlink("bin", root.join("sbin")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = dir.path().join("root.tar");
    ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("."),
        "tar of the rootfs",
    );
    let tag = format!("localhost/{name}:test");
    let _ = podman().args(["rmi", "--force", &tag]).output();
    import(&tar, &tag);
    let digest = ok(
        podman().args(["image", "inspect", "--format", "{{.Digest}}", &tag]),
        "podman image inspect",
    );
    assert!(digest.starts_with("sha256:"), "{digest}");
    Image { tag, digest }
}

fn import(tar: &Path, tag: &str) {
    ok(
        podman()
            .args([
                "import",
                "--quiet",
                "--change",
                r#"CMD ["/bin/sh", "-c", "trap \"exit 0\" TERM; while :; do sleep 3600 & wait; done"]"#,
            ])
            .arg(tar)
            .arg(tag),
        "podman import",
    );
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.tag]).output();
    }
}

/// Containers podman knows (running or not) labelled as grant `id`'s.
pub fn containers_of(id: &str) -> Vec<String> {
    ok(
        podman().args([
            "ps",
            "--all",
            "--filter",
            &format!("label=compute-bridge.grant={id}"),
            "--format",
            "{{.ID}}",
        ]),
        "podman ps",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Containers in podman's storage (including ones podman no longer runs),
/// whose names mention `id`: their writable layers.
pub fn stored_containers_of(id: &str) -> Vec<String> {
    ok(
        podman().args([
            "ps",
            "--all",
            "--external",
            "--format",
            "{{.ID}} {{.Names}}",
        ]),
        "podman ps --external",
    )
    .lines()
    .filter(|l| l.contains(id))
    .map(str::to_string)
    .collect()
}
