//! A TDX measurement register (MR_TD or an RTMR) as the config, the card
//! check and `compute-bridge attest` name it, and the measurement of a
//! backend component (issue 20): the event, its canonical policy encoding,
//! its digest and the replay of a log of them into an RTMR3 value.
//!
//! # Event digest
//!
//! ```text
//! policy = SHA-384( "compute-bridge/backend-policy/v1"
//!                 ‖ u32be(#origins) ‖ (u32be(len) ‖ origin)*      sorted, deduplicated
//!                 ‖ u32be(#pins) ‖ (u32be(len) ‖ label ‖ 0|1 [‖ u32be(len) ‖ host key])*  sorted
//!                 ‖ u32be(memory_limit_mib) ‖ u64be(call_timeout_sec)
//!                 ‖ u32be(64) ‖ capabilities_sha256 (hex) )
//! event  = SHA-384( "compute-bridge/backend-measurement/v1"
//!                 ‖ u32be(len(backend)) ‖ backend ‖ component SHA-256 (32 bytes) ‖ policy (48 bytes) )
//! RTMR3_0 = 48 zero bytes;  RTMR3_i = SHA-384(RTMR3_{i-1} ‖ event_i)
//! ```
//!
//! Tags and length prefixes keep the encoding unambiguous, as the card's
//! report data does; the replay is the TDX module's extend
//! (TDG.MR.RTMR.EXTEND), the one Dstack's verifiers replay too
//! (Dstack-TEE/dstack `cc-eventlog/src/tdx.rs`). A requester recomputes
//! every digest from the event's fields and trusts none it is handed.
//!
//! Invariants: a policy holds no secret and no config value (no keys'
//! private halves, no credentials, no `[backends.config]`); no I/O. Keeps
//! nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

/// A 48-byte TDX measurement register (MR_TD or an RTMR), shown as 96 hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 48]);

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

impl FromStr for Measurement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 48]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a measurement (48 bytes: 96 hex digits)"))
    }
}

impl Measurement {
    /// The value of a register nothing has extended: 48 zero bytes.
    pub const ZERO: Self = Self([0; 48]);
}

impl serde::Serialize for Measurement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A backend component's SHA-256 (of its `.wasm` bytes), shown and parsed
/// as `sha256:<64 hex digits>`: the id `--require-component` names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentDigest(pub [u8; 32]);

impl ComponentDigest {
    /// The digest of a component's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ComponentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ComponentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComponentDigest({self})")
    }
}

impl FromStr for ComponentDigest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .strip_prefix("sha256:")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a component digest (sha256: and 64 hex digits)"))
    }
}

impl serde::Serialize for ComponentDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for ComponentDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Domain tag at the start of a backend measurement event's preimage.
pub const EVENT_TAG: &[u8] = b"compute-bridge/backend-measurement/v1";

/// Domain tag at the start of a backend policy's canonical encoding.
pub const POLICY_TAG: &[u8] = b"compute-bridge/backend-policy/v1";

/// An SSH host label a backend may reach, with the host key it is pinned
/// to (`None`: the label runs commands locally, no key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SshPin {
    /// The label the component names.
    pub label: String,
    /// The pinned host key (OpenSSH public-key line).
    pub host_key: Option<String>,
}

/// What a backend component runs under, as measured: never a secret or a
/// config value, only what bounds the component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPolicy {
    /// Allowed HTTP origins, normalised.
    pub allowed_origins: Vec<String>,
    /// SSH host labels with their pinned keys.
    pub ssh_hosts: Vec<SshPin>,
    /// Linear-memory limit of one call, MiB.
    pub memory_limit_mib: u32,
    /// Wall-clock limit of one call, seconds.
    pub call_timeout_sec: u64,
    /// SHA-256 of every capability's non-secret policy (the sandbox's
    /// `Sections::measure`: origins, fixed resolutions, SSH addresses,
    /// users and keys, bounds), as 64 hex digits.
    pub capabilities_sha256: String,
}

