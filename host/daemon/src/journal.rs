//! The journal: the bridge's durable memory of the workloads it started, in
//! `state_dir/journal.redb` (redb: ACID, every commit fsync'd before it
//! returns).
//!
//! An instance is journaled *before* its sealed access is published, and its
//! [`Phase`] moves forward only: `Provisioned` → `Running` → `Finished`
//! (holding the usage report) → `Reported`, or `Provisioned` → `Aborted`.
//! On start the provider loop reconciles every entry that is not final, so
//! a workload is torn down at `valid_to` and reported once even across
//! crashes.
//!
//! What is kept, and why:
//! - the **request id**, as the key: the usage report, a decline and a
//!   repeated grant's second report all name it (the protocol has no other
//!   handle), and a replayed grant is refused as a duplicate by it;
//! - the **backend and its instance record** (id, the region it was placed
//!   in, the address, login and host key requesters were given, the
//!   backend's private handle): reconciliation finds the instance by it,
//!   to watch it again or tear it down;
//! - the **component** that provisioned it (its `sha256:HEX`, absent in
//!   entries written before live swaps): which measured code made the
//!   instance, when a swap has since made another component current;
//! - **CPU and memory**: re-taking the capacity of a workload adopted at
//!   start;
//! - **`valid_to`** and when it started: when it must end, and the report's
//!   times;
//! - the **phase**, and from `Finished` on the **usage report** itself, so
//!   it is sent once and can be sent again on request.
//!
//! What is never kept (there is no field for it): who asked (peer id), the
//! reply key, the workload's private key, the image reference, the region
//! or TDX requirement the grant asked for (only where it was placed),
//! settlements per grant (only their sum, in the counters), and the
//! `grant=#N` numbers the log uses (so nothing here links a log line to a
//! request id). Entries that are final are pruned a week after `valid_to`.
//!
//! Every string kept has a bound ([`MAX_NAME_BYTES`] for the backend's
//! name, [`compute_bridge_contract::backend::bounds`] for the
//! instance record, the handle's 16 KiB above all): an entry over one is
//! refused before anything is written, naming the field and the limit, so
//! one backend cannot fill the disk every backend's grants are journaled
//! on. Counters saturate instead of wrapping.
//!
//! The database is opened exclusively: a second bridge on the same state
//! dir is refused.
//!
//! Writes that move workloads along ([`Journal::record`],
//! [`Journal::advance`]) are group-committed: a writer thread takes every
//! write queued while the previous commit was syncing and commits them in
//! one transaction, so N grants in flight cost one fsync, not N, and no
//! async worker ever waits on the disk. Each caller still returns only once
//! its own write is durable, and sees its own outcome.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use compute_bridge_contract::backend::{GrantSpec, Instance, TdxRequirement};
use compute_bridge_contract::protocol::{RequestId, UsageReport};

/// File name under the state dir.
pub const JOURNAL_FILE: &str = "journal.redb";

const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Longest backend name and region kept, bytes.
pub const MAX_NAME_BYTES: usize = 64;

const LIFETIME_GRANTS: &str = "lifetime_grants";
const SETTLED_MICRO_USD: &str = "settled_micro_usd";

/// A journal operation failed; the grant that needed it is not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The database could not be opened (e.g. another bridge holds it).
    #[error("cannot open the journal {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A read or write failed (e.g. the disk is full).
    #[error("journal {op} failed: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// An entry was asked for that does not exist. (Messages name no
    /// request id: they reach the log.)
    #[error("no journal entry for this request")]
    Missing(RequestId),
    /// An entry was written twice.
    #[error("this request is already journaled")]
    Exists(RequestId),
    /// An entry holds a string over its bound; nothing was written.
    #[error("journal entry refused: {0} (a backend returned more than the journal keeps)")]
    TooLarge(String),
    /// A phase change that would go backwards.
    #[error("this request's entry cannot go from {from} to {to}")]
    Backwards {
        /// The request.
        request_id: RequestId,
        /// Current phase.
        from: &'static str,
        /// Requested phase.
        to: &'static str,
    },
}

