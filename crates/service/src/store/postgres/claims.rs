//! Claims on due deliveries, shared safely by any number of instances.
//!
//! Claims live in the queue (`delivery_queue`, PostgreSQL migration 12),
//! which holds a row for each waiting delivery: its `lease_owner` is the id
//! of the instance holding it in memory. Claiming takes rows with
//! `FOR UPDATE SKIP LOCKED`, so instances claiming at the same moment skip
//! each other's rows instead of waiting or taking the same ones. Each instance records a heartbeat (on the database
//! clock, so instances' clocks need not agree); a claim whose owner has not
//! beaten within the TTL belongs to an instance that is gone, and is voided
//! so that the work becomes due again for whoever claims next.
//!
//! After the database was away for longer than the TTL every instance's
//! heartbeat is stale, though the instances are alive and still hold their
//! work. So an instance voids others' claims only once its own heartbeats
//! have been on time for a whole TTL (`beating_since`): by then every live
//! instance has beaten again too, and only the dead ones' claims are voided.
//!
//! During a rolling upgrade, instances of the release before the queue
//! claim by the log's own owner column: what they store, give back or die
//! holding has no queue row, and is adopted into the queue
//! ([`adopt_from_older`]) while they have been seen lately.

use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, EventId, WebhookId};

use super::pool::Conn;
use super::rows::{corrupt, get, unsigned};
use crate::store::{Claimed, DueDelivery, StoreError};

/// Instance rows not heard from for this long are deleted (housekeeping only:
/// a missing row means the same as a stale one).
const FORGET_INSTANCES_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Milliseconds since the epoch on the database clock.
macro_rules! db_now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::int8"
    };
}

// 'delivery_queue' is the claim owner of a log row whose claim lives in
// `delivery_queue` (PostgreSQL migration 12; written by ingest, replays and
// adoption). Every instance's heartbeat keeps that owner alive, so an
// instance of an older release, which claims and recovers by the log's
// owner column, neither claims such a row nor voids its owner.

/// The schema this release's instances record with their heartbeats; an
/// instance row without one is an older release's.
const SCHEMA: i32 = 12;

// A beat later than the TTL after the previous one starts a new run of
// beats. The queue's owner beats with every instance.
const HEARTBEAT: &str = concat!(
    "INSERT INTO instances (id, started_at, heartbeat_at, beating_since, schema) \
     SELECT o.id, ",
    db_now!(),
    ", ",
    db_now!(),
    ", ",
    db_now!(),
    ", $3::int4 FROM UNNEST(ARRAY[$1::text, 'delivery_queue']) AS o (id) \
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, schema = EXCLUDED.schema, \
     beating_since = CASE WHEN EXCLUDED.heartbeat_at - instances.heartbeat_at > $2 \
     THEN EXCLUDED.heartbeat_at ELSE instances.beating_since END"
);

