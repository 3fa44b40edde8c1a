//! `[backends.ssh]`: the hosts a backend may run commands on, by label,
//! with their pinned keys, and the bounds of one command. Keeps nothing
//! but the config text it was given (private keys among it: it never logs
//! or shows them).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[backends.ssh]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Hosts by label, in the order the component sees them.
    #[serde(default)]
    pub hosts: toml::Table,
    /// Per-command timeout, seconds.
    #[serde(default = "default_ssh_timeout")]
    pub timeout_sec: u64,
    /// Largest captured stdout and stderr, bytes each.
    #[serde(default = "default_ssh_output")]
    pub max_output_bytes: u64,
}

fn default_ssh_timeout() -> u64 {
    60
}
fn default_ssh_output() -> u64 {
    1024 * 1024
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            hosts: toml::Table::new(),
            timeout_sec: default_ssh_timeout(),
            max_output_bytes: default_ssh_output(),
        }
    }
}

/// `[backends.ssh.hosts.<label>]`: one host entry as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostConfig {
    /// `ssh` (default) or `local` (commands run on this machine, no SSH).
    #[serde(default)]
    pub transport: SshTransport,
    /// Address or host name.
    #[serde(default)]
    pub address: Option<String>,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login user.
    #[serde(default)]
    pub user: Option<String>,
    /// Pinned host public key, OpenSSH format (`ssh-ed25519 AAAA...`).
    #[serde(default)]
    pub host_key: Option<String>,
    /// Private key file (OpenSSH format).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Private key text, usually `${ENV}`.
    #[serde(default)]
    pub private_key: Option<String>,
}

fn default_ssh_port() -> u16 {
    22
}

/// How a labelled host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SshTransport {
    /// Over SSH with a pinned host key.
    #[default]
    Ssh,
    /// Commands run on this machine through `/bin/sh`.
    Local,
}

/// Why a component loaded from a file may not have a `local` SSH label.
pub const LOCAL_ONLY_BUILTIN: &str = "a `local` label runs the component's commands on this machine as \
     the bridge's own user, where its identity key, journal and config are in reach; only a backend \
     shipped in the binary (`builtin:...`) may have one. For a component from a file, run sshd on \
     this machine and give it an `ssh` label to an unprivileged account (address 127.0.0.1, a \
     pinned host_key)";

impl SshConfig {
    /// The SSH hosts, parsed (validated at load), in config order.
    pub fn parsed_hosts(&self) -> Vec<(String, SshHostConfig)> {
        self.hosts
            .iter()
            .filter_map(|(k, v)| v.clone().try_into().ok().map(|h| (k.clone(), h)))
            .collect()
    }
}

impl SshHostConfig {
    /// Check the fields a transport needs: `Err((key, message))`.
    pub fn check(&self) -> Result<(), (Option<&'static str>, String)> {
        if self.transport == SshTransport::Local {
            return Ok(());
        }
        if self.address.as_deref().is_none_or(str::is_empty) {
            return Err((
                None,
                "an `ssh` host needs `address` (or set transport = \"local\")".into(),
            ));
        }
        if self.user.as_deref().is_none_or(str::is_empty) {
            return Err((None, "an `ssh` host needs `user`".into()));
        }
        match &self.host_key {
            None => {
                return Err((
                    None,
                    "an `ssh` host needs its pinned `host_key` (`ssh-keyscan -t ed25519 HOST`)"
                        .into(),
                ));
            }
            Some(k) => {
                if russh::keys::PublicKey::from_openssh(k.trim()).is_err() {
                    return Err((
                        Some("host_key"),
                        "not an OpenSSH public key (`ssh-ed25519 AAAA...`)".into(),
                    ));
                }
            }
        }
        match (&self.private_key, &self.private_key_file) {
            (None, None) => Err((
                None,
                "an `ssh` host needs `private_key_file` or `private_key`".into(),
            )),
            (Some(_), Some(_)) => Err((
                None,
                "set one of `private_key_file` and `private_key`, not both".into(),
            )),
            (Some(k), None) => russh::keys::decode_secret_key(k, None)
                .map(|_| ())
                .map_err(|_| {
                    (
                        Some("private_key"),
                        "not an OpenSSH private key (the value is not shown)".into(),
                    )
                }),
            (None, Some(_)) => Ok(()),
        }
    }
}