fn io(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> JournalError {
    move |e| JournalError::Io {
        op,
        message: e.to_string(),
    }
}

/// Where a journaled workload is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Provisioned; access not yet handed out.
    Provisioned,
    /// Access handed out; the workload is watched until it ends.
    Running,
    /// Torn down; the usage report is ready but not yet sent.
    Finished {
        /// The report to send.
        report: UsageReport,
    },
    /// The usage report was sent. Final. The report is kept so a requester
    /// that missed it (its subscription was down when it went out) can ask
    /// for it again until the entry is pruned.
    Reported {
        /// The report that was sent.
        report: UsageReport,
    },
    /// Torn down before access was handed out; nothing to report. Final.
    Aborted,
}

impl Phase {
    fn rank(&self) -> u8 {
        match self {
            Self::Provisioned => 0,
            Self::Running => 1,
            Self::Finished { .. } => 2,
            Self::Reported { .. } | Self::Aborted => 3,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Provisioned => "provisioned",
            Self::Running => "running",
            Self::Finished { .. } => "finished",
            Self::Reported { .. } => "reported",
            Self::Aborted => "aborted",
        }
    }

    /// The usage report, once the workload has ended (sent or not).
    pub fn report(&self) -> Option<&UsageReport> {
        match self {
            Self::Finished { report } | Self::Reported { report } => Some(report),
            _ => None,
        }
    }

    /// True for `Reported` and `Aborted`: nothing more will happen.
    pub fn is_final(&self) -> bool {
        self.rank() == 3
    }
}

/// One journaled workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The grant.
    pub request_id: RequestId,
    /// The backend that runs it.
    pub backend: String,
    /// The backend's record of it (including its private handle).
    pub instance: Instance,
    /// The digest (`sha256:HEX`) of the component that provisioned it;
    /// `None` in entries written before components were swapped live (and
    /// then not written, so those entries read and write as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// CPU reserved, millicores.
    pub cpu_millicores: u32,
    /// Memory reserved, MiB.
    pub ram_mib: u32,
    /// Unix seconds by which it must be gone.
    pub valid_to: u64,
    /// Unix seconds it was provisioned.
    pub started_at: u64,
    /// Where it is now.
    pub phase: Phase,
}

impl JournalEntry {
    /// Every string within its bound (see the module docs).
    pub fn check_bounds(&self) -> Result<(), JournalError> {
        let name = |field: &str, v: &str| {
            if v.len() > MAX_NAME_BYTES {
                Err(JournalError::TooLarge(format!(
                    "`{field}` is {} bytes; the limit is {MAX_NAME_BYTES} bytes",
                    v.len()
                )))
            } else {
                Ok(())
            }
        };
        name("backend", &self.backend)?;
        self.instance
            .check_bounds()
            .map_err(|e| JournalError::TooLarge(format!("instance {e}")))
    }

    /// The grant spec to re-take capacity with after a restart (no image:
    /// the journal does not keep it).
    pub fn grant_spec(&self) -> GrantSpec {
        GrantSpec {
            request_id: self.request_id.to_string(),
            cpu_millicores: self.cpu_millicores,
            ram_mib: self.ram_mib,
            region: None,
            tdx: TdxRequirement::None,
            image: String::new(),
            valid_to: self.valid_to,
        }
    }
}

/// Aggregate counters kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Grants ever provisioned.
    pub lifetime_grants: u64,
    /// Settled revenue ever received, micro-USD.
    pub settled_micro_usd: u64,
}

/// The journal. Cheap to share behind an `Arc`; reads are short
/// synchronous transactions, moves are awaited group commits (see the
/// module docs).
pub struct Journal {
    db: Arc<Handle>,
    writer: Option<Writer>,
}

