//! The local control socket: `compute-bridge components swap` talks to the
//! running bridge through `state_dir/control.sock`.
//!
//! Invariants:
//! - a Unix socket only, never the network; the socket file is made mode
//!   0600 between `bind` and `listen`, so nobody else can connect even for
//!   an instant, and every connection's peer must be this process's user
//!   (`SO_PEERCRED`);
//! - a path that exists is removed only if it is a socket this user owns
//!   (one a stopped bridge left: the journal's lock keeps a second bridge
//!   off this state dir); anything else there (a file, a directory, a
//!   symlink, another user's socket) is refused at start;
//! - one request per connection, one JSON line; the answer is JSON lines,
//!   one per step, the last one final ([`Reply::is_final`]).
//!
//! Keeps nothing; logs the requests' backend names, never the file's
//! contents.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::swap::{Probation, Swapper};

/// The socket's file name in the state dir.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line read.
const MAX_REQUEST: usize = 8 * 1024;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Swap `backend`'s component for the `.wasm` at `file` (absolute).
    Swap {
        /// The backend.
        backend: String,
        /// The component file.
        file: PathBuf,
    },
}

/// One line of the bridge's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// A step done (loaded, checked, measured, live).
    Progress(String),
    /// Final: live, and passed its probation.
    Passed(String),
    /// Final: live, then rolled back by itself.
    RolledBack(String),
    /// Final: refused or failed; the old component stays.
    Error(String),
}

impl Reply {
    /// Whether it is the last line.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Progress(_))
    }
}

/// The socket path of the bridge on `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// This process's user (the owner of `/proc/self`).
fn my_uid() -> std::io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// The control socket, listening.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Make `state_dir/control.sock` (mode 0600) and serve `swapper` on it.
    pub fn start(state_dir: &Path, swapper: Swapper) -> anyhow::Result<Self> {
        let path = socket_path(state_dir);
        let uid = my_uid().context("reading this process's user from /proc/self")?;
        clear_stale(&path, uid)?;
        let listener = bind_private(&path)
            .with_context(|| format!("making the control socket {}", path.display()))?;
        let listener = tokio::net::UnixListener::from_std(listener)
            .context("registering the control socket")?;
        tracing::info!(socket = %path.display(), "control socket listening (mode 0600)");
        let task = tokio::spawn(accept(listener, swapper, uid));
        Ok(Self { path, task })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop listening and remove the socket file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Remove a socket at `path` that user `uid` owns (a stopped bridge's);
/// refuse anything else there.
fn clear_stale(path: &Path, uid: u32) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == uid => std::fs::remove_file(path)
            .with_context(|| {
                format!(
                    "removing the control socket {} a stopped bridge left",
                    path.display()
                )
            }),
        Ok(m) => anyhow::bail!(
            "{} exists and is not a control socket of this user (it is {}, owned by uid {}); \
             the bridge does not replace it: move it away and start again",
            path.display(),
            if m.file_type().is_socket() {
                "a socket"
            } else if m.file_type().is_symlink() {
                "a symlink"
            } else if m.is_dir() {
                "a directory"
            } else {
                "a file"
            },
            m.uid()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking {}", path.display())),
    }
}

/// `bind`, `chmod 0600`, then `listen`: the socket is never connectable
/// with a wider mode.
fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(16)?;
    let listener = std::os::unix::net::UnixListener::from(socket);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

async fn accept(listener: tokio::net::UnixListener, swapper: Swapper, uid: u32) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == uid => {}
            Ok(c) => {
                tracing::warn!(
                    peer_uid = c.uid(),
                    "control socket: refused a connection from another user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("control socket: no peer credentials ({e}); refused");
                continue;
            }
        }
        tokio::spawn(serve(stream, swapper.clone()));
    }
}

