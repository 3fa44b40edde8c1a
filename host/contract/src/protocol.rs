//! The coalition's compute protocol: what providers and requesters say to
//! each other over the mosaik network, version [`PROTOCOL_VERSION`].
//!
//! Every message carries `version`; a receiver drops (or, for a grant,
//! declines as malformed) a message of another version. Messages are
//! encoded with postcard by mosaik, so a field cannot be added without a
//! version bump.
//!
//! | name                  | kind                               | producer  | consumer  |
//! |-----------------------|------------------------------------|-----------|-----------|
//! | `compute.cards`       | stream of [`ProviderCard`]         | providers | anyone    |
//! | `compute.grants`      | stream of [`ComputeGrant`]         | requesters| providers |
//! | `compute.access`      | stream of [`AccessSealed`]         | providers | requesters|
//! | `compute.usage`       | stream of [`UsageReport`]          | providers | requesters|
//! | `compute.declines`    | stream of [`Decline`]              | providers | requesters|
//! | `compute.settlements` | stream of [`Settlement`]           | market    | providers |
//!
//! A provider sends its newest card to each new subscriber of
//! `compute.cards` and again at every refresh; a requester keeps the
//! newest card per provider (by `refreshed_at`).
//!
//! A stream delivers to whoever is subscribed when a message goes out. A
//! requester that was not (its provider restarted, say) sends its grant
//! again: a provider that already finished that request answers with the
//! same [`UsageReport`] again instead of a decline, so a consumer of usage
//! reports must treat them as keyed by request id.
//!
//! Nothing here names a requester: a grant carries an opaque random
//! [`RequestId`] and, inside its sealed envelope, a one-time reply key that
//! only the addressed provider can read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::{TdxRequirement, Usage, bounds};
use crate::measurement::MeasurementLog;

/// The protocol version every message carries.
///
/// 2: a card's [`BackendOffer`] carries `td_measurements` (postcard has no
/// optional fields, so a version-1 reader would mis-decode the card).
///
/// 3: a card carries its measurement log ([`ProviderCard::measurements`]:
/// the backend components and policies extended into RTMR3, issue 20).
///
/// 4: cards travel on the `compute.cards` stream, not in the
/// `compute.providers` map (a version-3 requester finds no card of a
/// version-4 provider, and the other way round).
pub const PROTOCOL_VERSION: u16 = 4;

/// Stream id of provider cards.
pub const CARDS_STREAM: &str = "compute.cards";
/// Stream id of grants.
pub const GRANTS_STREAM: &str = "compute.grants";
/// Stream id of sealed access bundles.
pub const ACCESS_STREAM: &str = "compute.access";
/// Stream id of usage reports.
pub const USAGE_STREAM: &str = "compute.usage";
/// Stream id of declines.
pub const DECLINES_STREAM: &str = "compute.declines";
/// Stream id of settlements.
pub const SETTLEMENTS_STREAM: &str = "compute.settlements";

/// Largest CPU a single grant may ask for (1024 cores), millicores.
pub const MAX_GRANT_CPU_MILLICORES: u32 = 1_024_000;
/// Largest memory a single grant may ask for (16 TiB), MiB.
pub const MAX_GRANT_RAM_MIB: u32 = 16 * 1024 * 1024;
/// Longest grant (31 days), seconds.
pub const MAX_GRANT_SECONDS: u64 = 31 * 24 * 3600;
/// How far in the future `valid_from` may be before a grant is "not yet
/// valid" (clock skew between requester and provider), seconds.
pub const CLOCK_SKEW_SECONDS: u64 = 5;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Encoded as 16 bytes on the wire, as hex in JSON.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_string())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 16]>::deserialize(d).map(Self)
                }
            }
        }

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(rand::random())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let bytes = hex::decode(s.trim())
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| {
                        format!("{s:?} is not a {} (32 hex digits)", stringify!($name))
                    })?;
                Ok(Self(bytes))
            }
        }
    };
}

hex_id!(
    /// A provider's id: the first 16 bytes of SHA-256 over a domain tag and
    /// the provider's envelope public key, so a card's id and key cannot be
    /// mixed and matched. Shown as 32 hex digits.
    ProviderId
);

hex_id!(
    /// A grant's opaque, random id, chosen by the requester. Shown as 32 hex
    /// digits. It correlates a grant with its access, usage and decline and
    /// says nothing about who asked.
    RequestId
);

