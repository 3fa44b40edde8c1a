//! The instance's user-data: a cloud-init config that creates the workload
//! user with the host's public key and runs the grant's image, pinned by
//! digest, with the grant's CPU and memory limits.
//!
//! The config is written as JSON (which is YAML, so cloud-init reads it),
//! so no value can break out of its field. Everything interpolated into the
//! runner script is validated first (user name, image reference) and quoted
//! anyway.
//!
//! The runner uses docker or podman if the AMI has one, else installs docker
//! with the distribution's package manager. When the container exits it
//! writes `compute-bridge: workload exited <code>` to the console (where
//! `status` reads the code back) and powers the instance off; it also
//! schedules a power-off at the grant's `valid_to`, so the workload ends on
//! time even if the bridge is gone.

use compute_bridge_sdk::BackendError;

/// Where the runner script is written on the instance.
pub const RUNNER_PATH: &str = "/usr/local/sbin/compute-bridge-workload";

/// The console line the runner prints when the workload ends.
pub const EXIT_MARKER: &str = "compute-bridge: workload exited ";

/// What the user-data is made of, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload<'a> {
    /// Login name.
    pub user: &'a str,
    /// OpenSSH public key.
    pub public_key: &'a str,
    /// Image, `name@sha256:<64 hex>`.
    pub image: &'a str,
    /// CPU limit, millicores.
    pub cpu_millicores: u32,
    /// Memory limit, MiB.
    pub ram_mib: u32,
    /// Unix seconds when the workload must be gone.
    pub valid_to: u64,
}

/// A login name cloud-init and every distribution accept, and not one of
/// the AMI's own accounts.
pub fn check_user(user: &str) -> Result<(), BackendError> {
    let mut bytes = user.bytes();
    let ok = user.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(BackendError::Internal(format!(
            "workload user {user:?} is not a valid login name"
        )));
    }
    if matches!(
        user,
        "root" | "ec2-user" | "ubuntu" | "admin" | "centos" | "fedora" | "debian"
    ) {
        return Err(BackendError::Internal(format!(
            "workload user {user:?} is one of the image's own accounts"
        )));
    }
    Ok(())
}

/// One OpenSSH public key on one line.
pub fn check_public_key(key: &str) -> Result<(), BackendError> {
    let known = [
        "ssh-ed25519 ",
        "ssh-rsa ",
        "ecdsa-sha2-",
        "sk-ssh-ed25519@openssh.com ",
        "sk-ecdsa-sha2-",
    ];
    if !known.iter().any(|p| key.starts_with(p)) || key.chars().any(char::is_control) {
        return Err(BackendError::Internal(
            "the workload key is not a one-line OpenSSH public key".into(),
        ));
    }
    Ok(())
}

/// An image pinned by digest: `name@sha256:<64 lower-case hex>`, where the
/// name has only the characters image references use.
pub fn check_image(image: &str) -> Result<(), BackendError> {
    let reject = |why: &str| Err(BackendError::Rejected(format!("image {image:?}: {why}")));
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return reject("must be pinned by digest (name@sha256:...)");
    };
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return reject("the sha256 digest must be 64 lower-case hex digits");
    }
    let ok_name = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':'))
        && !name.starts_with(['-', '/', '.']);
    if !ok_name {
        return reject("not a valid image name");
    }
    Ok(())
}

