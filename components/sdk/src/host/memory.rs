//! [`MemoryHost`]: a [`Host`] in memory, for a backend core's native tests.
//!
//! - HTTP: answers scripted with [`MemoryHost::push_http`] go out first, in
//!   order; then the handler set with [`MemoryHost::on_http`] (which may
//!   forward to an API fake); with neither, a request is `denied`, as the
//!   host denies an origin the operator did not allow. Every request is
//!   recorded ([`MemoryHost::requests`]).
//! - SSH: the labels given with [`MemoryHost::with_ssh_host`]; an unknown
//!   label is `unknown-host`, as in the host's ssh capability. Answers come
//!   from [`MemoryHost::push_ssh`], then [`MemoryHost::on_ssh`]; every call
//!   is recorded ([`MemoryHost::ssh_calls`]).
//! - Log: records are captured ([`MemoryHost::logs`]), never printed.
//! - Cache: entries live until their time-to-live runs out on this host's
//!   clock, capped at a day and removed by a ttl of 0 (the host's `cache`
//!   capability, `CacheLimits::max_ttl`); the size limits are not modelled.
//! - Clock: manual by default (starting at [`MemoryHost::START`]); `sleep`
//!   advances it and adds to [`MemoryHost::slept`]. With
//!   [`MemoryHost::with_system_clock`] it reads the system clock and
//!   `sleep` really waits (for cores run against a live peer).
//!
//! Everything is behind a mutex, so a `MemoryHost` is `Send + Sync` and a
//! test may share it with a server thread.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::Host;
use crate::http::{HttpError, Request, Response};
use crate::log::Level;
use crate::ssh::{ExecOutput, SshError};

/// Longest time-to-live the host's cache keeps an entry (a day).
const MAX_TTL: u64 = 24 * 3600;

type HttpHandler = Box<dyn FnMut(&Request) -> Result<Response, HttpError> + Send>;
type SshHandler = Box<dyn FnMut(&SshCall) -> Result<ExecOutput, SshError> + Send>;

/// One `ssh.exec` a core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCall {
    /// The host's label.
    pub host: String,
    /// The command line.
    pub command: String,
    /// What it fed the command.
    pub stdin: Vec<u8>,
}

impl SshCall {
    /// The input as text (lossy).
    pub fn stdin_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdin).into_owned()
    }
}

/// One log record a core wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// Its fields, in order.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if the record has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Http {
    scripted: VecDeque<Result<Response, HttpError>>,
    handler: Option<HttpHandler>,
    seen: Vec<Request>,
}

#[derive(Default)]
struct Ssh {
    hosts: Vec<String>,
    scripted: VecDeque<Result<ExecOutput, SshError>>,
    handler: Option<SshHandler>,
    seen: Vec<SshCall>,
}

enum Clock {
    Manual { now: u64, slept: u64 },
    System,
}

/// A host in memory; see the module docs for what each import does.
pub struct MemoryHost {
    http: Mutex<Http>,
    ssh: Mutex<Ssh>,
    logs: Mutex<Vec<LogRecord>>,
    cache: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    clock: Mutex<Clock>,
}

impl Default for MemoryHost {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHost")
            .field("now", &self.now())
            .field("requests", &self.http.lock().unwrap().seen.len())
            .field("ssh_calls", &self.ssh.lock().unwrap().seen.len())
            .field("logs", &self.logs.lock().unwrap().len())
            .finish_non_exhaustive()
    }
}

impl MemoryHost {
    /// Where a manual clock starts: 2023-11-14T22:13:20Z.
    pub const START: u64 = 1_700_000_000;

    /// No HTTP answers, no SSH hosts, an empty cache, a manual clock at
    /// [`Self::START`].
    pub fn new() -> Self {
        Self::at(Self::START)
    }

    /// [`Self::new`] with the manual clock at `now`.
    pub fn at(now: u64) -> Self {
        Self {
            http: Mutex::default(),
            ssh: Mutex::default(),
            logs: Mutex::default(),
            cache: Mutex::default(),
            clock: Mutex::new(Clock::Manual { now, slept: 0 }),
        }
    }

