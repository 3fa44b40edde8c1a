//! The `ssh` capability: commands on the hosts the operator assigned to one
//! backend, by label.
//!
//! The component names a host by its label and never sees its address, user
//! or key. Each remote host's key is pinned in the config; a different key
//! is refused before authentication. Connections are pooled per host and
//! each command runs on its own channel.
//!
//! A label with `transport = "local"` runs commands on this machine through
//! `/bin/sh` instead (the embedded default uses it), as the bridge's own
//! user. Only a backend shipped in the binary may have one (the config
//! refuses it for a component from a file, and so does building the capability):
//! such a command can read whatever that user can, the state dir with its
//! identity key included. What the local transport does bound:
//! - the command sees a cleared environment: only a fixed `PATH`, `LANG`
//!   and `HOME` (the bridge's home), never the bridge's own variables (the
//!   `${ENV}` secrets of every backend among them), and starts in `/`;
//! - it runs in a process group of its own, killed whole (SIGKILL) when the
//!   shell exits, when the command times out and when the call is dropped,
//!   so nothing it starts outlives the call unless it detaches on purpose
//!   into a session of its own (`setsid`, as the bare-metal host script
//!   does for a grant's supervisor).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

mod config;

pub use config::{LOCAL_ONLY_BUILTIN, SshConfig, SshHostConfig, SshTransport};

use compute_bridge_contract::keypath::{Invalid, Seg};
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HasCall};
use crate::bindings::ssh as wit;
use crate::spec::{BootView, LoadContext};

/// `PATH` of a local command.
pub const LOCAL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `LANG` of a local command.
pub const LOCAL_LANG: &str = "C.UTF-8";

/// Channels run at once on one pooled connection (OpenSSH allows 10).
const CHANNELS_PER_CONNECTION: usize = 8;
/// Connections kept per host.
const CONNECTIONS_PER_HOST: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How one label is reached.
enum Target {
    Local,
    Remote(Box<Remote>),
}

struct Remote {
    address: String,
    port: u16,
    user: String,
    host_key: PublicKey,
    key: Arc<PrivateKey>,
    pool: Mutex<Vec<Arc<Conn>>>,
}

struct Conn {
    handle: client::Handle<Pinned>,
    slots: Arc<Semaphore>,
}

/// Accepts exactly the pinned host key.
struct Pinned {
    expected: PublicKey,
    mismatch: Arc<AtomicBool>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let ok = match presented {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        };
        if !ok {
            self.mismatch.store(true, Ordering::SeqCst);
        }
        Ok(ok)
    }
}

/// The `ssh` capability of one backend, shared by all its calls.
pub struct SshCapability {
    backend: Arc<str>,
    hosts: Vec<(String, Target)>,
    timeout: Duration,
    max_output: usize,
    /// `HOME` of a local command: the bridge's own.
    home: std::ffi::OsString,
}

impl SshCapability {
    /// The capability of one `[[backends]]` entry of `boot` (see
    /// [`Self::provide`]).
    pub fn new<B: BootView>(boot: &B, backend: &B::Backend) -> anyhow::Result<Self> {
        Self::build(&boot.sections(backend).ssh, &boot.load_context(backend, ""))
    }

