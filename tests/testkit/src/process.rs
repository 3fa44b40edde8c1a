//! Run the real `compute-bridge` binary as a child process and watch its log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait_for;

/// A running binary whose stderr is collected; killed on drop.
pub struct Running {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Running {
    /// Start `bin args...` with `env`, collecting stderr (and stdout).
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_in(None, bin, args, env)
    }

    /// Like [`Running::spawn`], in working directory `cwd`.
    pub fn spawn_in(cwd: Option<&Path>, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_with(cwd, bin, args, env, &[])
    }

    /// Like [`Running::spawn_in`], with the variables in `unset` removed
    /// from its environment (after `env` is applied): e.g. no
    /// `COMPUTE_BRIDGE_LOG`, to run at the binary's default log level.
    pub fn spawn_with(
        cwd: Option<&Path>,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        unset: &[&str],
    ) -> Self {
        let mut cmd = Command::new(bin);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .env("COMPUTE_BRIDGE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        for k in unset {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Self {
            child: Some(child),
            log,
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until its output contains `needle`; panics with the log if not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let log = self.log.clone();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(&format!("log line containing {needle:?}"), timeout, || {
                log.lock().unwrap().contains(needle).then_some(())
            })
        }));
        if found.is_err() {
            panic!(
                "no {needle:?} in the output within {timeout:?}; output so far:\n{}",
                self.log()
            );
        }
    }

    /// Send a signal (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Wait for it to exit; returns its exit code (None if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("already waited");
        let status = wait_for("the process to exit", timeout, || {
            child.try_wait().ok().flatten()
        });
        status.code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a binary to completion: (exit code, stdout, stderr).
pub fn run(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
