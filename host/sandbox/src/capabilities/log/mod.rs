//! The `log` capability, serving `wasi:logging/logging@0.1.0-draft`: a
//! component's log records go into the host's tracing output, tagged with
//! the backend's name, escaped and budgeted. A record's `context` is shown
//! as its `context` field; `critical` is logged as an error (tracing has no
//! higher level).
//!
//! Invariants:
//! - every component-supplied string (message and context) is cut at
//!   [`MAX_LEN`] and has its control characters escaped ([`escape`]), so
//!   one record is one line of the host's log and cannot forge another;
//! - a call may write `max_bytes_per_call` bytes of records and all of a
//!   backend's calls `max_bytes_per_minute` together (`[backends.log]`);
//!   records past either budget are dropped, and when the call ends one
//!   line says how many and how many bytes.
//!
//! Nothing is kept but byte and record counts.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod config;

pub use config::LogConfig;

use compute_bridge_contract::keypath::Invalid;
use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HasCall};
use crate::bindings::logging as wit;
use crate::spec::LoadContext;

/// Longest message or field list kept, bytes; the rest is cut.
const MAX_LEN: usize = 4096;

/// The window `max_bytes_per_minute` applies to.
const WINDOW: Duration = Duration::from_secs(60);

/// `s` with every control character (C0, DEL, C1) and the Unicode line and
/// paragraph separators escaped as Rust escapes them (`\n`, `\u{1b}`), so
/// the text stays on one line of a log. Used for everything a component
/// hands the host that the host logs.
pub fn escape(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_LEN {
        return s;
    }
    let mut end = MAX_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Records and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records.
    pub records: u64,
    /// Bytes of message and fields.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.records = self.records.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }
}

struct Window {
    started: Instant,
    used: u64,
}

/// The `log` capability of one backend, shared by all its calls.
pub struct LogCapability {
    backend: Arc<str>,
    per_call: u64,
    per_minute: u64,
    window: Mutex<Window>,
    totals: Mutex<(Tally, Tally)>,
}

impl LogCapability {
    /// The capability of `backend` with its `[backends.log]` budgets.
    pub fn new(backend: &str, cfg: &LogConfig) -> Self {
        Self {
            backend: backend.into(),
            per_call: cfg.max_bytes_per_call,
            per_minute: cfg.max_bytes_per_minute,
            window: Mutex::new(Window {
                started: Instant::now(),
                used: 0,
            }),
            totals: Mutex::new((Tally::default(), Tally::default())),
        }
    }

    /// Records written and dropped since start.
    pub fn totals(&self) -> (Tally, Tally) {
        *self.totals.lock().unwrap()
    }

    /// Take `bytes` from this minute's budget, if it has them.
    fn take(&self, bytes: u64) -> bool {
        let mut w = self.window.lock().unwrap();
        if w.started.elapsed() >= WINDOW {
            w.started = Instant::now();
            w.used = 0;
        }
        if w.used.saturating_add(bytes) > self.per_minute {
            return false;
        }
        w.used += bytes;
        true
    }
}

impl Capability for LogCapability {
    const SECTION: Option<&'static str> = Some("log");
    const IMPORTS: &'static [(&'static str, &'static str)] = &[(
        "wasi:logging/logging@0.1.0-draft",
        "records in the operator's log",
    )];
    type Config = LogConfig;
    type Call = LogCall;

    fn validate(cfg: &LogConfig, _at: &LoadContext) -> Result<(), Invalid> {
        for (key, v) in [
            ("max_bytes_per_call", cfg.max_bytes_per_call),
            ("max_bytes_per_minute", cfg.max_bytes_per_minute),
        ] {
            if v == 0 {
                return Err(Invalid {
                    path: vec![key.into()],
                    message: "must be at least 1 byte".into(),
                });
            }
        }
        Ok(())
    }

    fn provide(cfg: &LogConfig, at: &LoadContext) -> anyhow::Result<Self> {
        Ok(Self::new(&at.backend, cfg))
    }

    fn start_call(this: &Arc<Self>, export: &'static str) -> LogCall {
        LogCall::new(this.clone(), export)
    }

    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<LogCall>>(linker, |t| HasCall::<Self>::call_state(t))
    }
}

/// One call's `log`, handed to the generated `Host` trait; says what it
/// dropped when the call ends.
pub struct LogCall {
    cap: Arc<LogCapability>,
    call: &'static str,
    written: Tally,
    dropped: Tally,
}

impl LogCall {
    /// The view of one call of export `call`.
    pub fn new(cap: Arc<LogCapability>, call: &'static str) -> Self {
        Self {
            cap,
            call,
            written: Tally::default(),
            dropped: Tally::default(),
        }
    }
}

impl Drop for LogCall {
    fn drop(&mut self) {
        {
            let mut t = self.cap.totals.lock().unwrap();
            t.0.records = t.0.records.saturating_add(self.written.records);
            t.0.bytes = t.0.bytes.saturating_add(self.written.bytes);
            t.1.records = t.1.records.saturating_add(self.dropped.records);
            t.1.bytes = t.1.bytes.saturating_add(self.dropped.bytes);
        }
        if self.dropped.records > 0 {
            tracing::warn!(
                target: "component",
                backend = &*self.cap.backend,
                call = self.call,
                dropped_records = self.dropped.records,
                dropped_bytes = self.dropped.bytes,
                "dropped {} log records ({} bytes) of this {} call: over the backend's log budget \
                 ({} bytes a call, {} bytes a minute; [backends.log])",
                self.dropped.records,
                self.dropped.bytes,
                self.call,
                self.cap.per_call,
                self.cap.per_minute,
            );
        }
    }
}

fn enabled(level: &wit::Level) -> bool {
    match level {
        wit::Level::Trace => tracing::enabled!(target: "component", tracing::Level::TRACE),
        wit::Level::Debug => tracing::enabled!(target: "component", tracing::Level::DEBUG),
        wit::Level::Info => tracing::enabled!(target: "component", tracing::Level::INFO),
        wit::Level::Warn => tracing::enabled!(target: "component", tracing::Level::WARN),
        wit::Level::Error | wit::Level::Critical => {
            tracing::enabled!(target: "component", tracing::Level::ERROR)
        }
    }
}

impl wit::Host for LogCall {
    fn log(&mut self, level: wit::Level, context: String, message: String) -> wasmtime::Result<()> {
        // A record the log would not show costs nothing.
        if !enabled(&level) {
            return Ok(());
        }
        let message = cut(&escape(cut(&message))).to_string();
        let context = cut(&escape(cut(&context))).to_string();
        let bytes = message.len() + context.len();
        let within = self.written.bytes.saturating_add(bytes as u64) <= self.cap.per_call
            && self.cap.take(bytes as u64);
        if !within {
            self.dropped.add(bytes);
            return Ok(());
        }
        self.written.add(bytes);
        let backend = &*self.cap.backend;
        match level {
            wit::Level::Trace => {
                tracing::trace!(target: "component", backend, context, "{message}")
            }
            wit::Level::Debug => {
                tracing::debug!(target: "component", backend, context, "{message}")
            }
            wit::Level::Info => tracing::info!(target: "component", backend, context, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "component", backend, context, "{message}"),
            wit::Level::Error | wit::Level::Critical => {
                tracing::error!(target: "component", backend, context, "{message}")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(escape("plain text: ok"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nb\r\tc\u{1b}[2J\u{7f}\u{85}\u{2028}"),
            "a\\nb\\r\\tc\\u{1b}[2J\\u{7f}\\u{85}\\u{2028}"
        );
        assert_eq!(escape("ünïcödé"), "ünïcödé");
    }
}
