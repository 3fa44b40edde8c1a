//! The host's view of a provider backend: plain Rust types mirroring the WIT
//! contract, and the [`Backend`] trait the fleet routes through.
//!
//! A sandboxed component ([`crate::runtime::ComponentBackend`]) implements
//! the trait; so can native code (the benchmarks compare the two). Keeping
//! these types apart from the generated bindings keeps wasmtime out of the
//! fleet, the provider loop and the dashboard.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a backend offers (WIT `offer`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Region labels.
    pub regions: Vec<String>,
    /// Whether TDX guests are available.
    pub tdx_capable: bool,
    /// Total CPU offered, in millicores.
    pub max_cpu_millicores: u32,
    /// Total memory offered, in MiB.
    pub max_ram_mib: u32,
}

/// How strongly a grant asks for TDX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TdxRequirement {
    /// Does not care.
    #[default]
    None,
    /// Prefers TDX.
    Preferred,
    /// Must run in TDX.
    Required,
}

/// What a backend is told about a grant. No requester identity, ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSpec {
    /// Opaque request id.
    pub request_id: String,
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// Region asked for.
    pub region: Option<String>,
    /// TDX requirement.
    pub tdx: TdxRequirement,
    /// Image pinned by digest.
    pub image: String,
    /// Unix seconds after which the workload must be gone.
    pub valid_to: u64,
}

impl GrantSpec {
    /// `text` (a backend's message, say) with this grant's request id and
    /// image (whole, its digest, its name) replaced by `<request-id>`,
    /// `<image>`, `<image-digest>` and `<image-name>`, for a log line: a
    /// backend may quote the grant back, and the operator's log names
    /// neither.
    pub fn redact(&self, text: &str) -> String {
        let (name, digest) = self.image.split_once("@sha256:").unwrap_or(("", ""));
        [
            (self.image.as_str(), "<image>"),
            (digest, "<image-digest>"),
            (name, "<image-name>"),
            (self.request_id.as_str(), "<request-id>"),
        ]
        .into_iter()
        .filter(|(needle, _)| !needle.is_empty())
        .fold(text.to_string(), |t, (needle, with)| {
            t.replace(needle, with)
        })
    }
}

/// Access the host prepared for the workload: a login name and the public
/// half of a keypair whose private half stays in the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Suggested login.
    pub ssh_user: String,
    /// OpenSSH public key.
    pub ssh_public_key: String,
}

/// A provisioned workload as the backend described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Backend's id.
    pub instance_id: String,
    /// Region.
    pub region: String,
    /// Host to connect to.
    pub public_host: String,
    /// SSH port.
    pub ssh_port: u16,
    /// Login.
    pub user: String,
    /// Host public key, or empty.
    pub host_key: String,
    /// Backend-private state, round-tripped verbatim.
    pub handle: String,
}

/// Lifecycle of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    /// Booting.
    Starting,
    /// Up.
    Running,
    /// Exited with a code.
    Exited(i32),
    /// No longer exists.
    Gone,
}

impl InstanceState {
    /// True once the workload will not run again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Exited(_) | Self::Gone)
    }
}

/// Resources used over a workload's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Core-seconds.
    pub cpu_core_seconds: u64,
    /// MiB-seconds.
    pub ram_mib_seconds: u64,
    /// Bytes in and out.
    pub net_bytes: u64,
}

/// Why a backend call failed. The kind decides what the fleet does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No room now: fail over to the next backend.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// Passing fault: fail over or retry.
    #[error("transient: {0}")]
    Transient(String),
    /// This grant can never be served here.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The operator's configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A bug in the backend, or the sandbox stopped it (trap, deadline,
    /// memory cap).
    #[error("internal: {0}")]
    Internal(String),
}

impl BackendError {
    /// True for the kinds after which the fleet tries the next backend.
    pub fn is_failover(&self) -> bool {
        matches!(self, Self::NoCapacity(_) | Self::Transient(_))
    }

    /// The kind as a short stable word (for logs, metrics and declines).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoCapacity(_) => ErrorKind::NoCapacity,
            Self::Transient(_) => ErrorKind::Transient,
            Self::Rejected(_) => ErrorKind::Rejected,
            Self::Config(_) => ErrorKind::Config,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The kind of a [`BackendError`], without its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// no-capacity
    NoCapacity,
    /// transient
    Transient,
    /// rejected
    Rejected,
    /// config
    Config,
    /// internal
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoCapacity => "no-capacity",
            Self::Transient => "transient",
            Self::Rejected => "rejected",
            Self::Config => "config",
            Self::Internal => "internal",
        })
    }
}

/// A provider backend, sandboxed or native.
///
/// Implementations are cheap to share (`Arc<dyn Backend>`) and safe to call
/// concurrently; each call is independent of every other.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The name the operator gave it.
    fn name(&self) -> &str;
    /// What it offers now.
    async fn capabilities(&self) -> Result<Capabilities, BackendError>;
    /// Could it serve `grant`? Errors count as "no".
    async fn can_satisfy(&self, grant: &GrantSpec) -> bool;
    /// Create the workload.
    async fn provision(
        &self,
        grant: &GrantSpec,
        workload: &Workload,
    ) -> Result<Instance, BackendError>;
    /// Where the workload is.
    async fn status(&self, instance: &Instance) -> Result<InstanceState, BackendError>;
    /// What it used.
    async fn usage(&self, instance: &Instance) -> Result<Usage, BackendError>;
    /// Remove it (idempotent).
    async fn terminate(&self, instance: &Instance) -> Result<(), BackendError>;
    /// Instances it runs for this provider.
    async fn list_instances(&self) -> Result<Vec<Instance>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_takes_the_request_id_and_every_part_of_the_image_out() {
        let digest = "ab".repeat(32);
        let spec = GrantSpec {
            request_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
            cpu_millicores: 100,
            ram_mib: 64,
            region: None,
            tdx: TdxRequirement::None,
            image: format!("registry.example/secret-app@sha256:{digest}"),
            valid_to: 0,
        };
        let text = format!(
            "host h1 refused {}: image {} (digest {digest}, name registry.example/secret-app)",
            spec.request_id, spec.image
        );
        let r = spec.redact(&text);
        assert_eq!(
            r,
            "host h1 refused <request-id>: image <image> (digest <image-digest>, name <image-name>)"
        );
    }
}