/// Claims due work per webhook, never by walking all due rows in time order
/// (that walk read every due row of a webhook whose window share is full or
/// that is paused, on every pass). `waiting` is a loose index scan: one seek
/// per webhook with waiting unordered work, to its earliest row. Each
/// claimable webhook then offers at most `$2` rows in due order, and the
/// oldest of those are claimed; rows another instance holds locked are
/// skipped. The claimed ids go to the UPDATE, and then to the read of their
/// log rows and events, as arrays probed by primary key: joined to the CTE
/// instead, the planner (not knowing its size) hashed the whole deliveries
/// table on every claim. The log row's due time and status are the queue
/// row's (every change writes both).
///
/// FIFO deliveries are not in `waiting`'s index: `heads` is a loose index
/// scan of `delivery_queue_fifo`, one seek per order to its first unfinished
/// delivery, and `ready` takes those heads that nobody holds and that are
/// due (one probe of an empty index where no webhook is ordered). A head
/// claimed by another instance meanwhile fails the re-check of the row
/// lock, and one finished meanwhile has no queue row left to lock, so only
/// a head is ever claimed.
const CLAIM_DUE: &str = "WITH RECURSIVE waiting AS ( \
         (SELECT webhook_id, next_attempt_at FROM delivery_queue \
          WHERE lease_owner IS NULL AND ordering_key IS NULL \
          ORDER BY webhook_id, next_attempt_at LIMIT 1) \
         UNION ALL \
         SELECT n.webhook_id, n.next_attempt_at FROM waiting w CROSS JOIN LATERAL ( \
             SELECT webhook_id, next_attempt_at FROM delivery_queue \
             WHERE lease_owner IS NULL AND ordering_key IS NULL \
             AND webhook_id > w.webhook_id \
             ORDER BY webhook_id, next_attempt_at LIMIT 1) n), \
     heads AS ( \
         (SELECT webhook_id, ordering_key, id FROM delivery_queue \
          WHERE ordering_key IS NOT NULL \
          ORDER BY webhook_id, ordering_key, fifo_seq, id LIMIT 1) \
         UNION ALL \
         SELECT n.webhook_id, n.ordering_key, n.id FROM heads h CROSS JOIN LATERAL ( \
             SELECT webhook_id, ordering_key, id FROM delivery_queue \
             WHERE ordering_key IS NOT NULL \
             AND (webhook_id, ordering_key) > (h.webhook_id, h.ordering_key) \
             ORDER BY webhook_id, ordering_key, fifo_seq, id LIMIT 1) n), \
     ready AS ( \
         SELECT q.id FROM heads h JOIN webhooks w ON w.id = h.webhook_id \
         JOIN delivery_queue q ON q.id = h.id \
         WHERE w.is_active AND h.webhook_id <> ALL($3::text[]) AND q.lease_owner IS NULL \
         AND q.next_attempt_at <= $1 \
         LIMIT $2 FOR UPDATE OF q SKIP LOCKED), \
     due AS ( \
         SELECT q.id FROM waiting h JOIN webhooks w ON w.id = h.webhook_id \
         CROSS JOIN LATERAL ( \
             SELECT id, next_attempt_at FROM delivery_queue \
             WHERE webhook_id = h.webhook_id AND lease_owner IS NULL \
             AND ordering_key IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) q \
         WHERE h.next_attempt_at <= $1 AND w.is_active AND h.webhook_id <> ALL($3::text[]) \
         ORDER BY q.next_attempt_at LIMIT GREATEST($2 - (SELECT count(*) FROM ready), 0)), \
     claimed AS ( \
         UPDATE delivery_queue q SET lease_owner = $4 \
         WHERE q.id = ANY(ARRAY(SELECT id FROM ready UNION ALL SELECT id FROM due)) \
         RETURNING q.id) \
     SELECT d.id, d.event_id, d.event_type, d.webhook_id, d.attempts, e.payload, d.next_attempt_at, \
     d.created_at, d.status FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.id = ANY(ARRAY(SELECT id FROM claimed)) AND d.status IN ('pending', 'retrying')";

// The owner check as an expression no index serves: as `lease_owner = $2`
// the planner, which never has statistics for this process's new owner id,
// read every delivery the instance had claimed through `delivery_queue_claimed`
// (a whole memory window, 50,000 rows, per chunk of 128 released) instead
// of probing the primary key for the ids.
const RELEASE: &str = "UPDATE delivery_queue SET lease_owner = NULL WHERE id = ANY($1::text[]) \
     AND COALESCE(lease_owner = $2, false)";

