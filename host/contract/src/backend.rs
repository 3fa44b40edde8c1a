//! The host's view of a provider backend: plain Rust types mirroring the WIT
//! contract, and the [`Backend`] trait the fleet routes through.
//!
//! A sandboxed component (the sandbox's `ComponentBackend`) implements
//! the trait; so can native code (the benchmarks compare the two). Keeping
//! these types apart from the generated bindings keeps wasmtime out of the
//! fleet, the provider loop and the dashboard.
//!
//! Nothing a backend returns is trusted. The checks here ([`bounds`],
//! [`Offer::checked`], [`Instance::check_bounds`],
//! [`Instance::check_provisioned`], [`BackendError::bounded`],
//! [`Usage::clamped`]) are applied where a component's results enter the
//! host (`runtime::sandbox`), and the provider loop holds every backend,
//! native ones too, to the instance and usage checks before anything is
//! journaled, sealed or reported.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bounds on what a backend returns, and the ceilings its claims are held
/// to (`docs/authoring.md` lists them for component authors).
pub mod bounds {
    use crate::protocol::{MAX_GRANT_CPU_MILLICORES, MAX_GRANT_RAM_MIB};

    /// `instance.instance-id`, bytes.
    pub const INSTANCE_ID_BYTES: usize = 256;
    /// A region name (in an offer or an instance), bytes; as long as a
    /// grant's region may be.
    pub const REGION_BYTES: usize = 64;
    /// `instance.public-host`, bytes (the longest DNS name).
    pub const HOST_BYTES: usize = 253;
    /// `instance.user`, bytes (Linux `useradd`'s longest login).
    pub const USER_BYTES: usize = 32;
    /// `instance.host-key`, bytes (a 16,384-bit RSA key line is 2.8 KiB).
    pub const HOST_KEY_BYTES: usize = 8 * 1024;
    /// `instance.handle`, bytes: enough for ids and a little state, never
    /// for data (it is journaled with every grant, and kept a week).
    pub const HANDLE_BYTES: usize = 16 * 1024;
    /// An access bundle's private key, bytes (the host's own ed25519 key
    /// is about 400).
    pub const PRIVATE_KEY_BYTES: usize = 16 * 1024;
    /// A `backend-error` text, bytes; a longer one is cut, saying so.
    pub const ERROR_BYTES: usize = 4096;
    /// Regions in one offer (the largest cloud has about 60); also the
    /// most `td_measurements` one offer may list (one per region).
    pub const REGIONS: usize = 128;
    /// An MR_TD in an offer: 48 bytes as lowercase hex digits.
    pub const MRTD_HEX_DIGITS: usize = 96;
    /// Instances in one `list-instances` answer.
    pub const LISTED_INSTANCES: usize = 10_000;
    /// The most CPU one backend may claim, millicores: 64 of the largest
    /// grant the protocol allows (65,536 cores). A larger claim is cut to
    /// this, with a warning.
    pub const BACKEND_CPU_MILLICORES: u32 = 64 * MAX_GRANT_CPU_MILLICORES;
    /// The most memory one backend may claim, MiB: 64 of the largest grant
    /// (1 PiB). A larger claim is cut to this, with a warning.
    pub const BACKEND_RAM_MIB: u32 = 64 * MAX_GRANT_RAM_MIB;
    /// The most network one workload is believed to move, bytes per second
    /// of its life: a 100 Gbit/s link, flat out.
    pub const NET_BYTES_PER_SECOND: u64 = 12_500_000_000;
    /// Seconds of life granted on top of a workload's measured life when
    /// its usage is bounded: second rounding at both ends and a few
    /// seconds between the host's clock and a cloud API's.
    pub const USAGE_SLACK_SECONDS: u64 = 10;
}

/// What a backend offers (WIT `offer`); `capabilities` names the host imports a component is granted, never this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Region labels.
    pub regions: Vec<String>,
    /// Whether TDX guests are available.
    pub tdx_capable: bool,
    /// Total CPU offered, in millicores.
    pub max_cpu_millicores: u32,
    /// Total memory offered, in MiB.
    pub max_ram_mib: u32,
    /// The MR_TD of each region whose hosts run TD guests the backend
    /// starts itself (bare metal); empty for every other backend.
    #[serde(default)]
    pub td_measurements: Vec<TdMeasurement>,
}