    /// Build from the backend's `[backends.ssh]` (validated at load); reads
    /// key files now so a missing or bad key fails at start.
    fn build(cfg: &SshConfig, at: &LoadContext) -> anyhow::Result<Self> {
        let name = &at.backend;
        let mut hosts = Vec::new();
        for (label, h) in cfg.parsed_hosts() {
            let target = match h.transport {
                SshTransport::Local => {
                    if !at.builtin {
                        anyhow::bail!("backend {name}: ssh host {label}: {LOCAL_ONLY_BUILTIN}");
                    }
                    Target::Local
                }
                SshTransport::Ssh => {
                    let key = match (&h.private_key, &h.private_key_file) {
                        (Some(text), _) => russh::keys::decode_secret_key(text, None)
                            .map_err(|_| {
                                anyhow::anyhow!(
                                    "backend {name}: ssh host {label}: private_key is not an OpenSSH private key"
                                )
                            })?,
                        (None, Some(file)) => {
                            let file = at.resolve(file);
                            russh::keys::load_secret_key(&file, None).map_err(|e| {
                                anyhow::anyhow!(
                                    "backend {name}: ssh host {label}: cannot load {}: {e}",
                                    file.display()
                                )
                            })?
                        }
                        (None, None) => unreachable!("validated at load"),
                    };
                    let host_key =
                        PublicKey::from_openssh(h.host_key.as_deref().unwrap_or_default().trim())?;
                    Target::Remote(Box::new(Remote {
                        address: h.address.clone().unwrap_or_default(),
                        port: h.port,
                        user: h.user.clone().unwrap_or_default(),
                        host_key,
                        key: Arc::new(key),
                        pool: Mutex::new(Vec::new()),
                    }))
                }
            };
            hosts.push((label, target));
        }
        Ok(Self {
            backend: name.clone(),
            hosts,
            timeout: Duration::from_secs(cfg.timeout_sec),
            max_output: cfg.max_output_bytes as usize,
            home: std::env::var_os("HOME").unwrap_or_else(|| "/".into()),
        })
    }

    /// Labels, in config order.
    pub fn labels(&self) -> Vec<String> {
        self.hosts.iter().map(|(l, _)| l.clone()).collect()
    }

