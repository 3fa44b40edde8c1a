//! The log filter of `compute-bridge`: which crates' lines reach the
//! operator's log, and at what level.
//!
//! Our own targets (`compute_bridge`, and `component` for the backends' own
//! lines through the log capability) log at the level the operator asks for
//! (`info` by default). Their lines were written to name no requester: no
//! peer id, request id, reply key, workload key, image, region asked for or
//! settlement amount (the provider loop's module doc says what it logs
//! instead). Third-party crates (mosaik, iroh, iroh-relay, russh, hyper,
//! reqwest, wasmtime, redb…) were not: mosaik logs requesters' peer ids
//! at `info` and `warn`, iroh and its relay log remote endpoint ids and IP
//! addresses from `debug` on, and at `trace` the HTTP and SSH clients log
//! what they send (which can include a request id a backend puts in a tag
//! or a script). So they stay at `error` whatever bare level is asked for;
//! an operator who wants more from one names it (`debug,iroh=trace`) and
//! gets what docs/dashboard.md says such a line can show.
//!
//! [`init`] installs the subscriber `compute-bridge` runs with (plain
//! `fmt` lines through this filter) and the benchmarks install the same
//! one, so their figures include what logging costs a real bridge. Lines
//! are written by a thread of their own ([`background`]): the thread that
//! logs (a tokio worker in the middle of a grant) never waits on the disk
//! or a full pipe, only, once [`QUEUE_LINES`] lines are waiting, for room
//! in the queue. Nothing is dropped, and lines keep their order; the binary
//! waits for queued lines before it exits ([`Flush`]). What a process
//! killed outright (SIGKILL) had queued and not yet written is lost: the
//! lines of the last moment, where a writer in the logging thread lost at
//! most the one it was writing.
//!
//! This module keeps nothing but the lines queued for the writer thread,
//! each until it is written.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Targets whose lines are ours and name no requester.
pub const OWN_TARGETS: &[&str] = &["compute_bridge", "component"];

/// The level every other crate is held at unless a directive names it.
pub const THIRD_PARTY_LEVEL: &str = "error";

/// Our targets' level when none is asked for.
pub const DEFAULT_LEVEL: &str = "info";

/// The filter directives for `spec`, the value of `COMPUTE_BRIDGE_LOG` (or
/// `RUST_LOG`) if set. A bare level (`debug`) sets our targets' level only;
/// a directive that names a target (`mosaik=debug`, `iroh::relay=trace`)
/// is kept as written, so third-party output is opt-in by name.
pub fn directives(spec: Option<&str>) -> String {
    let mut level = DEFAULT_LEVEL.to_string();
    let mut named: Vec<&str> = Vec::new();
    for d in spec
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        if is_level(d) {
            level = d.to_ascii_lowercase();
        } else {
            named.push(d);
        }
    }
    let names_target = |t: &str| {
        named
            .iter()
            .any(|d| d.split_once('=').map_or(*d, |(target, _)| target) == t)
    };
    let mut out = vec![THIRD_PARTY_LEVEL.to_string()];
    out.extend(
        OWN_TARGETS
            .iter()
            .filter(|t| !names_target(t))
            .map(|t| format!("{t}={level}")),
    );
    out.extend(named.iter().map(|d| d.to_string()));
    out.join(",")
}

/// The filter for `spec` (see [`directives`]); a spec that does not parse
/// falls back to the default, with the reason.
pub fn filter(spec: Option<&str>) -> (EnvFilter, Option<String>) {
    match EnvFilter::try_new(directives(spec)) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new(directives(None)),
            Some(format!(
                "COMPUTE_BRIDGE_LOG={:?} is not a log filter ({e}); logging at {DEFAULT_LEVEL}",
                spec.unwrap_or_default()
            )),
        ),
    }
}

/// Install the bridge's subscriber as the process's global default:
/// `fmt` lines (ANSI colours if `ansi`) through [`filter`]`(spec)`, written
/// to `out` by a thread of their own ([`background`]). Returns the filter's
/// warning, if any, for the caller to log now that a subscriber is
/// installed, and the guard that waits for the queued lines when dropped:
/// keep it until the process ends. Panics if a subscriber is already
/// installed (once per process, at start).
pub fn init<W: Write + Send + 'static>(
    spec: Option<&str>,
    ansi: bool,
    out: W,
) -> (Option<String>, Flush) {
    let (filter, warning) = filter(spec);
    let (writer, flush) = background(out);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .init();
    (warning, flush)
}

/// Lines that may wait for the writer thread before a logging thread waits
/// for room (a few MB at the bridge's line lengths).
pub const QUEUE_LINES: usize = 16_384;

/// How long [`Flush`] waits for the queued lines when dropped.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Lines queued and not yet written, and a signal when none are.
#[derive(Default)]
struct Pending {
    lines: Mutex<usize>,
    drained: Condvar,
}

/// The [`MakeWriter`] of [`background`]: each line goes to the writer
/// thread.
#[derive(Clone)]
pub struct Background {
    to: SyncSender<Vec<u8>>,
    pending: Arc<Pending>,
}