/// The database, shared by readers and the writer thread, reopened after a
/// failure.
struct Handle {
    /// `None` after a reopen failed (the disk still full, say); the next
    /// transaction tries again.
    db: RwLock<Option<Database>>,
    path: PathBuf,
}

impl Handle {
    fn begin_write(&self) -> Result<redb::WriteTransaction, JournalError> {
        self.begin(|db| db.begin_write().map_err(|e| io("write")(&e)))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, JournalError> {
        self.begin(|db| db.begin_read().map_err(|e| io("read")(&e)))
    }

    /// Begin a transaction. Once a write has failed (a full disk, say),
    /// redb refuses every transaction until the database is reopened; so
    /// on an error reopen once and try again. While the disk stays full
    /// the reopen or the write fails again and the caller declines; once
    /// space is back the journal works again without a restart.
    fn begin<T>(
        &self,
        f: impl Fn(&Database) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let first = match self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(db) => match f(db) {
                Ok(t) => return Ok(t),
                Err(e) => e,
            },
            None => JournalError::Io {
                op: "open",
                message: "closed after an earlier failure".into(),
            },
        };
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // Another caller may have reopened it meanwhile.
        if let Some(Ok(t)) = slot.as_ref().map(&f) {
            return Ok(t);
        }
        // redb locks the file: close the old handle before opening anew.
        *slot = None;
        match Database::create(&self.path) {
            Ok(db) => {
                tracing::info!(error = %first, "journal reopened after a failure");
                let r = f(&db);
                *slot = Some(db);
                r
            }
            Err(e) => {
                tracing::warn!("journal could not be reopened ({e}); will try again");
                Err(first)
            }
        }
    }
}

/// The group-commit thread and the queue into it; dropping the journal
/// closes the queue and joins the thread, so the database is closed (and
/// can be reopened) once the drop returns.
struct Writer {
    queue: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// One queued write and where its outcome goes.
struct Job {
    write: Write,
    done: futures::channel::oneshot::Sender<Result<(), JournalError>>,
}

enum Write {
    Record(Box<JournalEntry>),
    Advance(RequestId, Phase),
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            drop(w.queue);
            let _ = w.thread.join();
        }
    }
}

