//! A private OpenSSH server on 127.0.0.1 with its own host key, config and
//! client key, for the ssh capability and the bare-metal backend.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require_executable, wait_for};

/// A running sshd; stopped on drop.
pub struct Sshd {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Its host public key, OpenSSH format.
    pub host_key: String,
    /// A client private key authorised for `root` (and any user whose name
    /// is passed to [`Sshd::authorize`]).
    pub client_key: PathBuf,
    /// Public half of `client_key`.
    pub client_public_key: String,
    /// Working directory (config, keys, log).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("running ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

impl Sshd {
    /// Start one. `root` may log in with `client_key`.
    pub fn start() -> Self {
        let sshd = require_executable("/usr/sbin/sshd", "OpenSSH server (openssh-server)");
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::create_dir_all(d.join("keys")).unwrap();
        let client_public_key = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        std::fs::write(d.join("keys/root"), &client_public_key).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile .ssh/authorized_keys {d}/keys/%u\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             MaxSessions 32\nMaxStartups 64\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let mut s = Self {
            port,
            host_key: std::fs::read_to_string(d.join("host_key.pub"))
                .unwrap()
                .trim()
                .to_string(),
            client_key: d.join("client_key"),
            client_public_key: client_public_key.trim().to_string(),
            child: None,
            dir,
        };
        s.spawn(&sshd);
        s
    }

    fn spawn(&mut self, sshd: &Path) {
        let d = self.dir.path();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sshd");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            "sshd to accept connections",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    /// Let `user` log in with the client key too.
    pub fn authorize(&self, user: &str) {
        std::fs::write(
            self.dir.path().join("keys").join(user),
            &self.client_public_key,
        )
        .unwrap();
    }

    /// Stop it like a host going down: the listener and every session it
    /// forked (connections are refused until [`Sshd::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The listener first, so no one reconnects while the sessions
            // die; then everything it had forked, in one kill(1).
            let below = descendants(c.id());
            let _ = c.kill();
            if !below.is_empty() {
                let _ = Command::new("kill")
                    .arg("-9")
                    .args(below.iter().map(u32::to_string))
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = c.wait();
        }
        wait_for("sshd to stop listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .is_err()
                .then_some(())
        });
    }

    /// Cut every open connection, as a network failure or a crash would,
    /// while the server keeps listening: kill the per-connection sshd
    /// processes. With `and_commands`, what those sessions run dies too (a
    /// session killed outright); without, the commands carry on without
    /// their connection, as they do when a link drops (they meet a broken
    /// pipe when they next write). Returns how many processes were killed.
    pub fn drop_connections(&self, and_commands: bool) -> usize {
        let Some(listener) = self.child.as_ref().map(Child::id) else {
            return 0;
        };
        let mut killed = 0;
        // A command may fork between the listing and the kill: with
        // `and_commands`, go again until nothing is left below the listener.
        for _ in 0..20 {
            let victims: Vec<u32> = descendants(listener)
                .into_iter()
                .filter(|pid| {
                    and_commands
                        || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.starts_with("sshd"))
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            // One kill(1) for all, so none runs on while the others die.
            let _ = Command::new("kill")
                .arg("-9")
                .args(victims.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
            killed += victims.len();
            if !and_commands {
                break;
            }
        }
        killed
    }

    /// Start it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let sshd = require_executable("/usr/sbin/sshd", "OpenSSH server (openssh-server)");
        self.spawn(&sshd);
    }

    /// Replace the host key (as if the machine were swapped) and restart.
    pub fn rotate_host_key(&mut self) {
        self.stop();
        let d = self.dir.path().to_path_buf();
        let _ = std::fs::remove_file(d.join("host_key"));
        let _ = std::fs::remove_file(d.join("host_key.pub"));
        keygen(&d.join("host_key"));
        self.host_key = std::fs::read_to_string(d.join("host_key.pub"))
            .unwrap()
            .trim()
            .to_string();
        let sshd = require_executable("/usr/sbin/sshd", "OpenSSH server (openssh-server)");
        self.spawn(&sshd);
    }

    /// A `[backends.ssh.hosts.<label>]` table reaching this server as root.
    pub fn host_toml(&self, label: &str) -> String {
        format!(
            "[backends.ssh.hosts.{label}]\ntransport = \"ssh\"\naddress = \"127.0.0.1\"\nport = {}\n\
             user = \"root\"\nhost_key = \"{}\"\nprivate_key_file = \"{}\"\n",
            self.port,
            self.host_key,
            self.client_key.display()
        )
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Every process below `root`, found through /proc (sshd's session
/// processes call setsid, so a process group does not hold them).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may contain spaces.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            for pid in descendants(c.id()) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