impl ProviderId {
    /// The id bound to `envelope_key` (an X25519 public key).
    pub fn from_envelope_key(envelope_key: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"compute-bridge/provider-id/v1");
        h.update(envelope_key);
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        Self(id)
    }
}

/// A provider's node on the coalition: the 32 bytes of its ed25519 public
/// key (its mosaik peer id).
///
/// Encoded exactly as iroh encodes the key (`iroh-base` 1.4.1 `key.rs`,
/// `impl Serialize for PublicKey`): 32 raw bytes on the wire, lower-case
/// hex in JSON, so a card reads the same to every version. Unlike the peer
/// id it is not checked to be a valid curve point when decoded: the
/// coalition link converts it where it is used and refuses one that is not
/// (a requester skips such a card).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        hex::decode(s)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a node id (64 hex digits)"))
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Self)
        }
    }
}

/// What one backend offers, as published in the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendOffer {
    /// The operator's name for it.
    pub name: String,
    /// Whether grants are routed to it.
    pub enabled: bool,
    /// Regions.
    pub regions: Vec<String>,
    /// TDX guests available.
    pub tdx_capable: bool,
    /// Declared CPU capacity, millicores.
    pub max_cpu_millicores: u32,
    /// Declared memory capacity, MiB.
    pub max_ram_mib: u32,
    /// CPU reserved by running grants, millicores.
    pub used_cpu_millicores: u64,
    /// Memory reserved by running grants, MiB.
    pub used_ram_mib: u64,
    /// The MR_TD each region's TD guests boot to, for a backend that
    /// starts TD guests on its own hosts (bare metal); empty otherwise.
    /// Added in protocol version 2.
    pub td_measurements: Vec<crate::backend::TdMeasurement>,
}

impl BackendOffer {
    /// What goes into the card for backend `name`: its offer within the
    /// bounds every offer is held to ([`crate::backend::Offer::checked`]):
    /// at most [`bounds::REGIONS`] regions of at most [`bounds::REGION_BYTES`]
    /// bytes (the rest is left out), capacity claims cut to
    /// [`bounds::BACKEND_CPU_MILLICORES`] and [`bounds::BACKEND_RAM_MIB`],
    /// and only the `td_measurements` [`crate::backend::checked_measurements`]
    /// keeps for those regions, at most [`bounds::REGIONS`].
    /// A sandboxed backend's offer was already checked when it came in;
    /// this holds any other [`crate::backend::Backend`] to the same card.
    pub fn bounded(
        name: String,
        enabled: bool,
        caps: crate::backend::Offer,
        used_cpu_millicores: u64,
        used_ram_mib: u64,
    ) -> Self {
        let regions: Vec<String> = caps
            .regions
            .into_iter()
            .filter(|r| crate::backend::check_region(r).is_ok())
            .take(bounds::REGIONS)
            .collect();
        let (mut td_measurements, _) =
            crate::backend::checked_measurements(caps.td_measurements, &regions);
        td_measurements.truncate(bounds::REGIONS);
        Self {
            name,
            enabled,
            regions,
            td_measurements,
            tdx_capable: caps.tdx_capable,
            max_cpu_millicores: caps.max_cpu_millicores.min(bounds::BACKEND_CPU_MILLICORES),
            max_ram_mib: caps.max_ram_mib.min(bounds::BACKEND_RAM_MIB),
            used_cpu_millicores,
            used_ram_mib,
        }
    }
}

/// How the provider proves what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attestation {
    /// No attestation (development); requesters must not treat the card as
    /// attested.
    None,
    /// A TDX quote whose report data binds the provider id and envelope key.
    Tdx {
        /// The raw quote.
        quote: Vec<u8>,
    },
}

/// A provider's card on `compute.cards`, refreshed every
/// `capacity_refresh_sec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCard {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The provider.
    pub provider_id: ProviderId,
    /// The coalition (network) it serves.
    pub coalition: String,
    /// compute-bridge version.
    pub module_version: String,
    /// The provider's node on the coalition (its mosaik peer id):
    /// requesters subscribe to its streams and accept access, usage and
    /// declines only from it.
    pub node: NodeId,
    /// Per-backend capabilities and use, in routing order.
    pub backends: Vec<BackendOffer>,
    /// Most grants served at once.
    pub concurrency_cap: u32,
    /// Grants running now.
    pub active_grants: u32,
    /// X25519 public key grants' envelopes are sealed to.
    pub envelope_key: [u8; 32],
    /// Attestation.
    pub attestation: Attestation,
    /// The measurement log beside the quote: every backend component and
    /// its policy, in the order they were extended into RTMR3 (a TDX card's
    /// log must replay to its quote's RTMR3).
    pub measurements: MeasurementLog,
    /// Unix seconds of this refresh.
    pub refreshed_at: u64,
}