impl Journal {
    /// Open (or create) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        let open_err = |e: &dyn std::fmt::Display| JournalError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(&path).map_err(|e| open_err(&e))?;
        let tx = db.begin_write().map_err(|e| open_err(&e))?;
        tx.open_table(INSTANCES).map_err(|e| open_err(&e))?;
        tx.open_table(COUNTERS).map_err(|e| open_err(&e))?;
        tx.commit().map_err(|e| open_err(&e))?;
        let db = Arc::new(Handle {
            db: RwLock::new(Some(db)),
            path: path.clone(),
        });
        let (queue, jobs) = mpsc::channel();
        let thread = {
            let db = db.clone();
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || write_loop(&db, &jobs))
                .map_err(|e| open_err(&e))?
        };
        Ok(Self {
            db,
            writer: Some(Writer { queue, thread }),
        })
    }

    async fn submit(&self, write: Write) -> Result<(), JournalError> {
        let stopped = || JournalError::Io {
            op: "write",
            message: "the journal writer stopped".into(),
        };
        let (done, outcome) = futures::channel::oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(stopped)?
            .queue
            .send(Job { write, done })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Journal a newly provisioned workload (phase `Provisioned`) and count
    /// it. Durable when this returns.
    pub async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        entry.check_bounds()?;
        self.submit(Write::Record(Box::new(entry.clone()))).await
    }

    /// Move an entry to `phase`. Moving to the phase it is in is a no-op;
    /// moving backwards is an error. Durable when this returns.
    pub async fn advance(&self, request_id: RequestId, phase: Phase) -> Result<(), JournalError> {
        self.submit(Write::Advance(request_id, phase)).await
    }

    /// The entry for `request_id`.
    pub fn get(&self, request_id: RequestId) -> Result<Option<JournalEntry>, JournalError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INSTANCES).map_err(|e| io("read")(&e))?;
        let key = request_id.to_string();
        match t.get(key.as_str()).map_err(|e| io("read")(&e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(|e| io("decode")(&e))?,
            )),
            None => Ok(None),
        }
    }

    /// Every entry, in request-id order.
    pub fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INSTANCES).map_err(|e| io("read")(&e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| io("read")(&e))? {
            let (_, v) = item.map_err(|e| io("read")(&e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| io("decode")(&e))?);
        }
        Ok(out)
    }

    /// Entries that are not final: what reconciliation must look at.
    pub fn unfinished(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| !e.phase.is_final())
            .collect())
    }

    /// Remove final entries whose `valid_to` is before `before` (unix
    /// seconds). A replayed grant that old is declined as expired anyway.
    pub fn prune(&self, before: u64) -> Result<usize, JournalError> {
        let old: Vec<String> = self
            .entries()?
            .into_iter()
            .filter(|e| e.phase.is_final() && e.valid_to < before)
            .map(|e| e.request_id.to_string())
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(INSTANCES).map_err(|e| io("write")(&e))?;
            for k in &old {
                t.remove(k.as_str()).map_err(|e| io("write")(&e))?;
            }
        }
        tx.commit().map_err(|e| io("commit")(&e))?;
        Ok(old.len())
    }

    /// Add a settlement to the revenue counter; returns the new total.
    pub fn add_settled(&self, micro_usd: u64) -> Result<u64, JournalError> {
        let tx = self.db.begin_write()?;
        let total;
        {
            let mut c = tx.open_table(COUNTERS).map_err(|e| io("write")(&e))?;
            let n = c
                .get(SETTLED_MICRO_USD)
                .map_err(|e| io("read")(&e))?
                .map(|v| v.value())
                .unwrap_or(0);
            total = n.saturating_add(micro_usd);
            c.insert(SETTLED_MICRO_USD, total)
                .map_err(|e| io("write")(&e))?;
        }
        tx.commit().map_err(|e| io("commit")(&e))?;
        Ok(total)
    }

    /// The aggregate counters.
    pub fn counters(&self) -> Result<Counters, JournalError> {
        let tx = self.db.begin_read()?;
        let c = tx.open_table(COUNTERS).map_err(|e| io("read")(&e))?;
        let get = |k: &str| -> Result<u64, JournalError> {
            Ok(c.get(k)
                .map_err(|e| io("read")(&e))?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        Ok(Counters {
            lifetime_grants: get(LIFETIME_GRANTS)?,
            settled_micro_usd: get(SETTLED_MICRO_USD)?,
        })
    }
}

/// The writer thread: take one queued write, then every write queued
/// behind it (up to [`MAX_BATCH`]), commit them together, tell each caller.
fn write_loop(db: &Handle, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcomes = commit_batch(db, batch.iter().map(|j| &j.write));
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let _ = job.done.send(outcome);
        }
    }
}

/// Apply `writes` in order in one transaction and commit it. A write that
/// is refused on its merits (exists, missing, backwards) changes nothing
/// and fails alone; any other error rolls the whole batch back and fails
/// every write in it, so nothing is half-written.
fn commit_batch<'a>(
    db: &Handle,
    writes: impl ExactSizeIterator<Item = &'a Write>,
) -> Vec<Result<(), JournalError>> {
    let n = writes.len();
    let all = |e: JournalError| vec![Err(e); n];
    let tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(e) => return all(e),
    };
    let mut outcomes = Vec::with_capacity(n);
    for w in writes {
        let outcome = match w {
            Write::Record(entry) => record_in(&tx, entry),
            Write::Advance(id, phase) => advance_in(&tx, *id, phase.clone()),
        };
        match outcome {
            Ok(())
            | Err(
                JournalError::Exists(_) | JournalError::Missing(_) | JournalError::Backwards { .. },
            ) => outcomes.push(outcome),
            Err(e) => {
                drop(tx);
                return all(JournalError::Io {
                    op: "write",
                    message: format!("batch rolled back: {e}"),
                });
            }
        }
    }
    match tx.commit() {
        Ok(()) => outcomes,
        Err(e) => all(io("commit")(&e)),
    }
}

