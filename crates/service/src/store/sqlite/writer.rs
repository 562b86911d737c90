//! The writer thread: the only write connection, and group commit.
//!
//! It takes every job queued while the previous commit was running, runs
//! them in one transaction (see [`WriteJob`] for how a failing job is kept
//! from undoing the others), commits once, and only then answers each
//! caller. It also rewinds the WAL between two transactions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpointer::WAL_RESTART_EVERY;
use super::connection::BUSY_TIMEOUT;
use super::ingest;
use crate::store::{IngestItem, IngestOutcome, StoreError};

/// Jobs committed together at most; bounds the latency a single commit adds.
pub(super) const MAX_JOBS_PER_COMMIT: usize = 2048;
/// Under load, how long a transaction waits for more jobs before committing.
///
/// Each commit has a fixed cost (an fsync, the right edges of six B-trees
/// written again to the WAL, wake-ups), so fewer, larger commits cost less
/// CPU per event. A transaction keeps taking jobs for this long while it
/// has fewer than [`GATHER_UNTIL`]; longer waits gained nothing more (see
/// docs/performance-log.md).
pub(super) const GATHER_FOR: Duration = Duration::from_micros(300);
/// Jobs after which a transaction stops waiting for more.
pub(super) const GATHER_UNTIL: usize = 32;
/// The previous transaction must have had at least this many jobs for the
/// next one to wait: a lone caller (light load) is never held back.
pub(super) const GATHER_AFTER: usize = 4;

/// Answers one caller, given the transaction's outcome.
pub(super) type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// A unit of work for the writer thread.
///
/// Jobs share one transaction, so a job must not leave partial writes
/// behind when it fails for a reason of its own (a cap reached, a row
/// missing): such checks come before its first write. A failure of SQLite
/// itself (I/O error, full disk) aborts the whole transaction instead, and
/// every job in it is answered with that error; nothing of it was committed.
/// This is what lets jobs run without a savepoint each, which on this hot
/// path cost more than the work (every page touched was copied to a
/// statement journal).
pub(super) trait WriteJob: Send {
    /// Runs inside the open transaction. Returns the closure that answers
    /// the caller after the commit, and the failure that aborts the batch, if any.
    fn run<'c>(
        self: Box<Self>,
        conn: &'c Connection,
        tx: &mut TxState<'c>,
    ) -> (Completion, Option<StoreError>);
    /// Answers the caller when the transaction could not even start.
    fn fail(self: Box<Self>, error: StoreError);
}

/// What the writer keeps across the jobs of one transaction.
#[derive(Default)]
pub(super) struct TxState<'c> {
    /// The ingest statements, kept while ingest jobs follow each other and
    /// dropped by any other job (its lookups would no longer be valid).
    pub(super) ingester: Option<ingest::Ingester<'c>>,
}

/// Whether a job's error aborts the whole batch: a failure of SQLite itself
/// (the statement may have written part of its rows). A cap reached is the
/// job's own answer, checked before its first write.
fn aborts_batch(error: &StoreError) -> bool {
    !matches!(error, StoreError::WebhookLimit { .. })
}

/// What a job that did nothing wrong is told when its batch was not
/// committed: a full disk stopped every job of it alike; anything else
/// (another job's damaged row, an I/O error) is, for this caller, an
/// unavailable store that a retry may find working.
fn not_committed(cause: &StoreError) -> StoreError {
    match cause {
        StoreError::DiskFull(detail) => {
            StoreError::DiskFull(format!("transaction aborted: {detail}"))
        }
        other => StoreError::Unavailable(format!("transaction aborted: {other}")),
    }
}

/// Answers `reply` with `result` once the transaction's outcome is known;
/// returns the failure that aborts the batch, if `result` is one.
pub(super) fn answer_after_commit<T: Send + 'static>(
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
) -> (Completion, Option<StoreError>) {
    let abort = match &result {
        Err(e) if aborts_batch(e) => Some(e.clone()),
        _ => None,
    };
    let completion: Completion = Box::new(move |committed| {
        let answer = match (committed, result) {
            (Ok(()), result) => result,
            // Its own error says more than "the batch was aborted".
            (Err(_), Err(e)) => Err(e),
            (Err(cause), Ok(_)) => Err(not_committed(cause)),
        };
        // The caller may have gone away (request cancelled); nothing to do then.
        let _ = reply.send(answer);
    });
    (completion, abort)
}