impl ProviderCard {
    /// True when `provider_id` is the id bound to `envelope_key`.
    pub fn is_self_consistent(&self) -> bool {
        ProviderId::from_envelope_key(&self.envelope_key) == self.provider_id
    }
}

/// What a grant asks to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Image pinned by digest: `NAME@sha256:<64 hex>`.
    pub image: String,
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// Region asked for.
    pub region: Option<String>,
    /// TDX requirement.
    pub tdx: TdxRequirement,
}

impl Manifest {
    /// True when `image` is pinned by a SHA-256 digest.
    pub fn image_is_pinned(&self) -> bool {
        match self.image.rsplit_once("@sha256:") {
            Some((name, digest)) => {
                !name.is_empty()
                    && name.len() <= 255
                    && name.chars().all(|c| c.is_ascii_graphic())
                    && digest.len() == 64
                    && digest
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            }
            None => false,
        }
    }
}

/// HPKE output: the encapsulated key and the ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Encapsulated X25519 key (32 bytes).
    pub enc: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// A request for compute addressed to one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeGrant {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// Opaque id.
    pub request_id: RequestId,
    /// The provider it is for; every other provider ignores it.
    pub provider_id: ProviderId,
    /// What to run.
    pub manifest: Manifest,
    /// Coalition tick (unix seconds) from which it may start.
    pub valid_from: u64,
    /// Coalition tick (unix seconds) by which the workload must be gone.
    pub valid_to: u64,
    /// [`GrantSecrets`], sealed to the provider's envelope key with the
    /// grant's public fields as associated data.
    pub envelope: Sealed,
}

/// The public fields of a grant, bound into its envelope as associated
/// data so an envelope cannot be moved to another grant.
#[derive(Serialize)]
struct GrantBinding<'a> {
    version: u16,
    request_id: &'a RequestId,
    provider_id: &'a ProviderId,
    manifest: &'a Manifest,
    valid_from: u64,
    valid_to: u64,
}

impl ComputeGrant {
    /// A new grant of this protocol version, with a fresh random request
    /// id, for `manifest` on `provider_id` between `valid_from` and
    /// `valid_to` (Unix seconds). Its envelope is empty: seal it with
    /// the envelope module of the coalition link (`seal_grant`) once the public fields are final,
    /// since the seal binds them.
    pub fn unsealed(
        provider_id: ProviderId,
        manifest: Manifest,
        valid_from: u64,
        valid_to: u64,
    ) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            request_id: RequestId::random(),
            provider_id,
            manifest,
            valid_from,
            valid_to,
            envelope: Sealed {
                enc: Vec::new(),
                ciphertext: Vec::new(),
            },
        }
    }

    /// The associated data its envelope is sealed with.
    pub fn binding(&self) -> Vec<u8> {
        grant_binding(
            self.version,
            &self.request_id,
            &self.provider_id,
            &self.manifest,
            self.valid_from,
            self.valid_to,
        )
    }
}

/// The associated data for a grant with these public fields.
pub fn grant_binding(
    version: u16,
    request_id: &RequestId,
    provider_id: &ProviderId,
    manifest: &Manifest,
    valid_from: u64,
    valid_to: u64,
) -> Vec<u8> {
    postcard::to_allocvec(&GrantBinding {
        version,
        request_id,
        provider_id,
        manifest,
        valid_from,
        valid_to,
    })
    .expect("grant fields serialize")
}

/// What only the addressed provider reads from a grant.
#[derive(Clone, Serialize, Deserialize)]
pub struct GrantSecrets {
    /// The requester's one-time X25519 public key; the access bundle is
    /// sealed to it.
    pub reply_key: [u8; 32],
}

/// A sealed [`AccessBundle`] for one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSealed {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The grant.
    pub request_id: RequestId,
    /// The provider that sealed it.
    pub provider_id: ProviderId,
    /// The bundle, sealed to the grant's reply key.
    pub bundle: Sealed,
}

impl AccessSealed {
    /// The associated data the bundle is sealed with.
    pub fn binding(version: u16, request_id: &RequestId, provider_id: &ProviderId) -> Vec<u8> {
        postcard::to_allocvec(&(version, request_id, provider_id)).expect("serializes")
    }
}

