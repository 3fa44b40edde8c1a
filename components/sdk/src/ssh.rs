//! Commands on the hosts the operator assigned to this backend.
//!
//! A host is named by its *label* from the boot config; the backend never
//! sees its address, user or credentials. Host keys are pinned by the host.

use crate::BackendError;
use crate::bindings::compute_bridge::backend::ssh as raw;

pub use raw::{ExecOutput, SshError};

/// Labels of the hosts this backend may use, in configuration order.
pub fn hosts() -> Vec<String> {
    raw::hosts()
}

/// Run `command` on `host`, with no input.
pub fn exec(host: &str, command: &str) -> Result<ExecOutput, SshError> {
    raw::exec(host, command, &[])
}

/// Run `command` on `host`, feeding `stdin`.
pub fn exec_with_stdin(host: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
    raw::exec(host, command, stdin)
}

/// Run `command` on `host` and require exit status 0; otherwise an
/// `internal` error carrying the command's stderr.
pub fn run(host: &str, command: &str) -> Result<String, BackendError> {
    let out = exec(host, command)?;
    if out.exit_code != 0 {
        return Err(BackendError::internal(format!(
            "`{}` on {host} exited {}: {}",
            first_word(command),
            out.exit_code,
            out.stderr_lossy().trim()
        )));
    }
    Ok(out.stdout_lossy())
}

fn first_word(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or(command)
}

impl ExecOutput {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
    /// Standard output as text (lossy).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Standard error as text (lossy).
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A sentence for `e`, for logs and error messages.
pub fn describe(e: &SshError) -> String {
    match e {
        SshError::UnknownHost(l) => format!("no SSH host labelled `{l}` for this backend"),
        SshError::HostKeyMismatch(l) => format!("host key of `{l}` does not match the pinned key"),
        SshError::Unreachable(m) => format!("unreachable: {m}"),
        SshError::Auth(m) => format!("authentication refused: {m}"),
        SshError::Timeout => "command timed out".to_string(),
    }
}

/// Unknown labels, changed host keys and refused credentials are the
/// operator's to fix (`config`); unreachable hosts and timeouts pass
/// (`transient`).
impl From<SshError> for BackendError {
    fn from(e: SshError) -> Self {
        let msg = describe(&e);
        match e {
            SshError::UnknownHost(_) | SshError::HostKeyMismatch(_) | SshError::Auth(_) => {
                BackendError::config(msg)
            }
            SshError::Unreachable(_) | SshError::Timeout => BackendError::transient(msg),
        }
    }
}

/// Quote `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