impl BackendPolicy {
    /// The canonical encoding: the tag, then the origins sorted and
    /// deduplicated, the SSH pins sorted by label, the two limits and the
    /// capabilities digest; every string length-prefixed (`u32` big-endian),
    /// every count too. The order the fields are listed in does not matter.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, s: &str) {
            let len = u32::try_from(s.len()).expect("policy strings are short");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn count(out: &mut Vec<u8>, n: usize) {
            let n = u32::try_from(n).expect("policy lists are short");
            out.extend_from_slice(&n.to_be_bytes());
        }
        let mut origins: Vec<&str> = self.allowed_origins.iter().map(String::as_str).collect();
        origins.sort_unstable();
        origins.dedup();
        let mut pins: Vec<&SshPin> = self.ssh_hosts.iter().collect();
        pins.sort();
        pins.dedup();
        let mut out = Vec::from(POLICY_TAG);
        count(&mut out, origins.len());
        for o in origins {
            put(&mut out, o);
        }
        count(&mut out, pins.len());
        for p in pins {
            put(&mut out, &p.label);
            match &p.host_key {
                Some(k) => {
                    out.push(1);
                    put(&mut out, k);
                }
                None => out.push(0),
            }
        }
        out.extend_from_slice(&self.memory_limit_mib.to_be_bytes());
        out.extend_from_slice(&self.call_timeout_sec.to_be_bytes());
        put(&mut out, &self.capabilities_sha256);
        out
    }

    /// SHA-384 of [`canonical_bytes`](Self::canonical_bytes).
    pub fn digest(&self) -> Measurement {
        Measurement(Sha384::digest(self.canonical_bytes()).into())
    }

    /// A few words for `coalition-agent providers`: origins, SSH labels
    /// (with "pinned" when a key is), limits.
    pub fn summary(&self) -> String {
        let origins = if self.allowed_origins.is_empty() {
            "none".to_string()
        } else {
            self.allowed_origins.join(",")
        };
        let ssh = if self.ssh_hosts.is_empty() {
            "none".to_string()
        } else {
            self.ssh_hosts
                .iter()
                .map(|p| match p.host_key {
                    Some(_) => format!("{} (key pinned)", p.label),
                    None => format!("{} (local)", p.label),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "http=[{origins}] ssh=[{ssh}] memory={}MiB timeout={}s",
            self.memory_limit_mib, self.call_timeout_sec
        )
    }
}

/// One measurement event: a backend component and the policy it runs
/// under, extended into RTMR3 before the component serves its first call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendMeasurement {
    /// The backend's name.
    pub backend: String,
    /// SHA-256 of the component's `.wasm` bytes.
    pub component_sha256: ComponentDigest,
    /// Its policy.
    pub policy: BackendPolicy,
}

impl BackendMeasurement {
    /// The event's digest, the 48 bytes extended into RTMR3:
    /// `SHA-384(EVENT_TAG ‖ u32be(len(backend)) ‖ backend ‖ component_sha256
    /// (32 raw bytes) ‖ SHA-384(policy canonical bytes) (48 raw bytes))`.
    pub fn digest(&self) -> Measurement {
        event_digest(&self.backend, &self.component_sha256, &self.policy.digest())
    }
}

/// The digest of an event from its parts (see [`BackendMeasurement::digest`]).
pub fn event_digest(
    backend: &str,
    component: &ComponentDigest,
    policy_digest: &Measurement,
) -> Measurement {
    let mut h = Sha384::new();
    h.update(EVENT_TAG);
    let len = u32::try_from(backend.len()).expect("backend names are short");
    h.update(len.to_be_bytes());
    h.update(backend.as_bytes());
    h.update(component.0);
    h.update(policy_digest.0);
    Measurement(h.finalize().into())
}

/// One extend, as the TDX module computes it: `SHA-384(old ‖ digest)`.
pub fn extend(old: &Measurement, digest: &Measurement) -> Measurement {
    let mut h = Sha384::new();
    h.update(old.0);
    h.update(digest.0);
    Measurement(h.finalize().into())
}

