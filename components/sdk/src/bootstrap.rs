//! The first-boot script a cloud VM runs for a workload: create the login,
//! authorise the workload's key, run the grant's image pinned by digest,
//! and power off when it exits.
//!
//! Cloud backends hand it to the VM as user data (GCP `startup-script`
//! metadata, Azure `customData` for cloud-init, EC2 `UserData`). Every value
//! is validated here and quoted for the shell, so a grant cannot smuggle
//! shell syntax into a root script.
//!
//! The script is idempotent: clouds may run it again on reboot (GCP runs
//! startup scripts at every boot), and the workload runs once only.
//! Powering off when the container exits is what lets the backend report
//! the workload as exited from the VM's power state.

use crate::BackendError;
use crate::ssh::shell_quote;

/// A container image reference pinned by digest: `name@sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage(String);

impl PinnedImage {
    /// Accept `name@sha256:<64 lower-case hex>` where `name` is a registry
    /// path (lower-case letters, digits, `.`, `_`, `-`, `/`, and `:` for a
    /// registry port). Anything else is `rejected`: the grant can never be
    /// served with it.
    pub fn parse(image: &str) -> Result<Self, BackendError> {
        let bad = |why: &str| {
            BackendError::rejected(format!(
                "image {image:?} is not pinned by digest (name@sha256:<64 hex>): {why}"
            ))
        };
        let (name, digest) = image
            .split_once("@sha256:")
            .ok_or_else(|| bad("no @sha256: digest"))?;
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the digest must be 64 lower-case hex characters"));
        }
        if name.is_empty()
            || name.len() > 255
            || name.starts_with(['/', '-', '.', ':'])
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
        {
            return Err(bad("the name has characters a registry path cannot have"));
        }
        Ok(Self(image.to_string()))
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login name a Linux cloud image accepts: `[a-z_][a-z0-9_-]{0,31}`.
pub fn check_user(user: &str) -> Result<(), BackendError> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BackendError::internal(format!(
            "workload login {user:?} is not a valid Linux user name"
        )))
    }
}

/// An OpenSSH public key on one line (`ssh-ed25519 AAAA... [comment]`).
pub fn check_public_key(key: &str) -> Result<(), BackendError> {
    let mut parts = key.split_whitespace();
    let ok = matches!(parts.next(), Some(t) if t.starts_with("ssh-") || t.starts_with("ecdsa-"))
        && parts.next().is_some_and(|b| {
            b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        })
        && !key.contains(['\n', '\r', '\0']);
    if ok {
        Ok(())
    } else {
        Err(BackendError::internal(
            "the workload key is not a one-line OpenSSH public key",
        ))
    }
}

/// Where the script keeps its markers and the workload's exit code on the VM.
pub const STATE_DIR: &str = "/var/lib/compute-bridge";

/// The POSIX shell script that prepares a VM for a workload.
pub fn script(
    user: &str,
    ssh_public_key: &str,
    image: &PinnedImage,
) -> Result<String, BackendError> {
    check_user(user)?;
    check_public_key(ssh_public_key)?;
    let user = shell_quote(user);
    let key = shell_quote(ssh_public_key.trim());
    let image = shell_quote(image.as_str());
    Ok(format!(
        r#"#!/bin/sh
# compute-bridge workload bootstrap: login, key, image pinned by digest.
set -eu
user={user}
image={image}
state={STATE_DIR}
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
printf '%s\n' {key} > "$home/.ssh/authorized_keys"
chown "$user:$user" "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
mkdir -p "$state"
# The workload runs once; a reboot only restores the login.
[ -e "$state/started" ] && exit 0
touch "$state/started"
if ! command -v docker >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q docker.io
fi
usermod -aG docker "$user"
set +e
docker run --name cb-workload "$image"
code=$?
set -e
echo "$code" > "$state/exit-code"
# Done: power off so the backend sees the workload as exited.
poweroff
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "4f2c1b0d9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    #[test]
    fn images_must_be_pinned() {
        let ok = format!("ghcr.io/acme/app@sha256:{DIGEST}");
        assert_eq!(PinnedImage::parse(&ok).unwrap().as_str(), ok);
        assert!(PinnedImage::parse(&format!("registry:5000/a/b@sha256:{DIGEST}")).is_ok());
        for bad in [
            "ghcr.io/acme/app:latest".to_string(),
            "ghcr.io/acme/app@sha256:abc".to_string(),
            format!("ghcr.io/acme/app@sha256:{}", DIGEST.to_uppercase()),
            format!("x;reboot@sha256:{DIGEST}"),
            format!("$(id)@sha256:{DIGEST}"),
            format!("-v@sha256:{DIGEST}"),
        ] {
            let e = PinnedImage::parse(&bad).unwrap_err();
            assert!(matches!(e, BackendError::Rejected(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn the_script_quotes_what_it_embeds() {
        let image = PinnedImage::parse(&format!("ghcr.io/acme/app@sha256:{DIGEST}")).unwrap();
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ cb";
        let s = script("cb-user", key, &image).unwrap();
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("user='cb-user'\n"));
        assert!(s.contains(&format!("printf '%s\\n' '{key}'")));
        assert!(s.contains(&format!("image='ghcr.io/acme/app@sha256:{DIGEST}'")));
        assert!(s.contains("docker run --name cb-workload \"$image\""));
    }

    #[test]
    fn hostile_users_and_keys_are_refused() {
        let image = PinnedImage::parse(&format!("a/b@sha256:{DIGEST}")).unwrap();
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
        assert!(script("root; reboot", key, &image).is_err());
        assert!(script("Cb", key, &image).is_err());
        assert!(script("cb", "ssh-ed25519 AAAA'$(id)'", &image).is_err());
        assert!(script("cb", &format!("{key}\nssh-rsa AAAA"), &image).is_err());
        assert!(script("cb", "not a key", &image).is_err());
    }
}