/// The MR_TD a region's TD guests boot to (WIT `td-measurement`): what a
/// requester that pins a TD's measurement compares its quote with. Hex
/// is a firmware's measurement, not anyone's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdMeasurement {
    /// One of the offer's regions.
    pub region: String,
    /// MR_TD, [`bounds::MRTD_HEX_DIGITS`] lowercase hex digits.
    pub mrtd: String,
}

/// The entries of `list` a card may carry for an offer of `regions`, and
/// why each other one was left out: an entry whose region is not one of
/// `regions` or whose `mrtd` is not exactly [`bounds::MRTD_HEX_DIGITS`]
/// lowercase hex digits is dropped, and a region named more than once
/// keeps none of its entries (which one is right cannot be told).
pub fn checked_measurements(
    list: Vec<TdMeasurement>,
    regions: &[String],
) -> (Vec<TdMeasurement>, Vec<String>) {
    let mut dropped = Vec::new();
    // Counted once: a native backend's list reaches here unbounded.
    let mut times = std::collections::BTreeMap::<&str, usize>::new();
    for m in &list {
        *times.entry(m.region.as_str()).or_default() += 1;
    }
    let named = |r: &str| times[r];
    let kept = list
        .iter()
        .filter(|m| {
            let region = crate::protocol::shown(&m.region);
            let why = if !regions.contains(&m.region) {
                format!("region {region} is not one of the offer's regions")
            } else if m.mrtd.len() != bounds::MRTD_HEX_DIGITS
                || !m
                    .mrtd
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                format!(
                    "the MR_TD of region {region}, {}, is not {} lowercase hex digits",
                    crate::protocol::shown(&m.mrtd),
                    bounds::MRTD_HEX_DIGITS
                )
            } else if named(&m.region) > 1 {
                format!("region {region} is named {} times", named(&m.region))
            } else {
                return true;
            };
            dropped.push(why);
            false
        })
        .cloned()
        .collect();
    (kept, dropped)
}

impl Offer {
    /// The offer as the host takes it: more than [`bounds::REGIONS`]
    /// regions, or a region name that is empty, over
    /// [`bounds::REGION_BYTES`] or not printable ASCII without spaces, is
    /// refused (the text says which, and never carries the value whole);
    /// capacity claims over [`bounds::BACKEND_CPU_MILLICORES`] and
    /// [`bounds::BACKEND_RAM_MIB`] are cut to them; more than
    /// [`bounds::REGIONS`] `td_measurements` are refused, and a bad one is
    /// dropped ([`checked_measurements`]). The second value says what was
    /// cut or dropped, for a warning.
    pub fn checked(mut self) -> Result<(Self, Option<String>), String> {
        for (field, n, what) in [
            ("regions", self.regions.len(), "regions"),
            ("td_measurements", self.td_measurements.len(), "entries"),
        ] {
            if n > bounds::REGIONS {
                return Err(format!(
                    "`{field}` lists {n} {what}; the limit is {}",
                    bounds::REGIONS
                ));
            }
        }
        for r in &self.regions {
            check_region(r).map_err(|e| format!("`regions` has a region {e}"))?;
        }
        let (kept, dropped) =
            checked_measurements(std::mem::take(&mut self.td_measurements), &self.regions);
        self.td_measurements = kept;
        let mut cut: Vec<String> = dropped
            .into_iter()
            .map(|why| format!("a td_measurements entry dropped: {why}"))
            .collect();
        for (name, claim, ceiling) in [
            (
                "max_cpu_millicores",
                &mut self.max_cpu_millicores,
                bounds::BACKEND_CPU_MILLICORES,
            ),
            (
                "max_ram_mib",
                &mut self.max_ram_mib,
                bounds::BACKEND_RAM_MIB,
            ),
        ] {
            if *claim > ceiling {
                cut.push(format!(
                    "capacity claim over the ceiling: {name} {claim} cut to {ceiling}"
                ));
                *claim = ceiling;
            }
        }
        Ok((self, (!cut.is_empty()).then(|| cut.join(", "))))
    }
}

