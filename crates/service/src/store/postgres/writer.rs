//! Group commit: a writer task owns one connection and commits, in one
//! transaction, every job queued while its previous commit was running (the
//! store runs two: one for ingest, one for attempt records). Callers are answered only after the commit
//! (`synchronous_commit` stays on), so one WAL flush is shared by every event
//! of the batch instead of being paid by each.
//!
//! The ingest jobs of a batch are merged into a handful of array statements
//! (`UNNEST`), so a batch of a thousand events costs a few round trips, not
//! thousands. If any statement of the batch fails for a reason other than a
//! lost connection, the batch is rolled back and its jobs are run again one
//! by one, each in its own transaction, so one bad job does not fail others.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::pool::{self, Conn, Connector};
use super::{ingest, record};
use crate::store::{
    AttemptReport, DisabledWebhook, FailurePolicy, IngestItem, IngestOutcome, StoreError,
};

/// Jobs committed together at most; bounds the latency a single commit adds.
const MAX_JOBS_PER_COMMIT: usize = 2048;
/// Jobs waiting for the writer at most; senders wait beyond that (back-pressure).
pub(super) const QUEUE_CAPACITY: usize = 16 * 1024;

/// What a job asks the writer to do.
pub(super) enum Work {
    /// Store events with their deliveries.
    Ingest {
        owner: String,
        items: std::sync::Arc<Vec<IngestItem>>,
    },
    /// Record attempts and the deliveries' new states.
    Record {
        /// The instance whose claims the reports are for.
        owner: String,
        reports: Arc<Vec<AttemptReport>>,
        policy: FailurePolicy,
        now: i64,
    },
    /// Prove the writer and its connection work.
    Ping,
}

/// What the writer did.
pub(super) enum Done {
    Ingest(Vec<IngestOutcome>),
    Record(Vec<DisabledWebhook>),
    Ping,
}

/// A job and where to send its answer.
pub(super) struct Job {
    pub(super) work: Work,
    pub(super) reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// Runs until every sender is dropped (the store is gone).
pub(super) async fn run(connector: Arc<Connector>, mut jobs: mpsc::Receiver<Job>) {
    let mut conn: Option<Conn> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    while jobs.recv_many(&mut batch, MAX_JOBS_PER_COMMIT).await > 0 {
        let jobs_now = std::mem::take(&mut batch);
        if conn.as_ref().is_none_or(Conn::is_broken) {
            conn = None;
            match connect(&connector).await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    fail_all(jobs_now, &e);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let works: Vec<&Work> = jobs_now.iter().map(|j| &j.work).collect();
        match commit_together(c, &works).await {
            Ok(results) => {
                for (job, result) in jobs_now.into_iter().zip(results) {
                    // The caller may have gone away (request cancelled); nothing to do then.
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(e) if c.is_broken() => {
                // The outcome of a commit cut off mid-way is unknown, and the
                // callers are told so: a producer retrying with its event id
                // gets the first copy if it was stored after all, and the
                // engine gives back the claims it may have taken.
                conn = None;
                let reason = format!("the connection broke during a commit: {e}");
                for job in jobs_now {
                    let _ = job
                        .reply
                        .send(Err(StoreError::OutcomeUnknown(reason.clone())));
                }
            }
            Err(_) => {
                for job in jobs_now {
                    let result = commit_alone(c, &job.work).await;
                    let _ = job.reply.send(result);
                }
                if c.is_broken() {
                    conn = None;
                }
            }
        }
    }
}

/// A writer's connection, set to probe by index only.
///
/// Every statement of the writer touches rows by key, joined to an `UNNEST`
/// of its parameters; a nested loop of primary-key probes is right at every
/// batch size. Left to itself the planner chose otherwise and scanned the
/// whole table on every commit: a cached generic plan costed against the few
/// deliveries of the first second hash-joined the attempt UPDATE (the
/// writer's backend at 75 % CPU and throughput falling as the table grew),
/// and custom plans for batches of thousands hash-joined the attempt INSERT's
/// existence check (the pages of an index probe look expensive to it; here
/// they are in memory). Sequential scans are off for the same reason: with
/// a writer connection of its own, the attempt recorder's statements were
/// planned (and their generic plans cached) while the table was nearly
/// empty, and two throughput runs in seven stalled for good as each commit
/// scanned the grown table (transactions of 24 s, 73,000 deliveries late).
/// Hash and merge joins are off on the writers' connections only; the
/// rest (no bitmap or sequential scans, no JIT) is every connection's
/// (`pool::PLAN_BY_INDEX`).
async fn connect(connector: &Connector) -> Result<Conn, StoreError> {
    let mut conn = connector.connect().await?;
    conn.batch(pool::PLAN_BY_INDEX).await?;
    conn.batch("SET enable_hashjoin = off; SET enable_mergejoin = off")
        .await?;
    Ok(conn)
}

fn fail_all(jobs: Vec<Job>, error: &StoreError) {
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// Runs every job in one transaction; the results are in job order.
///
/// A small batch of ingest jobs alone is one statement (see
/// `ingest::one_statement`), its own transaction: no `BEGIN` and `COMMIT`
/// round trips around it.
async fn commit_together(c: &mut Conn, works: &[&Work]) -> Result<Vec<Done>, StoreError> {
    if works.iter().all(|w| !matches!(w, Work::Record { .. }))
        && ingest::one_statement(&ingest_jobs(works))
    {
        return run_works(c, works).await;
    }
    c.transaction(async |c| run_works(c, works).await).await
}

/// The `(owner, items)` of the ingest jobs among `works`.
fn ingest_jobs<'a>(works: &[&'a Work]) -> Vec<(&'a str, &'a [IngestItem])> {
    works
        .iter()
        .filter_map(|w| match w {
            Work::Ingest { owner, items } => Some((owner.as_str(), items.as_slice())),
            _ => None,
        })
        .collect()
}

/// Runs `works` on `c`: the ingest jobs together, then the records in order.
async fn run_works(c: &mut Conn, works: &[&Work]) -> Result<Vec<Done>, StoreError> {
    let ingests = ingest_jobs(works);
    let mut ingested = if ingests.is_empty() {
        Vec::new()
    } else {
        ingest::write(c, &ingests).await?
    }
    .into_iter();
    let mut results = Vec::with_capacity(works.len());
    for work in works {
        results.push(match work {
            Work::Ingest { .. } => Done::Ingest(ingested.next().unwrap_or_default()),
            Work::Record {
                owner,
                reports,
                policy,
                now,
            } => Done::Record(record::write(c, owner, reports, *policy, *now).await?),
            Work::Ping => Done::Ping,
        });
    }
    Ok(results)
}

/// Runs one job on its own (see [`commit_together`]).
async fn commit_alone(c: &mut Conn, work: &Work) -> Result<Done, StoreError> {
    let mut done = commit_together(c, &[work]).await?;
    Ok(done.pop().unwrap_or(Done::Ping))
}
