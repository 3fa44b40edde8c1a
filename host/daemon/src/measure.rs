//! Measured backends (issue 20): the RTMR3 register the bridge extends, and
//! the measurement log it keeps in the state dir and publishes in the card.
//!
//! # The register
//!
//! [`MeasurementRegister`] is the seam. In production it is the kernel's
//! TSM measurement-register file for TDX guests, [`SysfsRtmr3`]
//! (`/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384`, Linux
//! 6.16 or later; torvalds/linux
//! `Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest`): a
//! binary attribute, root only, where one write of exactly 48 raw bytes at
//! offset 0 extends the register (`drivers/virt/coco/guest/tsm-mr.c` refuses
//! any other size with `EINVAL`) and a read returns the live 48 bytes. For
//! tests, [`EmulatedRtmr`] keeps the same semantics in a plain file: an
//! extend writes `SHA-384(old ‖ data)`, any other size is refused with
//! `EINVAL`. The environment variable [`EMULATED_RTMR3_ENV`] points a bridge
//! at such a file. The emulated register cannot fool a requester: a real
//! quote carries the real RTMR3, which the log then does not replay to.
//!
//! # The log
//!
//! `state_dir/measurements.log`: one JSON [`LoggedMeasurement`] per line,
//! append-only, each line fsync'd **before** its digest is extended
//! (write-ahead). RTMR3 survives a bridge restart but not a reboot, so on
//! open ([`Measurer::open`]) the log is replayed and compared with the live
//! register:
//! - equal: nothing to do;
//! - equal without the last event: the bridge stopped between the append and
//!   the extend; the extend is completed;
//! - the register is zero (a reboot): the old log is kept beside as
//!   `measurements.log.previous-boot` and a new one started;
//! - anything else (someone else extended RTMR3, or the log was edited):
//!   start-up stops with both values.
//!
//! A backend whose last event is the one it would be measured with is not
//! measured again, so restarts do not grow the log. With `attestation =
//! "none"` there is no register: the log is kept, nothing is extended, and
//! the card says so (`extended: false`).
//!
//! Keeps only the log: backend names, component digests and policies, which
//! hold no secret and nothing about a requester.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compute_bridge_contract::measurement::{
    BackendMeasurement, BackendPolicy, ComponentDigest, LoggedMeasurement, MeasurementLog, SshPin,
    replay,
};
use sha2::{Digest, Sha384};

use compute_bridge_contract::measurement::Measurement;

/// The kernel's RTMR3 file for TDX guests.
pub const RTMR3_SYSFS: &str = "/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384";

/// Points the bridge at an emulated RTMR3 (a file; tests only).
pub const EMULATED_RTMR3_ENV: &str = "COMPUTE_BRIDGE_EMULATED_RTMR3";

/// The log's file name in the state dir.
pub const LOG_FILE: &str = "measurements.log";

/// Where a log of the previous boot is kept.
pub const PREVIOUS_BOOT_FILE: &str = "measurements.log.previous-boot";

/// Why a register could not be read or extended.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The kernel has no RTMR3 file.
    #[error(
        "this machine has no RTMR3 measurement register: {RTMR3_SYSFS} does not exist (it needs \
         a TDX guest with Linux 6.16 or later, built with TDX_GUEST_DRIVER, which selects \
         TSM_MEASUREMENTS). To run without TDX, set `[attestation] mode = \"none\"`: the card \
         then says its measurement log is not extended."
    )]
    Missing,
    /// Reading or writing it failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The register's file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It did not hold 48 bytes.
    #[error("{path} holds {len} bytes, not the 48 of an RTMR")]
    Size {
        /// The register's file.
        path: PathBuf,
        /// What it held.
        len: usize,
    },
}