/// A region name: 1 to [`bounds::REGION_BYTES`] bytes of printable ASCII,
/// no spaces.
pub fn check_region(r: &str) -> Result<(), String> {
    if r.len() > bounds::REGION_BYTES {
        Err(format!(
            "name of {} bytes; the limit is {} bytes",
            r.len(),
            bounds::REGION_BYTES
        ))
    } else if r.is_empty() || !r.bytes().all(|b| b.is_ascii_graphic()) {
        Err(format!(
            "name {} that is empty or not printable ASCII without spaces",
            crate::protocol::shown(r)
        ))
    } else {
        Ok(())
    }
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

impl Instance {
    /// Every string within its bound: the host journals all of them with
    /// the grant. The text names the field and the limit.
    pub fn check_bounds(&self) -> Result<(), String> {
        for (field, value, limit) in [
            ("instance_id", &self.instance_id, bounds::INSTANCE_ID_BYTES),
            ("region", &self.region, bounds::REGION_BYTES),
            ("public_host", &self.public_host, bounds::HOST_BYTES),
            ("user", &self.user, bounds::USER_BYTES),
            ("host_key", &self.host_key, bounds::HOST_KEY_BYTES),
            ("handle", &self.handle, bounds::HANDLE_BYTES),
        ] {
            if value.len() > limit {
                return Err(format!(
                    "`{field}` is {} bytes; the limit is {limit} bytes",
                    value.len()
                ));
            }
        }
        Ok(())
    }

    /// What `provision` returned, as the host takes it: within its bounds,
    /// an `instance_id` and `region` it can show, and an access a
    /// requester can use safely ([`crate::protocol::AccessBundle::check`]:
    /// `public_host` a host name or IP address, `ssh_port` not 0, `user` a
    /// POSIX portable login name, `host_key` empty or one OpenSSH public
    /// key line). The text names the field.
    pub fn check_provisioned(&self) -> Result<(), String> {
        use crate::protocol::{check_host, check_host_key, check_login_name, shown};
        // What each field must be first (each check says its own limit),
        // then the bounds of what is left (the id's and the handle's).
        if self.instance_id.is_empty() || self.instance_id.chars().any(char::is_control) {
            return Err(format!(
                "`instance_id` {} is empty or holds a control character",
                shown(&self.instance_id)
            ));
        }
        check_region(&self.region).map_err(|e| format!("`region` has a {e}"))?;
        check_host(&self.public_host).map_err(|e| format!("`public_host` {e}"))?;
        if self.ssh_port == 0 {
            return Err("`ssh_port` is 0".into());
        }
        check_login_name(&self.user).map_err(|e| format!("`user` {e}"))?;
        if !self.host_key.is_empty() {
            check_host_key(&self.host_key).map_err(|e| format!("`host_key` {e}"))?;
        }
        self.check_bounds()
    }
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

/// The most a grant could have used: its CPU and memory for its whole
/// life, and the network a 100 Gbit/s link moves in that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBound(pub Usage);

impl UsageBound {
    /// For a grant of `cpu_millicores` and `ram_mib` that lived
    /// `lifetime_seconds` (plus [`bounds::USAGE_SLACK_SECONDS`]).
    pub fn for_grant(cpu_millicores: u32, ram_mib: u32, lifetime_seconds: u64) -> Self {
        let secs = lifetime_seconds.saturating_add(bounds::USAGE_SLACK_SECONDS);
        Self(Usage {
            cpu_core_seconds: u64::from(cpu_millicores)
                .saturating_mul(secs)
                .div_ceil(1000),
            ram_mib_seconds: u64::from(ram_mib).saturating_mul(secs),
            net_bytes: bounds::NET_BYTES_PER_SECOND.saturating_mul(secs),
        })
    }
}

impl Usage {
    /// Each figure cut to `bound`, and the names of those that were.
    pub fn clamped(self, bound: &UsageBound) -> (Self, Vec<&'static str>) {
        let b = bound.0;
        let mut cut = Vec::new();
        for (name, v, max) in [
            (
                "cpu_core_seconds",
                self.cpu_core_seconds,
                b.cpu_core_seconds,
            ),
            ("ram_mib_seconds", self.ram_mib_seconds, b.ram_mib_seconds),
            ("net_bytes", self.net_bytes, b.net_bytes),
        ] {
            if v > max {
                cut.push(name);
            }
        }
        let u = Self {
            cpu_core_seconds: self.cpu_core_seconds.min(b.cpu_core_seconds),
            ram_mib_seconds: self.ram_mib_seconds.min(b.ram_mib_seconds),
            net_bytes: self.net_bytes.min(b.net_bytes),
        };
        (u, cut)
    }
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

    /// The same error with its text cut to [`bounds::ERROR_BYTES`] (at a
    /// character boundary), saying how much was cut.
    pub fn bounded(self) -> Self {
        let cut = |mut m: String| {
            if m.len() > bounds::ERROR_BYTES {
                let mut end = bounds::ERROR_BYTES;
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                let more = m.len() - end;
                m.truncate(end);
                m.push_str(&format!("… ({more} more bytes cut)"));
            }
            m
        };
        match self {
            Self::NoCapacity(m) => Self::NoCapacity(cut(m)),
            Self::Transient(m) => Self::Transient(cut(m)),
            Self::Rejected(m) => Self::Rejected(cut(m)),
            Self::Config(m) => Self::Config(cut(m)),
            Self::Internal(m) => Self::Internal(cut(m)),
        }
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
    async fn capabilities(&self) -> Result<Offer, BackendError>;
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

/// `provision`'s answer from backend `name`, as the host takes it: an
/// instance that fails [`Instance::check_provisioned`] becomes an
/// `internal` error naming the field (the caller tears the instance down).
pub fn check_provisioned(name: &str, instance: &Instance) -> Result<(), BackendError> {
    instance.check_provisioned().map_err(|e| {
        BackendError::Internal(format!(
            "backend {name} returned an instance whose {e}; it is torn down, and no access is sealed"
        ))
    })
}

/// `capabilities`' answer from backend `name`, as the host takes it
/// ([`Offer::checked`]); a cut claim is logged.
pub fn check_offer(name: &str, offer: Offer) -> Result<Offer, BackendError> {
    match offer.checked() {
        Ok((c, None)) => Ok(c),
        Ok((c, Some(cut))) => {
            tracing::warn!(backend = name, "offer held to the host's bounds: {cut}");
            Ok(c)
        }
        Err(e) => Err(BackendError::Internal(format!(
            "backend {name} offered capabilities the host refuses: {e}"
        ))),
    }
}

/// `list-instances`' answer from backend `name`, as the host takes it: at
/// most [`bounds::LISTED_INSTANCES`], each within its bounds.
pub fn check_listed(name: &str, instances: &[Instance]) -> Result<(), BackendError> {
    if instances.len() > bounds::LISTED_INSTANCES {
        return Err(BackendError::Internal(format!(
            "backend {name} listed {} instances; the limit is {}",
            instances.len(),
            bounds::LISTED_INSTANCES
        )));
    }
    for i in instances {
        i.check_bounds().map_err(|e| {
            BackendError::Internal(format!("backend {name} listed an instance whose {e}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance {
            instance_id: "i-0123".into(),
            region: "us-east-1".into(),
            public_host: "203.0.113.7".into(),
            ssh_port: 22,
            user: "cb-0123abcd".into(),
            host_key: String::new(),
            handle: "{}".into(),
        }
    }

    #[test]
    fn each_field_names_itself_and_its_limit() {
        assert_eq!(instance().check_provisioned(), Ok(()));
        let e = Instance {
            handle: "x".repeat(bounds::HANDLE_BYTES + 1),
            ..instance()
        }
        .check_bounds()
        .unwrap_err();
        assert_eq!(e, "`handle` is 16385 bytes; the limit is 16384 bytes");
        let e = Instance {
            user: "x $(id)".into(),
            ..instance()
        }
        .check_provisioned()
        .unwrap_err();
        assert!(e.starts_with("`user` \"x $(id)\" is not a POSIX"), "{e}");
        for (i, field) in [
            (
                Instance {
                    instance_id: String::new(),
                    ..instance()
                },
                "instance_id",
            ),
            (
                Instance {
                    region: "us east".into(),
                    ..instance()
                },
                "region",
            ),
            (
                Instance {
                    public_host: "-oX".into(),
                    ..instance()
                },
                "public_host",
            ),
            (
                Instance {
                    ssh_port: 0,
                    ..instance()
                },
                "ssh_port",
            ),
            (
                Instance {
                    host_key: "ssh-ed25519 x".into(),
                    ..instance()
                },
                "host_key",
            ),
        ] {
            let e = i.check_provisioned().unwrap_err();
            assert!(e.starts_with(&format!("`{field}`")), "{e}");
        }
    }

    #[test]
    fn an_offer_over_its_bounds_is_refused_and_claims_are_cut() {
        let offer = |regions: Vec<String>, cpu, ram| Offer {
            regions,
            tdx_capable: false,
            max_cpu_millicores: cpu,
            max_ram_mib: ram,
            td_measurements: vec![],
        };
        let (c, cut) = offer(vec!["eu-west-1".into()], 64_000, 262_144)
            .checked()
            .unwrap();
        assert_eq!((c.max_cpu_millicores, cut), (64_000, None));
        let (c, cut) = offer(vec![], u32::MAX, u32::MAX).checked().unwrap();
        assert_eq!(
            (c.max_cpu_millicores, c.max_ram_mib),
            (65_536_000, 1_073_741_824)
        );
        assert!(
            cut.unwrap()
                .contains("max_cpu_millicores 4294967295 cut to 65536000")
        );
        let many: Vec<String> = (0..=bounds::REGIONS).map(|i| format!("r{i}")).collect();
        assert!(
            offer(many, 1, 1)
                .checked()
                .unwrap_err()
                .contains("the limit is 128")
        );
        let long = "r".repeat(65);
        for bad in ["", "a b", "\n", long.as_str()] {
            assert!(offer(vec![bad.into()], 1, 1).checked().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_td_measurement_is_dropped_and_the_offer_stands() {
        let m = |region: &str, mrtd: String| TdMeasurement {
            region: region.into(),
            mrtd,
        };
        let good = "ab".repeat(48);
        let offer = |td_measurements| Offer {
            regions: vec!["r1".into(), "r2".into(), "r3".into(), "r4".into()],
            tdx_capable: true,
            max_cpu_millicores: 1000,
            max_ram_mib: 1024,
            td_measurements,
        };
        let (c, cut) = offer(vec![m("r1", good.clone())]).checked().unwrap();
        assert_eq!(
            (c.td_measurements, cut),
            (vec![m("r1", good.clone())], None)
        );
        let (c, cut) = offer(vec![
            m("r1", good.clone()),
            m("elsewhere", good.clone()),
            m("r2", "AB".repeat(48)),
            m("r3", "ab".repeat(47)),
            m("r4", good.clone()),
            m("r1", "cd".repeat(48)),
        ])
        .checked()
        .unwrap();
        assert_eq!(c.td_measurements, vec![m("r4", good.clone())]);
        assert_eq!(c.regions.len(), 4, "the rest of the offer stands");
        let cut = cut.unwrap();
        for why in [
            "region \"elsewhere\" is not one of the offer's regions",
            "the MR_TD of region \"r2\", \"ABABAB",
            "is not 96 lowercase hex digits",
            "region \"r1\" is named 2 times",
        ] {
            assert!(cut.contains(why), "{why} not in {cut}");
        }
        assert!(!cut.contains("\"r4\""), "{cut}");
        let many = (0..=bounds::REGIONS)
            .map(|_| m("r1", good.clone()))
            .collect();
        assert_eq!(
            offer(many).checked().unwrap_err(),
            "`td_measurements` lists 129 entries; the limit is 128"
        );
    }

    #[test]
    fn usage_is_clamped_to_what_the_grant_could_use() {
        // 100 millicores and 64 MiB for 30 s, plus the slack.
        let bound = UsageBound::for_grant(100, 64, 30);
        assert_eq!(
            bound.0,
            Usage {
                cpu_core_seconds: 4,
                ram_mib_seconds: 64 * 40,
                net_bytes: 12_500_000_000 * 40,
            }
        );
        let honest = Usage {
            cpu_core_seconds: 3,
            ram_mib_seconds: 1920,
            net_bytes: 30_000,
        };
        assert_eq!(honest.clamped(&bound), (honest, vec![]));
        let huge = Usage {
            cpu_core_seconds: 1 << 63,
            ram_mib_seconds: u64::MAX,
            net_bytes: 1 << 63,
        };
        assert_eq!(
            huge.clamped(&bound),
            (
                bound.0,
                vec!["cpu_core_seconds", "ram_mib_seconds", "net_bytes"]
            )
        );
        // No product overflows, whatever the inputs.
        let b = UsageBound::for_grant(u32::MAX, u32::MAX, u64::MAX);
        assert_eq!(b.0.ram_mib_seconds, u64::MAX);
    }

    #[test]
    fn a_long_error_text_is_cut_at_a_character_boundary() {
        let e = BackendError::Transient("é".repeat(10_000)).bounded();
        let BackendError::Transient(m) = &e else {
            panic!()
        };
        assert!(m.len() <= bounds::ERROR_BYTES + 40, "{}", m.len());
        assert!(m.ends_with("more bytes cut)"), "{m}");
        assert_eq!(e.kind(), ErrorKind::Transient);
        let short = BackendError::Config("missing key".into());
        assert_eq!(short.clone().bounded(), short);
    }

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