/// The register value `events` give when extended in order into a register
/// that starts at zero; every digest is recomputed from the event.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a BackendMeasurement>) -> Measurement {
    events
        .into_iter()
        .fold(Measurement::ZERO, |mr, e| extend(&mr, &e.digest()))
}

/// An event as the log keeps it and the card carries it: its place in the
/// log and the digests the provider extended, so that a requester can say
/// which part of a bad log is wrong (it recomputes both and trusts
/// neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedMeasurement {
    /// Its place in the log, from 0.
    pub seq: u64,
    /// The event.
    pub event: BackendMeasurement,
    /// SHA-384 of its policy's canonical bytes.
    pub policy_sha384: Measurement,
    /// The event digest extended into RTMR3.
    pub digest: Measurement,
}

impl LoggedMeasurement {
    /// Event number `seq`, with its digests.
    pub fn new(seq: u64, event: BackendMeasurement) -> Self {
        Self {
            seq,
            policy_sha384: event.policy.digest(),
            digest: event.digest(),
            event,
        }
    }
}

/// The measurement log a card carries beside its quote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementLog {
    /// True when every event was extended into RTMR3 (`attestation =
    /// "tdx"`); false when the log was only kept (`attestation = "none"`):
    /// then nothing proves it.
    pub extended: bool,
    /// The events since boot, in the order they were extended.
    pub events: Vec<LoggedMeasurement>,
}

/// Why a measurement log does not prove what it says. Each way of breaking
/// it has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogRejected {
    /// An event is not at its place (the log was reordered, or an event
    /// removed from its middle).
    #[error("its measurement log is out of order: position {position} holds event {seq}")]
    OutOfOrder {
        /// Where it is.
        position: usize,
        /// The number it carries.
        seq: u64,
    },
    /// An event's policy is not the one whose digest was extended.
    #[error(
        "its measurement log shows backend {backend} (event {seq}) with a policy that was not \
         the one measured (allowed hosts, SSH pins or limits changed)"
    )]
    PolicyNotMeasured {
        /// The event.
        seq: u64,
        /// Its backend.
        backend: String,
    },
    /// An event's backend name or component is not the one whose digest
    /// was extended.
    #[error(
        "its measurement log shows backend {backend} (event {seq}) with component {component}, \
         which is not the component measured"
    )]
    ComponentNotMeasured {
        /// The event.
        seq: u64,
        /// Its backend.
        backend: String,
        /// The component it claims.
        component: ComponentDigest,
    },
    /// The recomputed log does not replay to the quote's RTMR3.
    #[error(
        "its measurement log replays to RTMR3 {replayed}, but its quote's RTMR3 is {quoted} \
         (the log was tampered with, truncated, or is from another boot)"
    )]
    ReplayMismatch {
        /// What the log gives.
        replayed: Measurement,
        /// What the quote says.
        quoted: Measurement,
    },
}

impl MeasurementLog {
    /// Check the log against the RTMR3 its quote carries: every event in
    /// its place, every digest recomputed from the event, and the replay
    /// equal to `rtmr3`.
    pub fn verify(&self, rtmr3: &Measurement) -> Result<(), LogRejected> {
        for (position, e) in self.events.iter().enumerate() {
            if e.seq != position as u64 {
                return Err(LogRejected::OutOfOrder {
                    position,
                    seq: e.seq,
                });
            }
            if e.event.policy.digest() != e.policy_sha384 {
                return Err(LogRejected::PolicyNotMeasured {
                    seq: e.seq,
                    backend: e.event.backend.clone(),
                });
            }
            if event_digest(
                &e.event.backend,
                &e.event.component_sha256,
                &e.policy_sha384,
            ) != e.digest
            {
                return Err(LogRejected::ComponentNotMeasured {
                    seq: e.seq,
                    backend: e.event.backend.clone(),
                    component: e.event.component_sha256,
                });
            }
        }
        let replayed = replay(self.events.iter().map(|e| &e.event));
        if replayed != *rtmr3 {
            return Err(LogRejected::ReplayMismatch {
                replayed,
                quoted: *rtmr3,
            });
        }
        Ok(())
    }