// The owners holding claims, found by a loose index scan of
// `delivery_queue_claimed` (one probe per distinct owner), that are neither the
// caller nor alive. Run every 2 s by every instance: the UPDATE below used
// to find them itself by visiting every claimed row, a whole memory window
// (50,000 rows) per pass, and past PostgreSQL's JIT threshold it compiled
// the plan every time too.
const DEAD_OWNERS: &str = concat!(
    "WITH RECURSIVE owners AS (\
     (SELECT lease_owner AS id FROM delivery_queue WHERE lease_owner IS NOT NULL ORDER BY lease_owner LIMIT 1) \
     UNION ALL \
     SELECT (SELECT d.lease_owner FROM delivery_queue d WHERE d.lease_owner > o.id ORDER BY d.lease_owner LIMIT 1) \
     FROM owners o WHERE o.id IS NOT NULL) \
     SELECT o.id FROM owners o WHERE o.id IS NOT NULL AND o.id <> $1 \
     AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = o.id AND i.heartbeat_at > ",
    db_now!(),
    " - $2)"
);

// Voids the claims of those owners, checking again that each is still dead,
// and only once the caller has itself been beating for a whole TTL (after
// a database outage every heartbeat is old, the caller's too).
const RECOVER: &str = concat!(
    "UPDATE delivery_queue d SET lease_owner = NULL \
     WHERE d.lease_owner = ANY($3::text[]) \
     AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = d.lease_owner AND i.heartbeat_at > ",
    db_now!(),
    " - $2) \
     AND EXISTS (SELECT 1 FROM instances me WHERE me.id = $1 AND me.beating_since <= ",
    db_now!(),
    " - $2)"
);

const FORGET_INSTANCES: &str = concat!(
    "DELETE FROM instances WHERE heartbeat_at < ",
    db_now!(),
    " - $1"
);

const LIVE_INSTANCES: &str = concat!(
    "SELECT COUNT(*) FROM instances WHERE id <> 'delivery_queue' AND heartbeat_at > ",
    db_now!(),
    " - $1"
);

// Whether an instance of an older release (no schema) has beaten within
// $1: until none has for that long, what such instances store or give back
// is adopted into the queue.
const OLDER_SEEN: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM instances WHERE schema IS NULL AND heartbeat_at > ",
    db_now!(),
    " - $1)"
);

// Waiting log rows without a queue row, that nobody holds or whose holder
// is dead: an older instance stored them, gave them back or voided their
// claim. Taking the log's owner column first means an older instance
// claiming the same row at the same moment takes it or leaves it whole. A
// scan of the log (no index of it is on status): it runs only while older
// instances have been seen lately.
const ADOPT: &str = concat!(
    "WITH adopted AS (UPDATE deliveries d SET lease_owner = 'delivery_queue' \
     WHERE d.status IN ('pending', 'retrying') \
     AND (d.lease_owner IS NULL OR (d.lease_owner <> 'delivery_queue' \
     AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = d.lease_owner AND i.heartbeat_at > ",
    db_now!(),
    " - $1))) \
     AND NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.id = d.id) \
     RETURNING d.id, d.webhook_id, d.status, d.next_attempt_at, d.created_at, d.ordering_key, d.fifo_seq) \
     INSERT INTO delivery_queue (id, webhook_id, status, next_attempt_at, ordering_key, fifo_seq, created_at) \
     SELECT id, webhook_id, status, COALESCE(next_attempt_at, created_at), ordering_key, fifo_seq, created_at \
     FROM adopted ON CONFLICT (id) DO NOTHING"
);

// Queue rows whose delivery an older instance finished or deleted.
const DROP_STALE: &str = "DELETE FROM delivery_queue q WHERE NOT EXISTS (\
     SELECT 1 FROM deliveries d WHERE d.id = q.id AND d.status IN ('pending', 'retrying'))";

/// How long after an older release's last heartbeat its work is still
/// looked for, in claim TTLs: long enough for its claims to lapse and for
/// several passes after that.
const OLDER_WINDOW_TTLS: i64 = 10;

/// While an instance of an older release has beaten lately (within ten
/// claim TTLs): adopts into the queue the waiting deliveries such
/// instances stored or gave back, or held and died with, and drops queue
/// rows of deliveries they finished or deleted. Returns the deliveries
/// adopted.
pub(super) async fn adopt_from_older(c: &mut Conn, ttl_ms: i64) -> Result<u64, StoreError> {
    let window_ms = ttl_ms.saturating_mul(OLDER_WINDOW_TTLS);
    let seen: bool = get(
        &c.query_one(OLDER_SEEN, &[&window_ms]).await?,
        0,
        "older instances",
    )?;
    if !seen {
        return Ok(0);
    }
    let adopted = c.execute(ADOPT, &[&ttl_ms]).await?;
    c.execute(DROP_STALE, &[]).await?;
    Ok(adopted)
}