/// How to log into a workload. Exists in clear only in the provider's memory
/// until sealed, and in the requester's after opening.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessBundle {
    /// Host to connect to.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login.
    pub user: String,
    /// OpenSSH private key (ed25519) generated by the provider for this
    /// grant alone.
    pub private_key: String,
    /// The workload's SSH host key (`ssh-ed25519 AAAA...`), or empty if the
    /// backend could not say.
    pub host_key: String,
}

/// Why an access bundle is not safe to hand to a requester: the field and
/// what is wrong with it (values are shown escaped and cut short, so the
/// text is safe to print or log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its `{field}` {reason}")]
pub struct AccessInvalid {
    /// The field (`host`, `port`, `user`, `host_key`, `private_key`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl AccessBundle {
    /// Check every field before the bundle is sealed (provider) and after
    /// it is opened (requester): `host` a host name or IP address, `port`
    /// not 0, `user` a POSIX portable login name, `host_key` empty or one
    /// OpenSSH public key line of a known type, `private_key` an OpenSSH
    /// private key. Each is a word the requester's shell and ssh take as
    /// it is: nothing here can become a second word, an option or a
    /// second known_hosts line.
    pub fn check(&self) -> Result<(), AccessInvalid> {
        let bad = |field, reason| AccessInvalid { field, reason };
        check_host(&self.host).map_err(|r| bad("host", r))?;
        if self.port == 0 {
            return Err(bad("port", "is 0".into()));
        }
        check_login_name(&self.user).map_err(|r| bad("user", r))?;
        if !self.host_key.is_empty() {
            check_host_key(&self.host_key).map_err(|r| bad("host_key", r))?;
        }
        if self.private_key.len() > bounds::PRIVATE_KEY_BYTES
            || ssh_key::PrivateKey::from_openssh(self.private_key.as_bytes()).is_err()
        {
            return Err(bad("private_key", "is not an OpenSSH private key".into()));
        }
        Ok(())
    }
}

/// `s` as a requester or operator may be shown it: escaped (no control
/// character, no line break survives) and cut to 48 characters.
pub fn shown(s: &str) -> String {
    const KEEP: usize = 48;
    let mut out: String = format!("{:?}", s.chars().take(KEEP).collect::<String>());
    if s.chars().nth(KEEP).is_some() {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
}

/// A POSIX portable login name (POSIX.1-2017, 3.437 User Name, from the
/// portable filename character set, 3.282): 1 to [`bounds::USER_BYTES`]
/// of `A–Z a–z 0–9 . _ -`, not starting with `-`.
pub fn check_login_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= bounds::USER_BYTES
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a POSIX portable login name (1 to {} of A-Z a-z 0-9 . _ -, not starting with -)",
            shown(s),
            bounds::USER_BYTES
        ))
    }
}

/// A host to connect to: an IPv4 or IPv6 address, or a DNS host name (RFC
/// 1123 §2.1: labels of 1 to 63 letters, digits and `-`, not starting or
/// ending with `-`, at most 253 bytes, an optional trailing dot; the last
/// label not all digits, so it cannot pass for a mistyped address).
pub fn check_host(s: &str) -> Result<(), String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = name.split('.').collect();
    let ok = !name.is_empty()
        && s.len() <= bounds::HOST_BYTES
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a host name or IP address (a host name is at most {} bytes of RFC 1123 labels)",
            shown(s),
            bounds::HOST_BYTES
        ))
    }
}

/// Exactly one OpenSSH public key line (`TYPE BASE64 [COMMENT]`, RFC 4253
/// §6.6 key blobs as `ssh-keygen` writes them) of a host key type OpenSSH
/// accepts by default (`ssh-ed25519`, `ecdsa-sha2-nistp256/384/521`,
/// `ssh-rsa`), parsed; returns its canonical form `TYPE BASE64`, without
/// the comment.
pub fn check_host_key(s: &str) -> Result<String, String> {
    use ssh_key::{Algorithm, PublicKey};
    let refuse = |why: &str| Err(format!("{} is not {why}", shown(s)));
    if s.len() > bounds::HOST_KEY_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {} bytes",
            s.len(),
            bounds::HOST_KEY_BYTES
        ));
    }
    if s.chars().any(char::is_control) {
        return refuse("one OpenSSH public key line (it holds a line break or control character)");
    }
    let Ok(mut key) = PublicKey::from_openssh(s.trim()) else {
        return refuse("an OpenSSH public key line");
    };
    let known = matches!(
        key.algorithm(),
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. }
    );
    if !known || s.split_whitespace().next() != Some(key.algorithm().as_str()) {
        return refuse(
            "a host key of a known type (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)",
        );
    }
    key.set_comment("");
    key.to_openssh()
        .map(|k| k.trim().to_string())
        .or_else(|_| refuse("an OpenSSH public key line"))
}