    /// Run `command` on the host labelled `label`.
    pub async fn exec(
        &self,
        label: &str,
        command: &str,
        stdin: Vec<u8>,
    ) -> Result<wit::ExecOutput, wit::SshError> {
        let Some((_, target)) = self.hosts.iter().find(|(l, _)| l == label) else {
            tracing::warn!(backend = %self.backend, label, "ssh to an unassigned label refused");
            return Err(wit::SshError::UnknownHost(label.to_string()));
        };
        tracing::debug!(backend = %self.backend, label, "ssh exec");
        let run = async {
            match target {
                Target::Local => self.exec_local(label, command, stdin).await,
                Target::Remote(r) => self.exec_remote(label, r, command, stdin).await,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(wit::SshError::Timeout),
        }
    }

    async fn exec_local(
        &self,
        label: &str,
        command: &str,
        stdin: Vec<u8>,
    ) -> Result<wit::ExecOutput, wit::SshError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env_clear()
            .env("PATH", LOCAL_PATH)
            .env("LANG", LOCAL_LANG)
            .env("HOME", &self.home)
            .current_dir("/")
            .process_group(0)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                wit::SshError::Unreachable(format!("{label}: cannot start /bin/sh: {e}"))
            })?;
        // Declared after the child, so dropped before it: the group dies
        // while its leader's pid (its id) is still taken.
        let mut group = ProcessGroup(child.id());
        let mut input = child.stdin.take().expect("piped");
        let writer = async move {
            let _ = input.write_all(&stdin).await;
        };
        let cap = self.max_output;
        let (stdout, stderr) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let reading = async { tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap)) };
        let waiting = async {
            let status = child.wait().await;
            // Whatever the command left behind in its group goes with it,
            // and the pipes it held close.
            group.kill();
            status
        };
        let (((stdout, t1), (stderr, t2)), status, ()) = tokio::join!(reading, waiting, writer);
        let status = status.map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?;
        Ok(wit::ExecOutput {
            exit_code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            truncated: t1 || t2,
        })
    }

    async fn exec_remote(
        &self,
        label: &str,
        r: &Remote,
        command: &str,
        stdin: Vec<u8>,
    ) -> Result<wit::ExecOutput, wit::SshError> {
        let (conn, _permit) = self.connection(label, r).await?;
        let channel = conn
            .handle
            .channel_open_session()
            .await
            .map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?;
        let mut channel = channel;
        channel
            .exec(true, command)
            .await
            .map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?;
        if !stdin.is_empty() {
            channel
                .data_bytes(stdin)
                .await
                .map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?;
        }
        let _ = channel.eof().await;
        let (mut stdout, mut stderr, mut truncated) = (Vec::new(), Vec::new(), false);
        let mut exit_code = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    push_capped(&mut stdout, &data, self.max_output, &mut truncated)
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    push_capped(&mut stderr, &data, self.max_output, &mut truncated)
                }
                ChannelMsg::ExitStatus { exit_status } => exit_code = Some(exit_status as i32),
                ChannelMsg::ExitSignal { .. } => exit_code = Some(-1),
                _ => {}
            }
        }
        let Some(exit_code) = exit_code else {
            return Err(wit::SshError::Unreachable(format!(
                "{label}: connection closed before the command finished"
            )));
        };
        Ok(wit::ExecOutput {
            exit_code,
            stdout,
            stderr,
            truncated,
        })
    }

    /// A pooled connection with a free channel slot, connecting if needed.
    async fn connection(
        &self,
        label: &str,
        r: &Remote,
    ) -> Result<(Arc<Conn>, OwnedSemaphorePermit), wit::SshError> {
        let mut pool = r.pool.lock().await;
        pool.retain(|c| !c.handle.is_closed());
        for c in pool.iter() {
            if let Ok(p) = c.slots.clone().try_acquire_owned() {
                return Ok((c.clone(), p));
            }
        }
        if pool.len() >= CONNECTIONS_PER_HOST {
            let c = pool[0].clone();
            drop(pool);
            let p = c.slots.clone().acquire_owned().await.expect("never closed");
            return Ok((c, p));
        }
        let conn = Arc::new(self.connect(label, r).await?);
        let p = conn.slots.clone().try_acquire_owned().expect("fresh");
        pool.push(conn.clone());
        Ok((conn, p))
    }

    async fn connect(&self, label: &str, r: &Remote) -> Result<Conn, wit::SshError> {
        let mismatch = Arc::new(AtomicBool::new(false));
        let handler = Pinned {
            expected: r.host_key.clone(),
            mismatch: mismatch.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let connecting = client::connect(config, (r.address.as_str(), r.port), handler);
        let mut handle = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(wit::SshError::Unreachable(format!(
                    "{label}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                if mismatch.load(Ordering::SeqCst) {
                    tracing::error!(
                        backend = %self.backend,
                        label,
                        "ssh host key does not match the pinned key; refusing to connect"
                    );
                    return Err(wit::SshError::HostKeyMismatch(label.to_string()));
                }
                return Err(wit::SshError::Unreachable(format!("{label}: {e}")));
            }
            Ok(Ok(h)) => h,
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?
            .flatten();
        let auth = handle
            .authenticate_publickey(
                r.user.clone(),
                PrivateKeyWithHashAlg::new(r.key.clone(), hash),
            )
            .await
            .map_err(|e| wit::SshError::Unreachable(format!("{label}: {e}")))?;
        if !auth.success() {
            return Err(wit::SshError::Auth(format!(
                "{label}: the host refused the configured key for its user"
            )));
        }
        Ok(Conn {
            handle,
            slots: Arc::new(Semaphore::new(CHANNELS_PER_CONNECTION)),
        })
    }
}

/// The process group of one local command, killed whole (SIGKILL) once:
/// when the command's shell exits, or when the command is dropped (its
/// timeout, the call's deadline).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: killpg only sends a signal; a group that is already
            // gone is ESRCH, which changes nothing.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin, cap: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => push_capped(&mut buf, &chunk[..n], cap, &mut truncated),
        }
    }
    (buf, truncated)
}

impl Capability for SshCapability {
    const SECTION: Option<&'static str> = Some("ssh");
    const IMPORTS: &'static [(&'static str, &'static str)] =
        &[(our_interface!("ssh"), "commands on assigned hosts")];
    type Config = SshConfig;
    type Call = SshCall;