    /// [`Self::new`] reading the system clock; `sleep` really waits.
    pub fn with_system_clock() -> Self {
        let h = Self::new();
        *h.clock.lock().unwrap() = Clock::System;
        h
    }

    /// Answer HTTP requests with `handler` once the scripted answers are
    /// used up (e.g. forward them to an API fake).
    pub fn on_http(
        self,
        handler: impl FnMut(&Request) -> Result<Response, HttpError> + Send + 'static,
    ) -> Self {
        self.http.lock().unwrap().handler = Some(Box::new(handler));
        self
    }

    /// Answer the next HTTP request not yet answered by a script with
    /// `answer`.
    pub fn push_http(&self, answer: Result<Response, HttpError>) {
        self.http.lock().unwrap().scripted.push_back(answer);
    }

    /// Every HTTP request sent so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.http.lock().unwrap().seen.clone()
    }

    /// Give the backend an SSH host labelled `label`.
    pub fn with_ssh_host(self, label: impl Into<String>) -> Self {
        self.ssh.lock().unwrap().hosts.push(label.into());
        self
    }

    /// Answer `ssh.exec` on a known host with `handler` once the scripted
    /// answers are used up.
    pub fn on_ssh(
        self,
        handler: impl FnMut(&SshCall) -> Result<ExecOutput, SshError> + Send + 'static,
    ) -> Self {
        self.ssh.lock().unwrap().handler = Some(Box::new(handler));
        self
    }

    /// Answer the next `ssh.exec` on a known host with `answer`.
    pub fn push_ssh(&self, answer: Result<ExecOutput, SshError>) {
        self.ssh.lock().unwrap().scripted.push_back(answer);
    }

    /// Every `ssh.exec` on a known host so far, in order.
    pub fn ssh_calls(&self) -> Vec<SshCall> {
        self.ssh.lock().unwrap().seen.clone()
    }

    /// Every log record so far, in order.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.logs.lock().unwrap().clone()
    }

    /// Set the manual clock to `now` (no effect on a system clock).
    pub fn set_now(&self, now: u64) {
        if let Clock::Manual { now: n, .. } = &mut *self.clock.lock().unwrap() {
            *n = now;
        }
    }

    /// Move the manual clock `secs` on (no effect on a system clock).
    pub fn advance(&self, secs: u64) {
        if let Clock::Manual { now, .. } = &mut *self.clock.lock().unwrap() {
            *now += secs;
        }
    }

    /// Seconds the core has slept on the manual clock.
    pub fn slept(&self) -> u64 {
        match &*self.clock.lock().unwrap() {
            Clock::Manual { slept, .. } => *slept,
            Clock::System => 0,
        }
    }
}