impl fmt::Debug for AccessBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessBundle")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"<redacted>")
            .field("host_key", &self.host_key)
            .finish()
    }
}

impl Drop for AccessBundle {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

/// How a workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadEnding {
    /// It exited by itself with this code.
    Exited(i32),
    /// It disappeared.
    Gone,
    /// Its grant expired and the provider terminated it.
    Expired,
}

impl fmt::Display for WorkloadEnding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exited with code {c}"),
            Self::Gone => f.write_str("gone"),
            Self::Expired => f.write_str("expired at valid_to"),
        }
    }
}

/// What a grant's workload used, sent once after it was torn down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The grant.
    pub request_id: RequestId,
    /// The provider.
    pub provider_id: ProviderId,
    /// How it ended.
    pub ending: WorkloadEnding,
    /// What it used.
    pub usage: Usage,
    /// Unix seconds it was provisioned.
    pub started_at: u64,
    /// Unix seconds it was torn down.
    pub ended_at: u64,
}

/// Why a grant was declined, as a kind (no free text that could quote the
/// grant back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeclineReason {
    /// The envelope or grant could not be decoded or opened.
    Malformed,
    /// `valid_to` has passed.
    Expired,
    /// `valid_from` is in the future.
    NotYetValid,
    /// Zero or absurd resources.
    BadResources,
    /// A request id seen before.
    Duplicate,
    /// The concurrency cap is reached.
    ConcurrencyCap,
    /// No enabled backend can ever serve it.
    NoBackend,
    /// Backends could serve it but none has room now.
    OverCapacity,
    /// Every candidate failed with no-capacity or transient.
    BackendsFailed,
    /// A backend rejected it.
    Rejected,
    /// A backend reported a configuration problem.
    BackendConfig,
    /// A backend failed otherwise.
    BackendError,
    /// The bridge is shutting down.
    ShuttingDown,
    /// The journal cannot record it (e.g. disk full), so it is not taken.
    JournalUnavailable,
}

impl DeclineReason {
    /// The kebab-case name, as shown and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::BadResources => "bad-resources",
            Self::Duplicate => "duplicate",
            Self::ConcurrencyCap => "concurrency-cap",
            Self::NoBackend => "no-backend",
            Self::OverCapacity => "over-capacity",
            Self::BackendsFailed => "backends-failed",
            Self::Rejected => "rejected",
            Self::BackendConfig => "backend-config",
            Self::BackendError => "backend-error",
            Self::ShuttingDown => "shutting-down",
            Self::JournalUnavailable => "journal-unavailable",
        }
    }

    /// Every reason, for exhaustive displays and tests.
    pub const ALL: [DeclineReason; 14] = [
        Self::Malformed,
        Self::Expired,
        Self::NotYetValid,
        Self::BadResources,
        Self::Duplicate,
        Self::ConcurrencyCap,
        Self::NoBackend,
        Self::OverCapacity,
        Self::BackendsFailed,
        Self::Rejected,
        Self::BackendConfig,
        Self::BackendError,
        Self::ShuttingDown,
        Self::JournalUnavailable,
    ];
}

/// A grant the provider will not serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The grant.
    pub request_id: RequestId,
    /// The provider.
    pub provider_id: ProviderId,
    /// Why, as a kind. `shutting-down` is also what a provider sends for a
    /// grant it provisioned but had not handed access for when it stopped:
    /// on restart it tears that workload down and declines.
    pub reason: DeclineReason,
}

/// A settlement period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds, inclusive.
    pub from: u64,
    /// Unix seconds, exclusive.
    pub to: u64,
}

/// Revenue the market credits to a provider for a window. It carries no
/// attribution: no requester, no grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The provider credited.
    pub provider_id: ProviderId,
    /// Amount in millionths of a US dollar.
    pub amount_micro_usd: u64,
    /// The period it covers.
    pub window: Window,
}