impl Workload<'_> {
    /// Validate every part.
    pub fn check(&self) -> Result<(), BackendError> {
        check_user(self.user)?;
        check_public_key(self.public_key)?;
        check_image(self.image)?;
        if self.cpu_millicores == 0 || self.ram_mib == 0 {
            return Err(BackendError::Rejected(
                "a grant needs CPU and memory".into(),
            ));
        }
        Ok(())
    }

    /// The runner script.
    pub fn runner(&self) -> String {
        format!(
            r#"#!/bin/sh
# Written by compute-bridge: runs one grant's workload, then powers off.
set -u
image='{image}'
user='{user}'
valid_to={valid_to}
say() {{ echo "compute-bridge: $*" | tee /dev/console; }}
# The grant's end holds even if the bridge is gone by then.
mins=$(( (valid_to - $(date +%s) + 59) / 60 ))
[ "$mins" -ge 1 ] || mins=1
(shutdown -h "+$mins" >/dev/null 2>&1 &)
if command -v docker >/dev/null 2>&1; then rt=docker
elif command -v podman >/dev/null 2>&1; then rt=podman
else
  say "installing docker"
  (dnf -y install docker || yum -y install docker || (apt-get update && apt-get install -y docker.io)) >/dev/null 2>&1
  rt=docker
fi
if [ "$rt" = docker ]; then
  systemctl enable --now docker >/dev/null 2>&1 || service docker start >/dev/null 2>&1 || true
  usermod -aG docker "$user" || true
fi
code=125
if "$rt" pull "$image"; then
  "$rt" run --name workload --cpus {cpus} --memory {ram}m "$image"
  code=$?
else
  say "pulling $image failed"
fi
say "workload exited $code"
shutdown -h now
"#,
            image = self.image,
            user = self.user,
            valid_to = self.valid_to,
            cpus = format_args!(
                "{}.{:03}",
                self.cpu_millicores / 1000,
                self.cpu_millicores % 1000
            ),
            ram = self.ram_mib,
        )
    }

    /// The user-data document (`#cloud-config` + JSON).
    pub fn cloud_config(&self) -> Result<String, BackendError> {
        self.check()?;
        let doc = serde_json::json!({
            "users": [
                "default",
                {
                    "name": self.user,
                    "shell": "/bin/bash",
                    "lock_passwd": true,
                    "ssh_authorized_keys": [self.public_key],
                }
            ],
            "ssh_pwauth": false,
            "write_files": [{
                "path": RUNNER_PATH,
                "owner": "root:root",
                "permissions": "0755",
                "content": self.runner(),
            }],
            "runcmd": [[RUNNER_PATH]],
        });
        Ok(format!("#cloud-config\n{doc:#}\n"))
    }
}

/// The workload's exit code from the instance's console output: the last
/// [`EXIT_MARKER`] line wins.
pub fn exit_code(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let rest = &l[l.find(EXIT_MARKER)? + EXIT_MARKER.len()..];
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ cb";
    const IMAGE: &str = "registry.example:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn w() -> Workload<'static> {
        Workload {
            user: "cb-7f3a",
            public_key: KEY,
            image: IMAGE,
            cpu_millicores: 1500,
            ram_mib: 3072,
            valid_to: 1_900_000_000,
        }
    }

    #[test]
    fn cloud_config_creates_the_user_and_runs_the_pinned_image_with_limits() {
        let ud = w().cloud_config().unwrap();
        assert!(ud.starts_with("#cloud-config\n"));
        let doc: serde_json::Value = serde_json::from_str(&ud["#cloud-config\n".len()..]).unwrap();
        assert_eq!(doc["users"][1]["name"], "cb-7f3a");
        assert_eq!(doc["users"][1]["ssh_authorized_keys"][0], KEY);
        assert_eq!(doc["runcmd"][0][0], RUNNER_PATH);
        let script = doc["write_files"][0]["content"].as_str().unwrap();
        assert!(script.contains(&format!("image='{IMAGE}'")));
        assert!(script.contains("--cpus 1.500 --memory 3072m"), "{script}");
        assert!(script.contains("valid_to=1900000000"));
    }

    #[test]
    fn unpinned_or_odd_images_are_rejected() {
        for bad in [
            "nginx:latest",
            "nginx@sha256:abc",
            "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "x';reboot;'@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "-x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let e = Workload { image: bad, ..w() }.cloud_config().unwrap_err();
            assert!(matches!(e, BackendError::Rejected(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn users_and_keys_that_could_escape_are_refused() {
        for user in ["root", "Bob", "a b", "x;y", "", "ec2-user"] {
            assert!(Workload { user, ..w() }.cloud_config().is_err(), "{user}");
        }
        let key = format!("{KEY}\nssh-ed25519 AAAAother attacker");
        assert!(
            Workload {
                public_key: &key,
                ..w()
            }
            .cloud_config()
            .is_err()
        );
        assert!(
            Workload {
                public_key: "not a key",
                ..w()
            }
            .cloud_config()
            .is_err()
        );
    }

    #[test]
    fn the_exit_code_is_read_from_the_console() {
        let console = "boot...\n[  12.3] cloud-init: compute-bridge: workload exited 137\r\nreboot: Power down\n";
        assert_eq!(exit_code(console), Some(137));
        assert_eq!(exit_code("compute-bridge: workload exited 0"), Some(0));
        assert_eq!(exit_code("nothing here"), None);
    }
}