/// Instances with a heartbeat within `ttl_ms`.
pub(super) async fn live_instances(c: &mut Conn, ttl_ms: i64) -> Result<u32, StoreError> {
    let n: i64 = get(
        &c.query_one(LIVE_INSTANCES, &[&ttl_ms]).await?,
        0,
        "instances",
    )?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Records that `owner` is alive now.
pub(super) async fn heartbeat(c: &mut Conn, owner: &str, ttl_ms: i64) -> Result<(), StoreError> {
    c.execute(HEARTBEAT, &[&owner, &ttl_ms, &SCHEMA]).await?;
    Ok(())
}

/// Claims up to `limit` due deliveries of active webhooks outside `exclude`, oldest due first.
pub(super) async fn claim_due(
    c: &mut Conn,
    owner: &str,
    now: i64,
    limit: u32,
    exclude: &[WebhookId],
) -> Result<Vec<DueDelivery>, StoreError> {
    let exclude: Vec<&str> = exclude.iter().map(WebhookId::as_str).collect();
    let rows = c
        .query(CLAIM_DUE, &[&now, &i64::from(limit), &exclude, &owner])
        .await?;
    let mut due = Vec::with_capacity(rows.len());
    for row in &rows {
        let next: i64 = get(row, 6, "next attempt")?;
        let id: String = get(row, 0, "delivery id")?;
        let delivery = DueDelivery {
            id: DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e))?,
            event_id: EventId::parse(&get::<String>(row, 1, "event id")?)
                .map_err(|e| corrupt("event id", e))?,
            event_type: get(row, 2, "event type")?,
            webhook_id: WebhookId::parse(&get::<String>(row, 3, "webhook id")?)
                .map_err(|e| corrupt("webhook id", e))?,
            attempts: unsigned(get(row, 4, "attempts")?),
            payload: bytes::Bytes::from(get::<Vec<u8>>(row, 5, "payload")?),
            claimed: Claimed {
                created_at: get(row, 7, "created at")?,
                status: DeliveryStatus::parse(&get::<String>(row, 8, "status")?)
                    .map_err(|e| corrupt("status", e))?,
            },
        };
        due.push((next, id, delivery));
    }
    // UPDATE ... RETURNING does not keep the order of the claiming query.
    due.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(due.into_iter().map(|(_, _, d)| d).collect())
}

/// Gives `owner`'s claims on `deliveries` back.
pub(super) async fn release(
    c: &mut Conn,
    owner: &str,
    deliveries: &[DeliveryId],
) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deliveries.iter().map(DeliveryId::as_str).collect();
    c.execute(RELEASE, &[&ids, &owner]).await?;
    Ok(())
}

/// Voids the claims of instances without a heartbeat within `ttl_ms`;
/// `live_owner` is always live, and voids nothing until its own heartbeats
/// have been on time for `ttl_ms`.
pub(super) async fn recover(
    c: &mut Conn,
    live_owner: &str,
    ttl_ms: i64,
) -> Result<u64, StoreError> {
    let dead: Vec<String> = c
        .query(DEAD_OWNERS, &[&live_owner, &ttl_ms])
        .await?
        .iter()
        .map(|row| get(row, 0, "claim owner"))
        .collect::<Result<_, _>>()?;
    let voided = if dead.is_empty() {
        0
    } else {
        c.execute(RECOVER, &[&live_owner, &ttl_ms, &dead]).await?
    };
    c.execute(FORGET_INSTANCES, &[&FORGET_INSTANCES_AFTER_MS])
        .await?;
    Ok(voided)
}