/// An extendable measurement register (RTMR3).
pub trait MeasurementRegister: Send + Sync + std::fmt::Debug {
    /// Its value now.
    fn read(&self) -> Result<Measurement, RegisterError>;
    /// Extend it with `data`, which must be 48 bytes (else `EINVAL`, as the
    /// kernel answers).
    fn extend(&self, data: &[u8]) -> Result<(), RegisterError>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

fn read_48(path: &Path) -> Result<Measurement, RegisterError> {
    let bytes = std::fs::read(path).map_err(|source| RegisterError::Io {
        what: "reading",
        path: path.into(),
        source,
    })?;
    <[u8; 48]>::try_from(bytes.as_slice())
        .map(Measurement)
        .map_err(|_| RegisterError::Size {
            path: path.into(),
            len: bytes.len(),
        })
}

fn einval(path: &Path) -> RegisterError {
    RegisterError::Io {
        what: "extending",
        path: path.into(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    }
}

/// The kernel's RTMR3 file ([`RTMR3_SYSFS`]).
#[derive(Debug, Clone)]
pub struct SysfsRtmr3 {
    path: PathBuf,
}

impl SysfsRtmr3 {
    /// The kernel's file, if it exists.
    pub fn open() -> Result<Self, RegisterError> {
        Self::at(Path::new(RTMR3_SYSFS))
    }

    /// The file at `path` (tests: a path that does not exist).
    pub fn at(path: &Path) -> Result<Self, RegisterError> {
        if !path.exists() {
            return Err(RegisterError::Missing);
        }
        Ok(Self { path: path.into() })
    }
}

impl MeasurementRegister for SysfsRtmr3 {
    fn read(&self) -> Result<Measurement, RegisterError> {
        read_48(&self.path)
    }

    /// One `write` of the 48 raw bytes at offset 0, without truncating or
    /// creating (a sysfs binary attribute; `std::fs::write` would truncate).
    fn extend(&self, data: &[u8]) -> Result<(), RegisterError> {
        if data.len() != 48 {
            return Err(einval(&self.path));
        }
        let io = |source| RegisterError::Io {
            what: "extending",
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        let n = f.write(data).map_err(io)?;
        if n != data.len() {
            return Err(io(std::io::Error::other(format!(
                "the kernel took {n} of 48 bytes"
            ))));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// RTMR3 emulated over a file of 48 bytes (tests): an extend writes
/// `SHA-384(old ‖ data)` through a temporary file and a rename, so a reader
/// never sees half a value; other sizes are refused with `EINVAL`.
#[derive(Debug)]
pub struct EmulatedRtmr {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl EmulatedRtmr {
    /// The register in `path`, created as 48 zero bytes if absent.
    pub fn open(path: &Path) -> Result<Self, RegisterError> {
        if !path.exists() {
            write_atomically(path, &[0; 48]).map_err(|source| RegisterError::Io {
                what: "creating",
                path: path.into(),
                source,
            })?;
        }
        let r = Self {
            path: path.into(),
            lock: std::sync::Mutex::new(()),
        };
        r.read()?;
        Ok(r)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl MeasurementRegister for EmulatedRtmr {
    fn read(&self) -> Result<Measurement, RegisterError> {
        read_48(&self.path)
    }

    fn extend(&self, data: &[u8]) -> Result<(), RegisterError> {
        let Ok(data) = <&[u8; 48]>::try_from(data) else {
            return Err(einval(&self.path));
        };
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.read()?;
        let mut h = Sha384::new();
        h.update(old.0);
        h.update(data);
        let new: [u8; 48] = h.finalize().into();
        write_atomically(&self.path, &new).map_err(|source| RegisterError::Io {
            what: "extending",
            path: self.path.clone(),
            source,
        })
    }

    fn describe(&self) -> String {
        format!("{} (emulated)", self.path.display())
    }
}

/// The emulated register [`EMULATED_RTMR3_ENV`] names, if it names one.
pub fn emulated_register() -> Result<Option<Arc<EmulatedRtmr>>, RegisterError> {
    match std::env::var_os(EMULATED_RTMR3_ENV) {
        Some(p) if !p.is_empty() => Ok(Some(Arc::new(EmulatedRtmr::open(Path::new(&p))?))),
        _ => Ok(None),
    }
}

/// Why the measurement log could not be opened or appended to.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The register failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The log file failed.
    #[error("the measurement log {path}: {source}")]
    Log {
        /// The log.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of the log is not an event in its place.
    #[error(
        "the measurement log {path} is damaged at line {line} ({why}); RTMR3 cannot be \
         explained without it: restore it, or reboot the guest (which resets RTMR3) and remove it"
    )]
    Damaged {
        /// The log.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The register disagrees with the log.
    #[error(
        "RTMR3 does not match the measurement log: {register} holds {actual}, the log {path} \
         replays to {replayed}. Something else extended RTMR3, or the log was replaced; the \
         card could not be verified, so the bridge does not start. Reboot the guest to reset \
         RTMR3 (the log is then started again)"
    )]
    Mismatch {
        /// The register.
        register: String,
        /// Its value (hex; text keeps the error small).
        actual: String,
        /// The log.
        path: PathBuf,
        /// What the log gives (hex).
        replayed: String,
    },
}

/// The bridge's [`Measurer`], shared by start-up and the provider loop.
pub type SharedMeasurer = Arc<std::sync::Mutex<Measurer>>;

/// The log and the register it explains. One per bridge; shared behind a
/// mutex so that an extend and the card's (log, quote) pair never
/// interleave.
#[derive(Debug)]
pub struct Measurer {
    path: PathBuf,
    file: File,
    log: MeasurementLog,
    register: Option<Arc<dyn MeasurementRegister>>,
}

impl Measurer {
    /// Open (or start) the log in `state_dir` and reconcile it with
    /// `register` (`None`: `attestation = "none"`, nothing is extended).
    pub fn open(
        state_dir: &Path,
        register: Option<Arc<dyn MeasurementRegister>>,
    ) -> Result<Self, MeasureError> {
        let path = state_dir.join(LOG_FILE);
        let log_err = |source| MeasureError::Log {
            path: path.clone(),
            source,
        };
        let mut events = read_log(&path)?;
        if let Some(reg) = &register {
            let actual = reg.read()?;
            let replayed = replay(events.iter().map(|e| &e.event));
            if actual == replayed {
            } else if events.len() > 1 && actual == Measurement::ZERO {
                tracing::info!(
                    kept = %state_dir.join(PREVIOUS_BOOT_FILE).display(),
                    "RTMR3 is zero: the guest rebooted; starting a new measurement log"
                );
                std::fs::rename(&path, state_dir.join(PREVIOUS_BOOT_FILE)).map_err(log_err)?;
                events.clear();
            } else if let Some(last) = events.last()
                && replay(events[..events.len() - 1].iter().map(|e| &e.event)) == actual
            {
                tracing::info!(
                    backend = %last.event.backend,
                    "completing a measurement the bridge logged but had not extended when it stopped"
                );
                reg.extend(&last.digest.0)?;
            } else {
                return Err(MeasureError::Mismatch {
                    register: reg.describe(),
                    actual: actual.to_string(),
                    path,
                    replayed: replayed.to_string(),
                });
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(log_err)?;
        Ok(Self {
            path,
            file,
            log: MeasurementLog {
                extended: register.is_some(),
                events,
            },
            register,
        })
    }

    /// Measure `event` before its component serves a call: append it to the
    /// log (fsync'd), then extend RTMR3 with its digest. A backend already
    /// measured with this very event is not measured again. Returns the
    /// event as logged.
    pub fn measure(
        &mut self,
        event: BackendMeasurement,
    ) -> Result<LoggedMeasurement, MeasureError> {
        if let Some(e) = self
            .log
            .events
            .iter()
            .rev()
            .find(|e| e.event.backend == event.backend)
            && e.event == event
        {
            return Ok(e.clone());
        }
        let logged = LoggedMeasurement::new(self.log.events.len() as u64, event);
        let mut line = serde_json::to_vec(&logged).expect("an event serialises");
        line.push(b'\n');
        let log_err = |source| MeasureError::Log {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(log_err)?;
        self.file.sync_data().map_err(log_err)?;
        if let Some(reg) = &self.register {
            reg.extend(&logged.digest.0)?;
        }
        self.log.events.push(logged.clone());
        Ok(logged)
    }

    /// The log as the card carries it.
    pub fn log(&self) -> &MeasurementLog {
        &self.log
    }

    /// What the register should hold now (the log's replay).
    pub fn expected(&self) -> Measurement {
        replay(self.log.events.iter().map(|e| &e.event))
    }
}

/// The measurement of the backend `spec` describes: its name, its
/// component's SHA-256, and its policy (the http capability's origins,
/// normalised as the sandbox enforces them; the SSH labels with their
/// pinned keys; the memory and time limits of one call; the digest every
/// capability's `measure` gives). Never a secret: the capabilities measure
/// no key or config value.
pub fn measurement_of(spec: &compute_bridge_sandbox::BackendSpec) -> BackendMeasurement {
    use compute_bridge_sandbox::capabilities::http::Origin;
    use compute_bridge_sandbox::capabilities::ssh::SshTransport;
    let mut allowed_origins: Vec<String> = spec
        .sections
        .http
        .allowed_hosts
        .iter()
        .map(|o| Origin::parse(o).map_or_else(|_| o.clone(), |o| o.to_string()))
        .collect();
    allowed_origins.sort();
    allowed_origins.dedup();
    let mut ssh_hosts: Vec<SshPin> = spec
        .sections
        .ssh
        .parsed_hosts()
        .into_iter()
        .map(|(label, h)| SshPin {
            label,
            host_key: match h.transport {
                SshTransport::Local => None,
                SshTransport::Ssh => Some(h.host_key.as_deref().unwrap_or("").trim().to_string()),
            },
        })
        .collect();
    ssh_hosts.sort();
    BackendMeasurement {
        backend: spec.at.backend.to_string(),
        component_sha256: ComponentDigest::of(&spec.bytes),
        policy: BackendPolicy {
            allowed_origins,
            ssh_hosts,
            memory_limit_mib: u32::try_from(spec.limits.memory_bytes / (1024 * 1024))
                .unwrap_or(u32::MAX),
            call_timeout_sec: spec.limits.deadline.as_secs(),
            capabilities_sha256: hex::encode(spec.sections.measure()),
        },
    }
}

/// Read the log; a last line cut short by a crash (no newline, not JSON) is
/// dropped and cut off the file.
fn read_log(path: &Path) -> Result<Vec<LoggedMeasurement>, MeasureError> {
    let log_err = |source| MeasureError::Log {
        path: path.into(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(log_err(e)),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(log_err)?;
    let mut events = Vec::new();
    let mut good_len = 0;
    for (i, line) in BufReader::new(text.as_slice()).split(b'\n').enumerate() {
        let line = line.map_err(log_err)?;
        let complete = good_len + line.len() < text.len();
        let damaged = |why: String| MeasureError::Damaged {
            path: path.into(),
            line: i + 1,
            why,
        };
        let e: LoggedMeasurement = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(_) if !complete => {
                tracing::warn!(
                    log = %path.display(),
                    "dropping a measurement cut short when the bridge stopped"
                );
                file.set_len(good_len as u64).map_err(log_err)?;
                file.rewind().map_err(log_err)?;
                file.sync_data().map_err(log_err)?;
                break;
            }
            Err(e) => return Err(damaged(e.to_string())),
        };
        if e.seq != events.len() as u64 {
            return Err(damaged(format!(
                "it holds event {} in place {}",
                e.seq,
                events.len()
            )));
        }
        if e != LoggedMeasurement::new(e.seq, e.event.clone()) {
            return Err(damaged("its digests are not its event's".into()));
        }
        events.push(e);
        good_len += line.len() + 1;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::measurement::extend;

    fn event(backend: &str, component: u8) -> BackendMeasurement {
        BackendMeasurement {
            backend: backend.into(),
            component_sha256: ComponentDigest([component; 32]),
            policy: BackendPolicy {
                allowed_origins: vec!["https://api.example".into()],
                ssh_hosts: Vec::new(),
                memory_limit_mib: 64,
                call_timeout_sec: 30,
                capabilities_sha256: "00".repeat(32),
            },
        }
    }

    fn emulated(dir: &Path) -> Arc<EmulatedRtmr> {
        Arc::new(EmulatedRtmr::open(&dir.join("rtmr3")).unwrap())
    }

    #[test]
    fn the_emulated_register_extends_like_the_tdx_module_and_refuses_other_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let r = emulated(dir.path());
        assert_eq!(r.read().unwrap(), Measurement::ZERO);
        let d = Measurement([7; 48]);
        r.extend(&d.0).unwrap();
        assert_eq!(r.read().unwrap(), extend(&Measurement::ZERO, &d));
        for size in [0, 47, 49, 64] {
            let err = r.extend(&vec![1; size]).unwrap_err();
            let RegisterError::Io { source, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL), "{size} bytes");
        }
        assert_eq!(
            r.read().unwrap(),
            extend(&Measurement::ZERO, &d),
            "unchanged"
        );
    }

    #[test]
    fn a_missing_kernel_file_names_the_kernel_requirement() {
        let err = SysfsRtmr3::at(Path::new("/nonexistent/rtmr3:sha384")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(RTMR3_SYSFS) && msg.contains("6.16") && msg.contains("mode = \"none\""),
            "{msg}"
        );
    }

    /// aws and gcp measured into a fresh emulated register; the measurer
    /// closed.
    fn measured_two() -> (tempfile::TempDir, Arc<EmulatedRtmr>) {
        let dir = tempfile::tempdir().unwrap();
        let reg = emulated(dir.path());
        let mut m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        m.measure(event("aws", 1)).unwrap();
        m.measure(event("gcp", 2)).unwrap();
        (dir, reg)
    }

    #[test]
    fn measuring_appends_then_extends_and_a_restart_reads_the_same_log() {
        let (dir, reg) = measured_two();
        let m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        assert_eq!(m.log().events.len(), 2);
        assert_eq!(reg.read().unwrap(), m.expected());
        assert!(m.log().extended);
        let before = m.log().clone();
        drop(m);

        let mut again = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        assert_eq!(again.log(), &before);
        // The same event again is not a new measurement.
        again.measure(event("aws", 1)).unwrap();
        assert_eq!(again.log().events.len(), 2);
        // Another component is.
        again.measure(event("aws", 3)).unwrap();
        assert_eq!(again.log().events.len(), 3);
        assert_eq!(reg.read().unwrap(), again.expected());
        assert_eq!(again.log().verify(&reg.read().unwrap()), Ok(()));
    }

    #[test]
    fn a_crash_between_append_and_extend_is_completed_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let reg = emulated(dir.path());
        let mut m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        m.measure(event("aws", 1)).unwrap();
        // Logged without a register: the extend "did not happen".
        drop(m);
        let mut unextended = Measurer::open(dir.path(), None).unwrap();
        unextended.measure(event("gcp", 2)).unwrap();
        drop(unextended);
        assert_ne!(
            reg.read().unwrap(),
            replay([&event("aws", 1), &event("gcp", 2)])
        );

        let m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        assert_eq!(m.log().events.len(), 2);
        assert_eq!(reg.read().unwrap(), m.expected());
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let reg = emulated(dir.path());
        let mut m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        m.measure(event("aws", 1)).unwrap();
        drop(m);
        let path = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":1,\"ev").unwrap();
        drop(f);
        let m = Measurer::open(dir.path(), Some(reg.clone())).unwrap();
        assert_eq!(m.log().events.len(), 1);
        drop(m);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("api.example", "evil.example")).unwrap();
        let err = Measurer::open(dir.path(), Some(reg))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("damaged at line 1") && err.contains("digests"),
            "{err}"
        );
    }

    #[test]
    fn a_register_that_disagrees_with_the_log_stops_start_up_with_both_values() {
        let (dir, reg) = measured_two();
        // Someone else extends RTMR3.
        reg.extend(&[9; 48]).unwrap();
        let actual = reg.read().unwrap();
        let err = Measurer::open(dir.path(), Some(reg.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RTMR3 does not match the measurement log")
                && err.contains(&actual.to_string()),
            "{err}"
        );

        // On a fresh log, a register someone else extended is refused too.
        let fresh = tempfile::tempdir().unwrap();
        let err = Measurer::open(fresh.path(), Some(reg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RTMR3 does not match"), "{err}");
    }

    #[test]
    fn a_reboot_starts_a_new_log_and_keeps_the_old_one_beside() {
        let (dir, _) = measured_two();
        std::fs::remove_file(dir.path().join("rtmr3")).unwrap();
        let reg = emulated(dir.path());
        let m = Measurer::open(dir.path(), Some(reg)).unwrap();
        assert!(m.log().events.is_empty());
        assert!(dir.path().join(PREVIOUS_BOOT_FILE).exists());
    }

    #[test]
    fn without_a_register_the_log_is_kept_and_says_it_is_not_extended() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Measurer::open(dir.path(), None).unwrap();
        m.measure(event("aws", 1)).unwrap();
        assert!(!m.log().extended);
        drop(m);
        let m = Measurer::open(dir.path(), None).unwrap();
        assert_eq!(m.log().events.len(), 1);
        assert!(!m.log().extended);
    }
}