async fn serve(stream: tokio::net::UnixStream, swapper: Swapper) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    let request = match reader.read_line(&mut line).await {
        Ok(_) => serde_json::from_str::<Request>(line.trim())
            .map_err(|e| format!("not a control request: {e}")),
        Err(e) => Err(format!("reading the request: {e}")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reply>();
    let work = async move {
        match request {
            Err(e) => {
                let _ = tx.send(Reply::Error(e));
            }
            Ok(Request::Swap { backend, file }) => {
                tracing::info!(backend = %backend, "control socket: swap asked for");
                let progress = tx.clone();
                let swapped = swapper
                    .swap_file(&backend, &file, |s| {
                        let _ = progress.send(Reply::Progress(s.to_string()));
                    })
                    .await;
                let reply = match swapped {
                    Err(e) => Reply::Error(e.to_string()),
                    Ok(s) => {
                        let took = s.took;
                        match s.probation.await {
                            Ok(Probation::Passed { polls }) => Reply::Passed(format!(
                                "backend {} runs {} (load to live {} ms); probation passed \
                                 ({polls} polls)",
                                s.backend,
                                s.component,
                                took.as_millis()
                            )),
                            Ok(Probation::RolledBack { why, seq }) => Reply::RolledBack(format!(
                                "backend {} ROLLED BACK to {} (measured again{}): the new \
                                     component {why}",
                                s.backend,
                                s.previous.as_deref().unwrap_or("the old component"),
                                seq.map(|q| format!(", event {q}")).unwrap_or_default()
                            )),
                            Err(e) => Reply::Error(format!("the probation stopped: {e}")),
                        }
                    }
                };
                let _ = tx.send(reply);
            }
        }
    };
    let writer = async move {
        while let Some(r) = rx.recv().await {
            let mut text = serde_json::to_string(&r).expect("a reply serialises");
            text.push('\n');
            if write.write_all(text.as_bytes()).await.is_err() {
                break;
            }
            if r.is_final() {
                break;
            }
        }
    };
    tokio::join!(work, writer);
}

/// Why the CLI could not reach a bridge.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens.
    #[error(
        "no bridge is running on this state dir: nothing listens on {path} ({source}). Start \
         it with `compute-bridge run --config FILE` (the same config), then swap again"
    )]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("the bridge on {path} stopped answering: {source}")]
    Broken {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Send `request` to the bridge on `state_dir` and hand each reply line to
/// `each` as it comes; returns the final one.
pub fn ask(
    state_dir: &Path,
    request: &Request,
    mut each: impl FnMut(&Reply),
) -> Result<Reply, ClientError> {
    let path = socket_path(state_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|source| {
        ClientError::NotRunning {
            path: path.clone(),
            source,
        }
    })?;
    let broken = |source| ClientError::Broken {
        path: path.clone(),
        source,
    };
    let mut line = serde_json::to_string(request).expect("a request serialises");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(broken)?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(broken)?;
        let reply: Reply = serde_json::from_str(&line).map_err(|e| {
            broken(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a reply: {e}"),
            ))
        })?;
        each(&reply);
        if reply.is_final() {
            return Ok(reply);
        }
    }
    Err(broken(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the bridge closed the connection before the swap ended (did it stop?)",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_0600_and_only_our_own_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let uid = my_uid().unwrap();
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        drop(listener);

        // Another user's socket (this one, as seen by a bridge of another
        // uid) is refused and left alone.
        let err = format!("{:#}", clear_stale(&path, uid.wrapping_add(1)).unwrap_err());
        assert!(
            err.contains("is not a control socket of this user")
                && err.contains("a socket")
                && err.contains(&format!("uid {uid}")),
            "{err}"
        );
        assert!(path.exists());
        // Our own stale one is removed.
        clear_stale(&path, uid).unwrap();
        assert!(!path.exists());

        // A file, a directory or a symlink there is refused and kept.
        std::fs::write(&path, b"not a socket").unwrap();
        let err = format!("{:#}", clear_stale(&path, uid).unwrap_err());
        assert!(
            err.contains("a file") && err.contains("move it away"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        let err = format!("{:#}", clear_stale(&path, uid).unwrap_err());
        assert!(err.contains("a symlink"), "{err}");
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = format!("{:#}", clear_stale(&path, uid).unwrap_err());
        assert!(err.contains("a directory"), "{err}");
    }

    #[test]
    fn with_no_bridge_the_client_names_the_socket_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let req = Request::Swap {
            backend: "aws".into(),
            file: "/x.wasm".into(),
        };
        let err = ask(dir.path(), &req, |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("no bridge is running")
                && err.contains(&socket_path(dir.path()).display().to_string()),
            "{err}"
        );
    }
}