/// One line on its way to the writer thread (sent when dropped, which the
/// subscriber does after writing each event).
pub struct Line<'a> {
    buf: Vec<u8>,
    to: &'a Background,
}

/// Waits, when dropped, until every queued line is written (at most
/// [`FLUSH_WAIT`]).
pub struct Flush(Arc<Pending>);

/// A writer for the subscriber whose lines `out` gets from a thread of
/// its own, in order, through a queue of [`QUEUE_LINES`] lines; the
/// writes are buffered and flushed whenever the queue runs empty. The
/// thread lives as long as a [`Background`] does.
pub fn background<W: Write + Send + 'static>(out: W) -> (Background, Flush) {
    let (to, from) = std::sync::mpsc::sync_channel(QUEUE_LINES);
    let pending = Arc::new(Pending::default());
    let p = pending.clone();
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(from, std::io::BufWriter::new(out), &p))
        .expect("starting the log writer thread");
    (
        Background {
            to,
            pending: pending.clone(),
        },
        Flush(pending),
    )
}

fn write_lines(from: Receiver<Vec<u8>>, mut out: impl Write, pending: &Pending) {
    let lines = || pending.lines.lock().unwrap_or_else(|e| e.into_inner());
    for line in from {
        // A line that cannot be written has nowhere else to go.
        let _ = out.write_all(&line);
        // Flush when this was the last line queued, and never while holding
        // the count: a logging thread takes it to queue a line, and must
        // not wait for a stalled output behind it. Only this thread lowers
        // the count, so it reaches zero only after the flush, and
        // `Flush` sees every line written when it does.
        if *lines() == 1 {
            let _ = out.flush();
        }
        let mut n = lines();
        *n -= 1;
        if *n == 0 {
            pending.drained.notify_all();
        }
    }
    let _ = out.flush();
}

impl<'a> MakeWriter<'a> for Background {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::new(),
            to: self,
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let pending = &self.to.pending;
        *pending.lines.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if self.to.to.send(std::mem::take(&mut self.buf)).is_err() {
            // The writer thread is gone (it panicked): nothing will write it.
            *pending.lines.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        let n = self.0.lines.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.0.drained.wait_timeout_while(n, FLUSH_WAIT, |n| *n > 0);
    }
}

fn is_level(d: &str) -> bool {
    ["trace", "debug", "info", "warn", "error", "off"]
        .iter()
        .any(|l| d.eq_ignore_ascii_case(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_ours_only_and_third_parties_stay_at_error() {
        assert_eq!(directives(None), "error,compute_bridge=info,component=info");
        assert_eq!(
            directives(Some("debug")),
            "error,compute_bridge=debug,component=debug"
        );
        assert_eq!(
            directives(Some("TRACE")),
            "error,compute_bridge=trace,component=trace"
        );
    }

    #[test]
    fn a_named_crate_is_opt_in_and_a_named_own_target_wins() {
        assert_eq!(
            directives(Some("info,iroh::address_lookup=error,mosaik=debug")),
            "error,compute_bridge=info,component=info,iroh::address_lookup=error,mosaik=debug"
        );
        assert_eq!(
            directives(Some("warn,compute_bridge=trace")),
            "error,component=warn,compute_bridge=trace"
        );
    }

    /// An output the test can stall and read.
    #[derive(Clone, Default)]
    struct Out {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(w: &Background, i: usize) {
        w.make_writer()
            .write_all(format!("line {i}\n").as_bytes())
            .unwrap();
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_flush_guard_drops() {
        let out = Out::default();
        let (w, flush) = background(out.clone());
        for i in 0..5_000 {
            log(&w, i);
        }
        drop(flush);
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        let want: String = (0..5_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
    }

    #[test]
    fn a_stalled_output_does_not_stall_the_thread_that_logs() {
        let out = Out::default();
        let (w, flush) = background(out.clone());
        let stalled = out.gate.lock().unwrap();
        // The output takes nothing while these are logged; with the old
        // writer (the output itself, written by the logging thread) the
        // first line would wait here for the gate, for ever.
        for i in 0..QUEUE_LINES {
            log(&w, i);
        }
        assert!(out.bytes.lock().unwrap().is_empty());
        drop(stalled);
        drop(flush);
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), QUEUE_LINES);
        assert_eq!(
            text.lines().last(),
            Some(&*format!("line {}", QUEUE_LINES - 1))
        );
    }

    #[test]
    fn every_result_parses_and_a_bad_spec_falls_back_with_a_reason() {
        for spec in [None, Some("debug"), Some("info,mosaik=trace"), Some("")] {
            let (_, warning) = filter(spec);
            assert!(warning.is_none(), "{spec:?}: {warning:?}");
        }
        let (f, warning) = filter(Some("mosaik=loud"));
        assert!(warning.unwrap().contains("mosaik=loud"));
        assert_eq!(f.to_string(), EnvFilter::new(directives(None)).to_string());
    }
}