    /// The current measurement of each backend: the last event naming it.
    pub fn current(&self, backend: &str) -> Option<&BackendMeasurement> {
        self.events
            .iter()
            .rev()
            .map(|e| &e.event)
            .find(|e| e.backend == backend)
    }

    /// Append `event` as the next one.
    pub fn push(&mut self, event: BackendMeasurement) -> &LoggedMeasurement {
        let seq = self.events.len() as u64;
        self.events.push(LoggedMeasurement::new(seq, event));
        self.events.last().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackendPolicy {
        BackendPolicy {
            allowed_origins: vec!["https://b.example".into(), "https://a.example".into()],
            ssh_hosts: vec![
                SshPin {
                    label: "rack".into(),
                    host_key: Some("ssh-ed25519 AAAAKEY".into()),
                },
                SshPin {
                    label: "local".into(),
                    host_key: None,
                },
            ],
            memory_limit_mib: 256,
            call_timeout_sec: 30,
            capabilities_sha256: "ab".repeat(32),
        }
    }

    fn event() -> BackendMeasurement {
        BackendMeasurement {
            backend: "aws".into(),
            component_sha256: ComponentDigest([7; 32]),
            policy: policy(),
        }
    }

    fn m(hex: &str) -> Measurement {
        hex.parse().unwrap()
    }

    /// Computed independently (Python's hashlib over the layout in the
    /// module docs), so a change to the encoding cannot pass unnoticed.
    #[test]
    fn the_digests_match_the_known_answer() {
        assert_eq!(
            policy().digest(),
            m(
                "eb91dfc195095e82220c8767afb14c750c6c89d9a7b28edc3841719bef6d7b9c1df436d603ed511dbfe775b3a1241737"
            )
        );
        assert_eq!(
            event().digest(),
            m(
                "6a7165e33a450d71f004a134fa1d1181e07b5040cf4164efc3aa2c982c936e15be761142240c41adfa07808714a86ed4"
            )
        );
        assert_eq!(
            replay([&event()]),
            m(
                "0beb63964604165fdf3c111d51e4b8e23eec3764b7549f687aa55d6e68495f5641aa7ac9445323c6a7153d415eac6d63"
            )
        );
        assert_eq!(replay([]), Measurement::ZERO);
    }

    #[test]
    fn the_policy_encoding_ignores_list_order_and_follows_every_field() {
        let p = policy();
        let mut reordered = p.clone();
        reordered.allowed_origins.reverse();
        reordered.ssh_hosts.reverse();
        assert_eq!(p.digest(), reordered.digest());
        type Change = (&'static str, fn(&mut BackendPolicy));
        let changes: [Change; 6] = [
            ("an origin", |p| {
                p.allowed_origins[0] = "https://c.example".into()
            }),
            ("a pinned key", |p| {
                p.ssh_hosts[0].host_key = Some("ssh-ed25519 OTHER".into())
            }),
            ("a local label pinned", |p| {
                p.ssh_hosts[1].host_key = Some(String::new())
            }),
            ("the memory limit", |p| p.memory_limit_mib += 1),
            ("the time limit", |p| p.call_timeout_sec += 1),
            ("the capabilities", |p| {
                p.capabilities_sha256 = "cd".repeat(32)
            }),
        ];
        for (what, change) in changes {
            let mut q = p.clone();
            change(&mut q);
            assert_ne!(p.digest(), q.digest(), "{what} is not measured");
        }
        // The length prefixes keep a split between two origins from
        // colliding with another split.
        let mut a = p.clone();
        a.allowed_origins = vec!["https://ab".into(), "c".into()];
        let mut b = p.clone();
        b.allowed_origins = vec!["https://a".into(), "bc".into()];
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn the_event_digest_follows_name_and_component() {
        let e = event();
        let mut renamed = e.clone();
        renamed.backend = "aws2".into();
        assert_ne!(e.digest(), renamed.digest());
        let mut other = e.clone();
        other.component_sha256.0[31] ^= 1;
        assert_ne!(e.digest(), other.digest());
    }

    #[test]
    fn replay_is_order_sensitive_and_extends_like_the_tdx_module() {
        let a = event();
        let mut b = event();
        b.backend = "gcp".into();
        let ab = replay([&a, &b]);
        assert_eq!(
            ab,
            extend(&extend(&Measurement::ZERO, &a.digest()), &b.digest())
        );
        assert_ne!(ab, replay([&b, &a]));
    }

    fn log() -> MeasurementLog {
        let mut log = MeasurementLog {
            extended: true,
            events: Vec::new(),
        };
        log.push(event());
        let mut gcp = event();
        gcp.backend = "gcp".into();
        log.push(gcp);
        log
    }

    #[test]
    fn a_log_verifies_against_its_replay_and_each_break_has_its_reason() {
        let good = log();
        let rtmr3 = replay(good.events.iter().map(|e| &e.event));
        assert_eq!(good.verify(&rtmr3), Ok(()));

        let mut reordered = good.clone();
        reordered.events.swap(0, 1);
        assert!(matches!(
            reordered.verify(&rtmr3),
            Err(LogRejected::OutOfOrder {
                position: 0,
                seq: 1
            })
        ));

        let mut host = good.clone();
        host.events[1].event.policy.allowed_origins[0] = "https://evil.example".into();
        assert!(matches!(
            host.verify(&rtmr3),
            Err(LogRejected::PolicyNotMeasured { seq: 1, .. })
        ));

        let mut component = good.clone();
        component.events[0].event.component_sha256 = ComponentDigest([8; 32]);
        assert!(matches!(
            component.verify(&rtmr3),
            Err(LogRejected::ComponentNotMeasured { seq: 0, .. })
        ));

        let mut truncated = good.clone();
        truncated.events.pop();
        assert!(matches!(
            truncated.verify(&rtmr3),
            Err(LogRejected::ReplayMismatch { .. })
        ));

        // Consistent digests for another component still do not replay.
        let mut forged = good.clone();
        forged.events[0] = LoggedMeasurement::new(
            0,
            BackendMeasurement {
                component_sha256: ComponentDigest([8; 32]),
                ..event()
            },
        );
        assert!(matches!(
            forged.verify(&rtmr3),
            Err(LogRejected::ReplayMismatch { .. })
        ));
    }

    #[test]
    fn the_current_measurement_is_the_last_event_of_a_backend() {
        let mut log = log();
        let mut newer = event();
        newer.component_sha256 = ComponentDigest([9; 32]);
        log.push(newer.clone());
        assert_eq!(log.current("aws"), Some(&newer));
        assert_eq!(log.current("gcp").map(|e| e.backend.as_str()), Some("gcp"));
        assert_eq!(log.current("azure"), None);
    }

    #[test]
    fn digests_read_back_from_their_text() {
        let d = ComponentDigest([0xab; 32]);
        assert_eq!(d.to_string(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(d.to_string().parse::<ComponentDigest>(), Ok(d));
        assert!("ab".repeat(32).parse::<ComponentDigest>().is_err());
        assert!(
            format!("sha256:{}", "ab".repeat(31))
                .parse::<ComponentDigest>()
                .is_err()
        );
        let json = serde_json::to_string(&log()).unwrap();
        assert_eq!(
            serde_json::from_str::<MeasurementLog>(&json).unwrap(),
            log()
        );
        let wire = postcard::to_allocvec(&log()).unwrap();
        assert_eq!(
            postcard::from_bytes::<MeasurementLog>(&wire).unwrap(),
            log()
        );
    }
}