    /// Each host's label and entry, in config order: what its transport
    /// needs, a `local` one only for a backend shipped in the binary, a key
    /// file that exists.
    fn validate(cfg: &SshConfig, at: &LoadContext) -> Result<(), Invalid> {
        for (label, v) in &cfg.hosts {
            let path: Vec<Seg> = vec!["hosts".into(), label.clone().into()];
            let refuse = |key: Option<&str>, message: String| {
                let mut path = path.clone();
                path.extend(key.map(Seg::from));
                Invalid { path, message }
            };
            if label.is_empty()
                || !label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(refuse(
                    None,
                    format!(
                        "{label:?} is not a valid host label: use letters, digits, '-' and '_'"
                    ),
                ));
            }
            let host: SshHostConfig = v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| refuse(None, e.message().to_string()))?;
            if host.transport == SshTransport::Local && !at.builtin {
                return Err(refuse(Some("transport"), LOCAL_ONLY_BUILTIN.into()));
            }
            host.check().map_err(|(key, msg)| refuse(key, msg))?;
            if let Some(f) = &host.private_key_file {
                let f = at.resolve(f);
                if !f.is_file() {
                    return Err(refuse(
                        Some("private_key_file"),
                        format!("{} does not exist", f.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn provide(cfg: &SshConfig, at: &LoadContext) -> anyhow::Result<Self> {
        Self::build(cfg, at)
    }

    fn start_call(this: &Arc<Self>, _export: &'static str) -> SshCall {
        SshCall(this.clone())
    }

    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<SshCall>>(linker, |t| HasCall::<Self>::call_state(t))
    }

    /// The labels, each with its transport.
    fn routing(cfg: &SshConfig) -> Option<Vec<String>> {
        Some(
            cfg.parsed_hosts()
                .into_iter()
                .map(|(label, _)| label)
                .collect(),
        )
    }

    fn summary(cfg: &SshConfig) -> Option<String> {
        let labels: Vec<String> = cfg
            .parsed_hosts()
            .into_iter()
            .map(|(l, h)| {
                format!(
                    "{l} ({})",
                    match h.transport {
                        SshTransport::Local => "local",
                        SshTransport::Ssh => "ssh",
                    }
                )
            })
            .collect();
        Some(if labels.is_empty() {
            "none".into()
        } else {
            labels.join(", ")
        })
    }

    /// Each label with how it is reached and the key it is pinned to, and
    /// the bounds of one command; never a private key or its file.
    fn measure(cfg: &SshConfig, h: &mut Sha256) {
        for (label, host) in cfg.parsed_hosts() {
            let transport = match host.transport {
                SshTransport::Local => "local",
                SshTransport::Ssh => "ssh",
            };
            let fields = [
                label.as_str(),
                transport,
                host.address.as_deref().unwrap_or(""),
                &host.port.to_string(),
                host.user.as_deref().unwrap_or(""),
                host.host_key.as_deref().map(str::trim).unwrap_or(""),
            ];
            h.update(b"host\0");
            for f in fields {
                h.update(f.as_bytes());
                h.update([0]);
            }
        }
        h.update(cfg.timeout_sec.to_be_bytes());
        h.update(cfg.max_output_bytes.to_be_bytes());
    }
}

/// One call's `ssh`, handed to the generated `Host` trait.
pub struct SshCall(pub Arc<SshCapability>);

impl wit::Host for SshCall {
    fn hosts(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.0.labels())
    }

    async fn exec(
        &mut self,
        host_label: String,
        command: String,
        stdin: Vec<u8>,
    ) -> Result<wit::ExecOutput, wit::SshError> {
        self.0.exec(&host_label, &command, stdin).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";

    fn section(host: &str) -> SshConfig {
        toml::from_str(&format!("[hosts.rack]\n{host}")).unwrap()
    }

    fn measured(cfg: &SshConfig) -> [u8; 32] {
        let mut h = Sha256::new();
        SshCapability::measure(cfg, &mut h);
        h.finalize().into()
    }

    #[test]
    fn the_measurement_follows_hosts_and_pinned_keys_never_secrets() {
        let entry = |address: &str, secret: &str| {
            section(&format!(
                "address = {address:?}\nuser = \"u\"\nhost_key = {KEY:?}\nprivate_key = {secret:?}\n"
            ))
        };
        let base = measured(&entry("10.0.0.1", "first secret"));
        assert_eq!(
            base,
            measured(&entry("10.0.0.1", "another secret")),
            "a secret is not measured"
        );
        assert_ne!(
            base,
            measured(&entry("10.0.0.2", "first secret")),
            "the address is"
        );
        let unpinned =
            section("address = \"10.0.0.1\"\nuser = \"u\"\nprivate_key = \"first secret\"\n");
        assert_ne!(base, measured(&unpinned), "the pinned key is");
    }
}
