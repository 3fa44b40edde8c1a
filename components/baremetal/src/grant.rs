//! A grant as this backend sees it, its id on hosts, and the handle the
//! bridge stores for it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::config::RuntimeKind;

/// The parts of a grant-spec placement looks at.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// Opaque request id.
    pub request_id: &'a str,
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// Region asked for.
    pub region: Option<&'a str>,
    /// Only a TDX-capable host may take it.
    pub tdx_required: bool,
    /// Image pinned by digest (the `podman` runtime runs it).
    pub image: &'a str,
    /// Unix seconds after which the workload must be gone.
    pub valid_to: u64,
}

/// A grant's name on a host: `cb-` and 12 hex digits of a hash of the
/// provider, backend and request ids. It names the Unix account, the
/// cgroup, the unit or container, and the state directory. Hashing keeps it
/// short (account names are limited to 32 characters), safe in any shell
/// or path, and says nothing about the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantId(String);

impl GrantId {
    /// The id of `request_id` for this provider and backend.
    pub fn new(provider_id: &str, backend: &str, request_id: &str) -> Self {
        let digest = Sha256::digest(format!("{provider_id}\n{backend}\n{request_id}"));
        Self(format!("cb-{}", &hex::encode(digest)[..12]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GrantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() == 15
            && s.starts_with("cb-")
            && s[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("{s:?} is not a grant id (cb- and 12 hex digits)"))
        }
    }
}

impl From<GrantId> for String {
    fn from(id: GrantId) -> String {
        id.0
    }
}

impl std::fmt::Display for GrantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the backend keeps in `instance.handle` (JSON): enough to find the
/// grant again on its host. Everything else is read from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// Label of the host it runs on.
    pub label: String,
    /// Its id there.
    pub id: GrantId,
    /// Runtime it was provisioned with.
    pub runtime: HandleRuntime,
    /// The limit mechanism that applied (`systemd`, `cgroup2`, `cgroup1`,
    /// `prlimit`, or `podman`), for the operator's eyes.
    pub limits: String,
}

/// [`RuntimeKind`] as stored in a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandleRuntime {
    /// `process`
    Process,
    /// `podman`
    Podman,
    /// `vm`
    Vm,
}

impl From<RuntimeKind> for HandleRuntime {
    fn from(r: RuntimeKind) -> Self {
        match r {
            RuntimeKind::Process => Self::Process,
            RuntimeKind::Podman => Self::Podman,
            RuntimeKind::Vm => Self::Vm,
        }
    }
}

impl Handle {
    /// Serialize for `instance.handle`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a handle serializes")
    }

    /// Parse `instance.handle`; anything else is `rejected`.
    pub fn decode(s: &str) -> Result<Self, Error> {
        serde_json::from_str(s)
            .map_err(|e| Error::Rejected(format!("not a bare-metal instance handle: {e}")))
    }
}

/// Check a request id before it is written on a host: printable, no
/// whitespace or quotes, at most 128 bytes.
pub fn check_request_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"'\"\\`$".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Rejected(
            "request id must be 1-128 printable characters without quotes".into(),
        ))
    }
}

/// Check that `image` is pinned by digest (`name@sha256:<64 hex>`) and safe
/// to pass to podman.
pub fn check_image(image: &str) -> Result<(), Error> {
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return Err(Error::Rejected(format!(
            "image {image:?} is not pinned by digest (name@sha256:...)"
        )));
    };
    let name_ok = !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./_:-".contains(&b));
    let digest_ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    if name_ok && digest_ok {
        Ok(())
    } else {
        Err(Error::Rejected(format!(
            "image {image:?} is not a valid reference pinned by a sha256 digest"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_stable_and_distinct_per_provider() {
        let a = GrantId::new("p1", "baremetal", "req-1");
        assert_eq!(a, GrantId::new("p1", "baremetal", "req-1"));
        assert_ne!(a, GrantId::new("p2", "baremetal", "req-1"));
        assert_ne!(a, GrantId::new("p1", "baremetal", "req-2"));
        assert_eq!(a.as_str().len(), 15);
        assert!(GrantId::try_from(a.to_string()).is_ok());
    }

    #[test]
    fn a_handle_round_trips_and_a_forged_id_is_refused() {
        let h = Handle {
            label: "rack".into(),
            id: GrantId::new("p", "b", "r"),
            runtime: HandleRuntime::Process,
            limits: "cgroup1".into(),
        };
        assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
        let forged = h.encode().replace(h.id.as_str(), "cb-x; rm -rf /");
        assert!(matches!(Handle::decode(&forged), Err(Error::Rejected(_))));
    }

    #[test]
    fn images_must_be_pinned() {
        let d = "a".repeat(64);
        assert!(check_image(&format!("docker.io/library/alpine@sha256:{d}")).is_ok());
        assert!(check_image("alpine:latest").is_err());
        assert!(check_image(&format!("--privileged@sha256:{d}")).is_err());
        assert!(check_image(&format!("alpine@sha256:{}", "a".repeat(63))).is_err());
    }

    #[test]
    fn request_ids_with_quotes_are_refused() {
        assert!(check_request_id("req-42.a:b").is_ok());
        assert!(check_request_id("a'b").is_err());
        assert!(check_request_id("a b").is_err());
        assert!(check_request_id("").is_err());
    }
}