/// Stores one ingest call's events, with the statements the transaction's
/// previous ingest job left prepared.
pub(super) struct IngestJob {
    pub(super) owner: String,
    pub(super) items: Arc<Vec<IngestItem>>,
    pub(super) reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

impl WriteJob for IngestJob {
    fn run<'c>(
        self: Box<Self>,
        conn: &'c Connection,
        tx: &mut TxState<'c>,
    ) -> (Completion, Option<StoreError>) {
        let IngestJob {
            owner,
            items,
            reply,
        } = *self;
        let ingester = match tx.ingester.take() {
            Some(ingester) => Ok(ingester),
            None => ingest::Ingester::new(conn),
        };
        let result = ingester.and_then(|mut ingester| {
            let result = ingester.ingest(conn, &owner, &items);
            tx.ingester = Some(ingester);
            result
        });
        answer_after_commit(result, reply)
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Any other write, run by a closure.
pub(super) struct Job<F, T> {
    pub(super) work: F,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> WriteJob for Job<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run<'c>(
        self: Box<Self>,
        conn: &'c Connection,
        tx: &mut TxState<'c>,
    ) -> (Completion, Option<StoreError>) {
        let Job { work, reply } = *self;
        // Any other job may change what the ingester has looked up; what it
        // counted goes into the aggregate before this job can change it.
        if let Some(ingester) = tx.ingester.take()
            && let Err(e) = ingester.finish(conn)
        {
            return answer_after_commit(Err(e), reply);
        }
        answer_after_commit(work(conn), reply)
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// How long a full disk stays reported while only other writes than new
/// events succeed: producers retry within it, and each refusal renews it.
const DISK_FULL_HOLD: Duration = Duration::from_secs(30);

/// Runs the writer until every sender of `jobs` is gone.
///
/// `rewind_due` is the checkpointer's signal to rewind the WAL; `disk_full`
/// says, for the health check, whether the disk was found full: set by that
/// failure, cleared by the next commit that stores events, or by any commit
/// that writes rows once [`DISK_FULL_HOLD`] has passed without another
/// failure. Attempt results keep committing into pages the store already
/// has while new events find no room, so their commits alone prove little.
pub(super) fn writer_loop(
    conn: Connection,
    jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    rewind_due: Arc<AtomicBool>,
    disk_full: Arc<AtomicBool>,
) {
    let mut last_restart = Instant::now();
    let mut last_jobs = 0;
    let mut last_disk_full: Option<Instant> = None;
    while let Ok(first) = jobs.recv() {
        let began = Instant::now();
        let gather = last_jobs >= GATHER_AFTER;
        let changes_before = conn.total_changes();
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            first.fail(e.into());
            continue;
        }
        let mut completions = Vec::with_capacity(64);
        let mut aborted = None;
        let mut next = Some(first);
        let mut tx = TxState::default();
        let mut stores_events = false;
        // Everything that queued up while the last commit was being fsynced joins this one.
        while let Some(job) = next.take() {
            let (completion, failure) = job.run(&conn, &mut tx);
            stores_events |= tx.ingester.is_some();
            completions.push(completion);
            if failure.is_some() {
                aborted = failure;
                break;
            }
            if completions.len() < MAX_JOBS_PER_COMMIT {
                next = jobs.try_recv().ok();
                if next.is_none() && gather && completions.len() < GATHER_UNTIL {
                    let left = GATHER_FOR.saturating_sub(began.elapsed());
                    if !left.is_zero() {
                        next = jobs.recv_timeout(left).ok();
                    }
                }
            }
        }
        last_jobs = completions.len();
        if aborted.is_none()
            && let Some(ingester) = tx.ingester.take()
        {
            aborted = ingester.finish(&conn).err();
        }
        drop(tx);
        let outcome = match aborted {
            Some(cause) => Err(cause),
            None => run_cached(&conn, "COMMIT").map_err(StoreError::from),
        };
        if outcome.is_err() {
            // SQLite may have rolled back by itself already (a full disk
            // does); then this fails, harmlessly.
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Before the answers, so that a caller told "stored" finds the
        // health check agreeing. A commit that writes nothing (a health
        // check's) proves nothing about space.
        match &outcome {
            Err(StoreError::DiskFull(_)) => {
                last_disk_full = Some(Instant::now());
                disk_full.store(true, Ordering::Release);
            }
            Ok(()) if conn.total_changes() > changes_before => {
                let held = last_disk_full.is_some_and(|at| at.elapsed() < DISK_FULL_HOLD);
                if stores_events || !held {
                    disk_full.store(false, Ordering::Release);
                }
            }
            _ => {}
        }
        for completion in completions {
            completion(outcome.as_ref().map(|_| ()));
        }
        // Right after a background checkpoint, when few frames are left to
        // copy; the fallback only if that thread has stopped signalling.
        if outcome.is_ok()
            && (rewind_due.swap(false, Ordering::AcqRel)
                || last_restart.elapsed() >= 4 * WAL_RESTART_EVERY)
        {
            restart_wal(&conn);
            last_restart = Instant::now();
        }
    }
}

/// Runs a statement without parameters from the statement cache.
///
/// `execute_batch` parses and compiles its SQL on every call: for the
/// writer's `BEGIN IMMEDIATE` and `COMMIT` (some 700 times a second each
/// under load) that was 28 % of their instructions, 0.7 % of a delivery's.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Makes the next transaction write the WAL from its start again.
///
/// The background checkpointer copies frames into the database, but under a
/// steady stream of commits it never has copied them all at the instant a
/// transaction begins, which is the only moment SQLite rewinds the log: the
/// WAL then grew without bound (330 MB after 10 s of the throughput
/// benchmark, gigabytes through a backlog), and the WAL index in shared
/// memory with it. A RESTART checkpoint between two transactions copies the
/// few frames the background one has not yet, so the next transaction
/// rewinds; `journal_size_limit` then trims the file. It never waits: a
/// reader still on an old snapshot makes it give up until the next time.
pub(super) fn restart_wal(conn: &Connection) {
    let _ = conn.busy_timeout(Duration::ZERO);
    let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
}