impl Settlement {
    /// The amount in US dollars.
    pub fn usd(&self) -> f64 {
        self.amount_micro_usd as f64 / 1_000_000.0
    }
}

/// Parse a dollar amount (`12.5`, `0.000001`) into micro-dollars.
pub fn parse_usd(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("{s:?} is not an amount in USD"))?;
    if !v.is_finite() || !(0.0..=1e12).contains(&v) {
        return Err(format!("{s:?} is not an amount between 0 and 1e12 USD"));
    }
    Ok((v * 1_000_000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(image: &str) -> Manifest {
        Manifest {
            image: image.into(),
            cpu_millicores: 100,
            ram_mib: 64,
            region: None,
            tdx: TdxRequirement::None,
        }
    }

    #[test]
    fn ids_round_trip_as_hex() {
        let id = RequestId::random();
        assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), id);
        let wire = postcard::to_allocvec(&id).unwrap();
        assert_eq!(wire.len(), 16);
        assert_eq!(postcard::from_bytes::<RequestId>(&wire).unwrap(), id);
        assert!("xyz".parse::<ProviderId>().is_err());
        assert!("00".parse::<ProviderId>().is_err());
    }

    #[test]
    fn node_ids_are_32_raw_bytes_on_the_wire_and_hex_in_json() {
        let n = NodeId([0xab; 32]);
        let wire = postcard::to_allocvec(&n).unwrap();
        assert_eq!(wire, [0xab; 32]);
        assert_eq!(postcard::from_bytes::<NodeId>(&wire).unwrap(), n);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), n);
        assert!("ab".parse::<NodeId>().is_err());
        assert!("zz".repeat(32).parse::<NodeId>().is_err());
    }

    #[test]
    fn provider_id_is_bound_to_the_envelope_key() {
        let a = ProviderId::from_envelope_key(&[1; 32]);
        assert_eq!(a, ProviderId::from_envelope_key(&[1; 32]));
        assert_ne!(a, ProviderId::from_envelope_key(&[2; 32]));
    }

    #[test]
    fn only_digest_pinned_images_pass() {
        let d = "a".repeat(64);
        assert!(manifest(&format!("alpine@sha256:{d}")).image_is_pinned());
        assert!(!manifest("alpine:latest").image_is_pinned());
        assert!(!manifest(&format!("@sha256:{d}")).image_is_pinned());
        assert!(!manifest("alpine@sha256:abc").image_is_pinned());
        assert!(!manifest(&format!("alpine@sha256:{}", "A".repeat(64))).image_is_pinned());
    }

    #[test]
    fn the_binding_changes_with_every_public_field() {
        let m = manifest("x@sha256:0");
        let (r, p) = (RequestId([1; 16]), ProviderId([2; 16]));
        let base = grant_binding(1, &r, &p, &m, 10, 20);
        assert_ne!(base, grant_binding(1, &r, &p, &m, 10, 21));
        assert_ne!(base, grant_binding(1, &RequestId([3; 16]), &p, &m, 10, 20));
        let mut m2 = m.clone();
        m2.cpu_millicores += 1;
        assert_ne!(base, grant_binding(1, &r, &p, &m2, 10, 20));
    }

    #[test]
    fn usd_parses_to_micro_dollars() {
        assert_eq!(parse_usd("12.5").unwrap(), 12_500_000);
        assert_eq!(parse_usd("$0.000001").unwrap(), 1);
        assert!(parse_usd("-1").is_err());
        assert!(parse_usd("NaN").is_err());
    }

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";

    #[test]
    fn logins_hosts_and_host_keys_are_words_nothing_can_follow() {
        for ok in ["cb-5f0c1e2d", "ubuntu", "a.b_c-d", "_svc"] {
            assert_eq!(check_login_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=sh",
            "x $(touch ~/pwned)",
            "a\nb",
            "r\u{f6}ot",
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "a@b",
        ] {
            let e = check_login_name(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        for ok in [
            "127.0.0.1",
            "::1",
            "2001:db8::7",
            "a.example.net",
            "a.example.net.",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = format!("{}com", "a.".repeat(130));
        for bad in [
            "",
            "-oProxyCommand=sh",
            "127.0.0.1 -oProxyCommand=sh",
            "[::1]",
            "a..b",
            "-a.b",
            "a-.b",
            "1.2.3.999",
            "h\nx",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert_eq!(check_host_key(ED25519).unwrap(), ED25519);
        assert_eq!(
            check_host_key(&format!("{ED25519} root@host")).unwrap(),
            ED25519
        );
        for bad in [
            format!("{ED25519}\n* {ED25519}"),
            format!("{ED25519}\r"),
            ED25519.replace("ssh-ed25519", "ssh-rsa"),
            ED25519.replace("AAAAC3", "AAAAC4"),
            "ssh-ed25519".into(),
            String::new(),
            format!("@cert-authority * {ED25519}"),
        ] {
            assert!(check_host_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_offer_goes_into_the_card_within_its_bounds() {
        let caps = crate::backend::Offer {
            regions: (0..65_536)
                .map(|i| format!("r{i}-{}", "x".repeat(58)))
                .collect(),
            tdx_capable: false,
            max_cpu_millicores: u32::MAX,
            max_ram_mib: u32::MAX,
            td_measurements: (0..65_536)
                .map(|i| crate::backend::TdMeasurement {
                    region: format!("r{i}-{}", "x".repeat(58)),
                    mrtd: "ab".repeat(48),
                })
                .chain([crate::backend::TdMeasurement {
                    region: "r0-x".into(),
                    mrtd: "AB".repeat(48),
                }])
                .collect(),
        };
        let o = BackendOffer::bounded("b".into(), true, caps, 0, 0);
        assert_eq!(o.regions.len(), bounds::REGIONS);
        assert_eq!(o.td_measurements.len(), bounds::REGIONS);
        assert!(
            o.td_measurements
                .iter()
                .all(|m| o.regions.contains(&m.region))
        );
        assert_eq!(o.max_cpu_millicores, bounds::BACKEND_CPU_MILLICORES);
        assert_eq!(o.max_ram_mib, bounds::BACKEND_RAM_MIB);
        let wire = postcard::to_allocvec(&o).unwrap().len();
        // 128 regions of 64 bytes and 128 MR_TDs of 96 hex digits.
        assert!(wire <= 30 * 1024, "{wire} bytes");
    }

    /// `name`'s postcard bytes (hex) and JSON, one block each.
    fn pinned<T: Serialize>(out: &mut String, name: &str, v: &T) {
        let wire = postcard::to_allocvec(v).unwrap();
        let json = serde_json::to_string(v).unwrap();
        out.push_str(&format!("== {name}\n{}\n{json}\n", hex::encode(wire)));
    }

    /// Compare with the pinned text; on a difference, write what was seen
    /// in the temp dir so it can be inspected (the test still fails).
    fn check_pins(actual: &str, expected: &str, file: &str) {
        if actual != expected {
            let seen = std::env::temp_dir().join(format!("{file}.seen"));
            std::fs::write(&seen, actual).unwrap();
            panic!(
                "the encoding differs from {file} (what was seen is in {}): \
                 a change to the wire or on-disk format needs a version bump, not a new pin",
                seen.display()
            );
        }
    }

    /// One of each message, byte for byte as it goes on the wire (postcard)
    /// and as `providers --json` and the journal show it (JSON): a move or
    /// rename must not change a byte.
    #[test]
    fn every_message_encodes_as_pinned() {
        // The mosaik peer id of the secret key [7; 32] (these pins were
        // taken while the card still held a `mosaik::PeerId`).
        let node: NodeId = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            .parse()
            .unwrap();
        let provider_id = ProviderId::from_envelope_key(&[9; 32]);
        let request_id = RequestId([0x5a; 16]);
        let mut out = String::new();
        let card = ProviderCard {
            version: PROTOCOL_VERSION,
            provider_id,
            coalition: "local.dev".into(),
            module_version: "0.1.0".into(),
            node,
            backends: vec![BackendOffer {
                name: "rack-1".into(),
                enabled: true,
                regions: vec!["eu-west-1".into(), "us-east-1".into()],
                tdx_capable: true,
                max_cpu_millicores: 64_000,
                max_ram_mib: 262_144,
                used_cpu_millicores: 2_000,
                used_ram_mib: 4_096,
                td_measurements: vec![crate::backend::TdMeasurement {
                    region: "eu-west-1".into(),
                    mrtd: "a5".repeat(48),
                }],
            }],
            concurrency_cap: 64,
            active_grants: 3,
            envelope_key: [9; 32],
            attestation: Attestation::Tdx {
                quote: vec![4, 0, 2, 0, 0x81, 0, 0, 0],
            },
            measurements: {
                let mut log = MeasurementLog {
                    extended: true,
                    events: Vec::new(),
                };
                log.push(crate::measurement::BackendMeasurement {
                    backend: "rack-1".into(),
                    component_sha256: crate::measurement::ComponentDigest([0xc0; 32]),
                    policy: crate::measurement::BackendPolicy {
                        allowed_origins: vec!["https://api.example".into()],
                        ssh_hosts: vec![crate::measurement::SshPin {
                            label: "rack-01".into(),
                            host_key: Some("ssh-ed25519 AAAAKEY".into()),
                        }],
                        memory_limit_mib: 64,
                        call_timeout_sec: 30,
                        capabilities_sha256: "5e".repeat(32),
                    },
                });
                log
            },
            refreshed_at: 1_764_460_800,
        };
        pinned(&mut out, "card", &card);
        pinned(
            &mut out,
            "card without attestation",
            &ProviderCard {
                attestation: Attestation::None,
                backends: Vec::new(),
                measurements: MeasurementLog::default(),
                ..card
            },
        );
        let manifest = Manifest {
            image: format!("alpine@sha256:{}", "ab".repeat(32)),
            cpu_millicores: 1_500,
            ram_mib: 2_048,
            region: Some("eu-west-1".into()),
            tdx: TdxRequirement::Required,
        };
        let sealed = Sealed {
            enc: vec![1; 32],
            ciphertext: vec![2; 48],
        };
        pinned(
            &mut out,
            "grant",
            &ComputeGrant {
                version: PROTOCOL_VERSION,
                request_id,
                provider_id,
                manifest: manifest.clone(),
                valid_from: 1_764_460_800,
                valid_to: 1_764_464_400,
                envelope: sealed.clone(),
            },
        );
        for tdx in [TdxRequirement::None, TdxRequirement::Preferred] {
            pinned(
                &mut out,
                &format!("manifest {tdx:?}, no region"),
                &Manifest {
                    region: None,
                    tdx,
                    ..manifest.clone()
                },
            );
        }
        pinned(
            &mut out,
            "grant binding",
            &hex::encode(grant_binding(
                PROTOCOL_VERSION,
                &request_id,
                &provider_id,
                &manifest,
                1,
                2,
            )),
        );
        pinned(
            &mut out,
            "grant secrets",
            &GrantSecrets { reply_key: [3; 32] },
        );
        pinned(
            &mut out,
            "access",
            &AccessSealed {
                version: PROTOCOL_VERSION,
                request_id,
                provider_id,
                bundle: sealed,
            },
        );
        pinned(
            &mut out,
            "access binding",
            &hex::encode(AccessSealed::binding(
                PROTOCOL_VERSION,
                &request_id,
                &provider_id,
            )),
        );
        pinned(
            &mut out,
            "access bundle",
            &AccessBundle {
                host: "203.0.113.7".into(),
                port: 2222,
                user: "cb-5f0c1e2d".into(),
                private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
                host_key: ED25519.into(),
            },
        );
        for ending in [
            WorkloadEnding::Exited(0),
            WorkloadEnding::Exited(-9),
            WorkloadEnding::Gone,
            WorkloadEnding::Expired,
        ] {
            pinned(
                &mut out,
                &format!("usage report, {ending}"),
                &UsageReport {
                    version: PROTOCOL_VERSION,
                    request_id,
                    provider_id,
                    ending,
                    usage: Usage {
                        cpu_core_seconds: 5_400,
                        ram_mib_seconds: 7_372_800,
                        net_bytes: 1 << 33,
                    },
                    started_at: 1_764_460_800,
                    ended_at: 1_764_464_400,
                },
            );
        }
        for reason in DeclineReason::ALL {
            pinned(
                &mut out,
                &format!("decline, {}", reason.as_str()),
                &Decline {
                    version: PROTOCOL_VERSION,
                    request_id,
                    provider_id,
                    reason,
                },
            );
        }
        pinned(
            &mut out,
            "settlement",
            &Settlement {
                version: PROTOCOL_VERSION,
                provider_id,
                amount_micro_usd: 12_500_000,
                window: Window {
                    from: 1_764_460_800,
                    to: 1_764_547_200,
                },
            },
        );
        check_pins(&out, include_str!("protocol.pins"), "protocol.pins");
    }

    #[test]
    fn access_bundle_debug_hides_the_key() {
        let b = AccessBundle {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----secret".into(),
            host_key: String::new(),
        };
        assert!(!format!("{b:?}").contains("secret"));
    }
}