impl Host for MemoryHost {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let mut http = self.http.lock().unwrap();
        http.seen.push(req.clone());
        if let Some(answer) = http.scripted.pop_front() {
            return answer;
        }
        match http.handler.as_mut() {
            Some(handler) => handler(req),
            None => Err(HttpError::Denied(format!(
                "MemoryHost: no answer scripted for {}",
                req.parts().1
            ))),
        }
    }

    fn ssh_hosts(&self) -> Vec<String> {
        self.ssh.lock().unwrap().hosts.clone()
    }

    fn ssh_exec(&self, host: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        let mut ssh = self.ssh.lock().unwrap();
        if !ssh.hosts.iter().any(|h| h == host) {
            return Err(SshError::UnknownHost(host.to_string()));
        }
        let call = SshCall {
            host: host.to_string(),
            command: command.to_string(),
            stdin: stdin.to_vec(),
        };
        ssh.seen.push(call.clone());
        if let Some(answer) = ssh.scripted.pop_front() {
            return answer;
        }
        match ssh.handler.as_mut() {
            Some(handler) => handler(&call),
            None => Err(SshError::Unreachable(format!(
                "MemoryHost: no answer scripted for `{command}` on {host}"
            ))),
        }
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.logs.lock().unwrap().push(LogRecord {
            level,
            message: message.to_string(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.now();
        let mut cache = self.cache.lock().unwrap();
        match cache.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn cache_set(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        let now = self.now();
        let mut cache = self.cache.lock().unwrap();
        if ttl_seconds == 0 {
            cache.remove(key);
            return;
        }
        let expires = now + u64::from(ttl_seconds).min(MAX_TTL);
        cache.insert(key.to_string(), (value.to_vec(), expires));
    }

    fn now(&self) -> u64 {
        match &*self.clock.lock().unwrap() {
            Clock::Manual { now, .. } => *now,
            Clock::System => crate::now_unix(),
        }
    }

    fn sleep(&self, secs: u64) {
        let mut clock = self.clock.lock().unwrap();
        match &mut *clock {
            Clock::Manual { now, slept } => {
                *now += secs;
                *slept += secs;
            }
            Clock::System => {
                drop(clock);
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_answers_go_first_then_the_handler_and_every_request_is_kept() {
        let host = MemoryHost::new().on_http(|req| Ok(Response::new(200, req.parts().1)));
        host.push_http(Ok(Response::new(200, "first")));
        let a = host.send(&Request::get("https://a.example/1")).unwrap();
        let b = host.send(&Request::get("https://a.example/2")).unwrap();
        assert_eq!(
            (a.text(), b.text()),
            ("first".into(), "https://a.example/2".into())
        );
        let urls: Vec<String> = host
            .requests()
            .iter()
            .map(|r| r.parts().1.to_string())
            .collect();
        assert_eq!(urls, ["https://a.example/1", "https://a.example/2"]);
    }

    #[test]
    fn an_unscripted_request_is_denied_like_an_origin_the_operator_did_not_allow() {
        let host = MemoryHost::new();
        let e = host.send(&Request::get("https://a.example/")).unwrap_err();
        assert!(matches!(e, HttpError::Denied(_)), "{e:?}");
    }

    #[test]
    fn ssh_knows_only_its_labels_and_records_what_it_ran() {
        let host = MemoryHost::new().with_ssh_host("rack-1").on_ssh(|c| {
            Ok(ExecOutput {
                exit_code: 0,
                stdout: c.stdin.clone(),
                stderr: Vec::new(),
                truncated: false,
            })
        });
        assert_eq!(host.ssh_hosts(), ["rack-1"]);
        let e = host.ssh_exec("rack-2", "true", b"").unwrap_err();
        assert!(
            matches!(e, SshError::UnknownHost(ref l) if l == "rack-2"),
            "{e:?}"
        );
        let out = host.ssh_exec("rack-1", "sh -s", b"echo hi").unwrap();
        assert_eq!(out.stdout, b"echo hi");
        assert_eq!(host.ssh_calls().len(), 1);
        assert_eq!(host.ssh_calls()[0].stdin_lossy(), "echo hi");
    }

    #[test]
    fn cache_entries_expire_on_the_hosts_clock_and_ttl_zero_removes() {
        let host = MemoryHost::new();
        host.cache_set("token", b"t1", 60);
        host.sleep(59);
        assert_eq!(host.cache_get("token").as_deref(), Some(&b"t1"[..]));
        host.advance(1);
        assert_eq!(host.cache_get("token"), None);
        host.cache_set("token", b"t2", u32::MAX);
        host.advance(MAX_TTL);
        assert_eq!(host.cache_get("token"), None, "capped at a day");
        host.cache_set("token", b"t3", 60);
        host.cache_set("token", b"", 0);
        assert_eq!(host.cache_get("token"), None);
        assert_eq!(host.slept(), 59);
    }

    #[test]
    fn logs_are_captured_with_their_fields() {
        let host = MemoryHost::new();
        host.log(Level::Warn, "instance terminated", &[("instance", "i-1")]);
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Warn);
        assert_eq!(logs[0].field("instance"), Some("i-1"));
    }

    #[test]
    fn a_system_clock_reads_the_time_and_ignores_manual_moves() {
        let host = MemoryHost::with_system_clock();
        let before = crate::now_unix();
        host.advance(1_000_000);
        assert!(host.now() >= before && host.now() < before + 1_000);
    }
}