fn record_in(tx: &redb::WriteTransaction, entry: &JournalEntry) -> Result<(), JournalError> {
    let key = entry.request_id.to_string();
    let value = serde_json::to_vec(entry).map_err(|e| io("encode")(&e))?;
    let mut t = tx.open_table(INSTANCES).map_err(|e| io("write")(&e))?;
    if t.get(key.as_str()).map_err(|e| io("read")(&e))?.is_some() {
        return Err(JournalError::Exists(entry.request_id));
    }
    t.insert(key.as_str(), value.as_slice())
        .map_err(|e| io("write")(&e))?;
    let mut c = tx.open_table(COUNTERS).map_err(|e| io("write")(&e))?;
    let n = c
        .get(LIFETIME_GRANTS)
        .map_err(|e| io("read")(&e))?
        .map(|v| v.value())
        .unwrap_or(0);
    c.insert(LIFETIME_GRANTS, n.saturating_add(1))
        .map_err(|e| io("write")(&e))?;
    Ok(())
}

fn advance_in(
    tx: &redb::WriteTransaction,
    request_id: RequestId,
    phase: Phase,
) -> Result<(), JournalError> {
    let key = request_id.to_string();
    let mut t = tx.open_table(INSTANCES).map_err(|e| io("write")(&e))?;
    let mut entry: JournalEntry = {
        let v = t
            .get(key.as_str())
            .map_err(|e| io("read")(&e))?
            .ok_or(JournalError::Missing(request_id))?;
        serde_json::from_slice(v.value()).map_err(|e| io("decode")(&e))?
    };
    if phase.rank() < entry.phase.rank() || (entry.phase.is_final() && phase != entry.phase) {
        return Err(JournalError::Backwards {
            request_id,
            from: entry.phase.name(),
            to: phase.name(),
        });
    }
    if entry.phase == phase {
        return Ok(());
    }
    entry.phase = phase;
    let value = serde_json::to_vec(&entry).map_err(|e| io("encode")(&e))?;
    t.insert(key.as_str(), value.as_slice())
        .map_err(|e| io("write")(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::backend::Usage;
    use compute_bridge_contract::protocol::{PROTOCOL_VERSION, ProviderId, WorkloadEnding};

    fn entry(id: RequestId) -> JournalEntry {
        JournalEntry {
            request_id: id,
            backend: "fake".into(),
            instance: Instance {
                instance_id: "i-1".into(),
                region: "r".into(),
                public_host: "127.0.0.1".into(),
                ssh_port: 22,
                user: "w".into(),
                host_key: String::new(),
                handle: "{\"started\":1}".into(),
            },
            component: None,
            cpu_millicores: 100,
            ram_mib: 64,
            valid_to: 100,
            started_at: 1,
            phase: Phase::Provisioned,
        }
    }

    fn report(id: RequestId) -> UsageReport {
        UsageReport {
            version: PROTOCOL_VERSION,
            request_id: id,
            provider_id: ProviderId([0; 16]),
            ending: WorkloadEnding::Expired,
            usage: Usage::default(),
            started_at: 1,
            ended_at: 100,
        }
    }

    use futures::executor::block_on;

    #[test]
    fn entries_survive_reopening_and_move_only_forward() {
        let dir = tempfile::tempdir().unwrap();
        let id = RequestId::random();
        {
            let j = Journal::open(dir.path()).unwrap();
            block_on(j.record(&entry(id))).unwrap();
            assert!(matches!(
                block_on(j.record(&entry(id))),
                Err(JournalError::Exists(_))
            ));
            block_on(j.advance(id, Phase::Running)).unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get(id).unwrap().unwrap().phase, Phase::Running);
        assert_eq!(j.unfinished().unwrap().len(), 1);
        assert!(matches!(
            block_on(j.advance(id, Phase::Provisioned)),
            Err(JournalError::Backwards { .. })
        ));
        block_on(j.advance(id, Phase::Finished { report: report(id) })).unwrap();
        block_on(j.advance(id, Phase::Reported { report: report(id) })).unwrap();
        // Final: neither back nor sideways.
        assert!(block_on(j.advance(id, Phase::Aborted)).is_err());
        assert!(j.unfinished().unwrap().is_empty());
        assert_eq!(j.counters().unwrap().lifetime_grants, 1);
        assert_eq!(j.prune(101).unwrap(), 1);
        assert!(j.get(id).unwrap().is_none());
    }

    #[test]
    fn writes_queued_together_each_get_their_own_outcome_and_all_persist() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<RequestId> = (0..300).map(|_| RequestId::random()).collect();
        {
            let j = Journal::open(dir.path()).unwrap();
            // Every write is queued before any is awaited, so most share a
            // commit; ten replays and an advance of an unknown id ride along.
            let entries: Vec<JournalEntry> =
                ids.iter().chain(&ids[..10]).map(|id| entry(*id)).collect();
            let recorded = block_on(futures::future::join_all(
                entries.iter().map(|e| j.record(e)),
            ));
            assert!(recorded[..300].iter().all(Result::is_ok));
            assert!(
                recorded[300..]
                    .iter()
                    .all(|r| matches!(r, Err(JournalError::Exists(_))))
            );
            let stranger = RequestId::random();
            let moved = block_on(futures::future::join_all(
                ids.iter()
                    .chain(std::iter::once(&stranger))
                    .map(|id| j.advance(*id, Phase::Running)),
            ));
            assert!(moved[..300].iter().all(Result::is_ok));
            assert!(matches!(moved[300], Err(JournalError::Missing(_))));
            assert_eq!(j.counters().unwrap().lifetime_grants, 300);
        }
        let j = Journal::open(dir.path()).unwrap();
        let entries = j.entries().unwrap();
        assert_eq!(entries.len(), 300);
        assert!(entries.iter().all(|e| e.phase == Phase::Running));
    }

    #[test]
    fn a_second_bridge_cannot_open_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let _j = Journal::open(dir.path()).unwrap();
        let e = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(e, JournalError::Open { .. }), "{e}");
    }

    #[test]
    fn the_journal_holds_no_requester_secret_or_image() {
        let dir = tempfile::tempdir().unwrap();
        let id = RequestId::random();
        let j = Journal::open(dir.path()).unwrap();
        block_on(j.record(&entry(id))).unwrap();
        let text = serde_json::to_string(&j.entries().unwrap()).unwrap();
        for word in ["reply", "private_key", "image", "peer"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
    }

    /// A backend's 24 MiB handle per grant filled a 400 MiB state volume in
    /// 11 grants. The journal refuses an entry with a string over its
    /// bound, naming the field and the limit, and writes nothing.
    #[test]
    fn an_entry_with_a_string_over_its_bound_is_refused_naming_the_field_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let size = || {
            std::fs::metadata(dir.path().join(JOURNAL_FILE))
                .unwrap()
                .len()
        };
        let before = size();
        for _ in 0..3 {
            let mut e = entry(RequestId::random());
            e.instance.handle = "x".repeat(24 << 20);
            let err = block_on(j.record(&e)).expect_err("a 24 MiB handle is refused");
            let msg = err.to_string();
            assert!(msg.contains("handle") && msg.contains("16384"), "{msg}");
        }
        let mut e = entry(RequestId::random());
        e.backend = "b".repeat(1000);
        let msg = block_on(j.record(&e)).unwrap_err().to_string();
        assert!(msg.contains("backend") && msg.contains("64"), "{msg}");
        assert!(j.entries().unwrap().is_empty());
        assert!(size() < before + (1 << 20), "{} bytes after", size());
        // A fair entry still goes in.
        block_on(j.record(&entry(RequestId::random()))).unwrap();
    }

    #[test]
    fn the_grant_counter_saturates() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        {
            let tx = j.db.begin_write().unwrap();
            tx.open_table(COUNTERS)
                .unwrap()
                .insert(LIFETIME_GRANTS, u64::MAX)
                .unwrap();
            tx.commit().unwrap();
        }
        block_on(j.record(&entry(RequestId::random()))).unwrap();
        assert_eq!(j.counters().unwrap().lifetime_grants, u64::MAX);
        assert_eq!(j.add_settled(u64::MAX).unwrap(), u64::MAX);
        assert_eq!(j.add_settled(1).unwrap(), u64::MAX);
    }

    /// The journal's JSON, byte for byte, in every phase: the on-disk
    /// format a move or rename must not change (entries written by an older
    /// bridge must still read).
    #[test]
    fn an_entry_in_every_phase_encodes_as_pinned() {
        let id = RequestId([0x5a; 16]);
        let mut r = report(id);
        // Pinned when reports were protocol version 1 (version 2 changed
        // only the card): entries journaled then must keep reading.
        r.version = 1;
        r.ending = WorkloadEnding::Exited(3);
        r.usage = Usage {
            cpu_core_seconds: 10,
            ram_mib_seconds: 640,
            net_bytes: 4096,
        };
        let mut out = String::new();
        for phase in [
            Phase::Provisioned,
            Phase::Running,
            Phase::Finished { report: r.clone() },
            Phase::Reported { report: r },
            Phase::Aborted,
        ] {
            let e = JournalEntry { phase, ..entry(id) };
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<JournalEntry>(&json).unwrap(), e);
            out.push_str(&format!("== {}\n{json}\n", e.phase.name()));
        }
        // Since live swaps: the component that provisioned it, as a field
        // the entries above (and every older journal) do without.
        let e = JournalEntry {
            component: Some(format!("sha256:{}", "ab".repeat(32))),
            ..entry(id)
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<JournalEntry>(&json).unwrap(), e);
        out.push_str(&format!("== provisioned by a measured component\n{json}\n"));
        let expected = include_str!("journal.pins");
        if out != expected {
            let seen = std::env::temp_dir().join("journal.pins.seen");
            std::fs::write(&seen, &out).unwrap();
            panic!(
                "the journal's JSON differs from journal.pins (seen: {}): \
                 entries already on disk must keep reading",
                seen.display()
            );
        }
    }

    #[test]
    fn an_entry_keeps_exactly_the_documented_fields() {
        let id = RequestId::random();
        let measured = JournalEntry {
            component: Some(format!("sha256:{}", "ab".repeat(32))),
            ..entry(id)
        };
        let v = serde_json::to_value(&measured).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "backend",
                "component",
                "cpu_millicores",
                "instance",
                "phase",
                "ram_mib",
                "request_id",
                "started_at",
                "valid_to"
            ],
            "a field added to JournalEntry must be named in the module doc"
        );
        // An entry written before the asked-for region and TDX requirement
        // were dropped still reads (they are ignored).
        let mut old = v;
        old["region"] = serde_json::json!("eu-1");
        old["tdx"] = serde_json::json!("required");
        let back: JournalEntry = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(back, measured);
        // An entry written before live swaps has no component, and reads.
        old.as_object_mut().unwrap().remove("component");
        let back: JournalEntry = serde_json::from_value(old).unwrap();
        assert_eq!(back, entry(id));
    }

    #[test]
    fn settlements_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.add_settled(1_500_000).unwrap();
        assert_eq!(j.add_settled(500_000).unwrap(), 2_000_000);
        assert_eq!(j.counters().unwrap().settled_micro_usd, 2_000_000);
    }
}
