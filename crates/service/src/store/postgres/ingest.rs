//! Storing events with their deliveries: every ingest job of a group commit
//! together, in one statement (small group commits) or two.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;
use webhook_domain::ids::DeliveryId;

use super::pool::Conn;
use super::rows::corrupt;
use crate::store::{IngestItem, IngestOutcome, StoreError};

/// Adds the events of `new_events` (the new ones: a duplicate is not
/// counted again) to `event_hourly` (PostgreSQL migration 11), under this
/// connection's own key, so that concurrent writers never wait on one
/// another's counter rows.
macro_rules! count_events {
    () => {
        "INSERT INTO event_hourly (hour, writer, n) \
         SELECT created_at / 3600000, pg_backend_pid(), COUNT(*) FROM new_events GROUP BY 1 \
         ON CONFLICT (hour, writer) DO UPDATE SET n = event_hourly.n + EXCLUDED.n"
    };
}

/// Inserts the deliveries of CTE `wanted` (id, event id, webhook id, event
/// type, user id, creation time, claim owner, and, in the ordered form, the
/// order and place): each a log row in `deliveries` and a queue row in
/// `delivery_queue` (PostgreSQL migration 12). Both read the one
/// materialized `wanted`, so they take the same rows. The log row's owner
/// is the queue's, `'delivery_queue'` (see `claims.rs`), so that an
/// instance of an older release never claims it.
macro_rules! insert_deliveries {
    () => {
        "new_deliveries AS (\
         INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, \
         attempts, next_attempt_at, lease_owner, created_at, updated_at) \
         SELECT id, event_id, webhook_id, event_type, user_id, 'pending', 0, created_at, 'delivery_queue', \
         created_at, created_at \
         FROM wanted RETURNING 1), \
         queued AS (\
         INSERT INTO delivery_queue (id, webhook_id, status, next_attempt_at, lease_owner, ordering_key, \
         fifo_seq, created_at) \
         SELECT id, webhook_id, 'pending', created_at, lease_owner, ordering_key, fifo_seq, created_at \
         FROM wanted RETURNING 1)"
    };
}

/// The events and the deliveries of those that were new, in one statement.
///
/// One statement is its own transaction, so a group commit of ingest jobs is
/// one round trip to the server (and one WAL flush) instead of four (`BEGIN`,
/// the events, the deliveries, `COMMIT`): at 64 producers the commit's round
/// trips, each waiting for the server's backend to be scheduled on the busy
/// machine, were most of an event's latency. The deliveries are inserted for
/// the events the first part returned (`ON CONFLICT DO NOTHING` returns only
/// new ids, so a duplicate gets none), so every delivery's event is written
/// with it (migration 3 dropped the foreign key that checked it). A delivery to a
/// webhook deleted since the routing table was read is dropped rather than
/// failing the whole commit: there is nowhere to deliver it. The webhooks
/// written to are key-share locked (the lock their foreign key took, once per
/// webhook instead of once per row since migration 5), so a webhook's
/// deletion waits for this commit and then deletes what it wrote.
const INSERT_EVENTS_AND_DELIVERIES: &str = concat!(
    "WITH live_webhooks AS (\
     SELECT id FROM webhooks WHERE id = ANY($8::text[]) ORDER BY id FOR KEY SHARE), \
     new_events AS (\
     INSERT INTO events (id, event_type, user_id, payload, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[]) \
     ON CONFLICT (id) DO NOTHING RETURNING id, created_at), \
     counted AS (",
    count_events!(),
    "), \
     wanted AS (\
     SELECT u.*, NULL::text AS ordering_key, NULL::int8 AS fifo_seq \
     FROM UNNEST($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[]) \
     AS u (id, event_id, webhook_id, event_type, user_id, created_at, lease_owner) \
     JOIN new_events e ON e.id = u.event_id \
     WHERE u.webhook_id IN (SELECT id FROM live_webhooks)), ",
    insert_deliveries!(),
    " SELECT id, false FROM new_events UNION ALL SELECT id, true FROM live_webhooks"
);

/// Most (event, delivery) pairs for which [`INSERT_EVENTS_AND_DELIVERIES`]
/// is used. Its join of the deliveries to the new events' ids is a nested
/// loop (the writer's connections have hash and merge joins off), cheap for
/// the small group commits of single events that many producers make and
/// quadratic for large batches. Larger group commits keep the two
/// statements in a transaction; their round trips are shared by many events
/// anyway.
const ONE_STATEMENT_PAIRS: usize = 4096;

/// Whether [`write`] stores `jobs` in one statement, which needs no
/// transaction around it; otherwise it runs two and the caller must open one.
pub(super) fn one_statement(jobs: &[(&str, &[IngestItem])]) -> bool {
    if ordered(jobs) {
        return false;
    }
    let events: usize = jobs.iter().map(|(_, items)| items.len()).sum();
    let deliveries: usize = jobs
        .iter()
        .flat_map(|(_, items)| items.iter())
        .map(|item| item.deliveries.len())
        .sum();
    events.saturating_mul(deliveries) <= ONE_STATEMENT_PAIRS
}

/// Whether a delivery of `jobs` is ordered (FIFO): its place is taken under
/// its webhook's lock in a statement before the insert, so the batch needs
/// a transaction.
fn ordered(jobs: &[(&str, &[IngestItem])]) -> bool {
    jobs.iter()
        .flat_map(|(_, items)| items.iter())
        .flat_map(|item| item.deliveries.iter())
        .any(|d| d.ordering_key.is_some())
}

const INSERT_EVENTS: &str = concat!(
    "WITH new_events AS (INSERT INTO events (id, event_type, user_id, payload, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[]) \
     ON CONFLICT (id) DO NOTHING RETURNING id, created_at), \
     counted AS (",
    count_events!(),
    ") SELECT id FROM new_events"
);

// As in the one-statement form, deliveries to a webhook deleted meanwhile
// are dropped; the webhooks still there are returned, to tell which.
const INSERT_DELIVERIES: &str = concat!(
    "WITH live_webhooks AS (\
     SELECT id FROM webhooks WHERE id = ANY($3::text[]) ORDER BY id FOR KEY SHARE), \
     wanted AS (\
     SELECT u.*, NULL::text AS ordering_key, NULL::int8 AS fifo_seq \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[]) \
     AS u (id, event_id, webhook_id, event_type, user_id, created_at, lease_owner) \
     WHERE u.webhook_id IN (SELECT id FROM live_webhooks)), ",
    insert_deliveries!(),
    " SELECT id FROM live_webhooks"
);

// As `INSERT_DELIVERIES`, with the order and place of FIFO deliveries.
const INSERT_ORDERED_DELIVERIES: &str = concat!(
    "WITH live_webhooks AS (\
     SELECT id FROM webhooks WHERE id = ANY($3::text[]) ORDER BY id FOR KEY SHARE), \
     wanted AS (\
     SELECT u.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], \
     $8::text[], $9::int8[]) \
     AS u (id, event_id, webhook_id, event_type, user_id, created_at, lease_owner, ordering_key, fifo_seq) \
     WHERE u.webhook_id IN (SELECT id FROM live_webhooks)), ",
    insert_deliveries!(),
    " SELECT id FROM live_webhooks"
);

const EXISTING_DELIVERIES: &str =
    "SELECT event_id, id FROM deliveries WHERE event_id = ANY($1::text[]) ORDER BY event_id, id";

/// Stores the items of every `(owner, items)` job; the outcomes are per job, in item order.
///
/// One writing statement when [`one_statement`] says so (atomic on its own),
/// otherwise two, which the caller must run inside a transaction.
///
/// An event id seen before (stored earlier, or earlier in this batch) is a
/// duplicate: nothing is written for it and its outcome lists the first
/// copy's deliveries.
pub(super) async fn write(
    c: &mut Conn,
    jobs: &[(&str, &[IngestItem])],
) -> Result<Vec<Vec<IngestOutcome>>, StoreError> {
    // The first occurrence of each event id in the batch is the one to
    // insert; positions are (job index, item index).
    let mut first: HashMap<&str, (usize, usize)> = HashMap::new();
    for (j, (_, items)) in jobs.iter().enumerate() {
        for (i, item) in items.iter().enumerate() {
            first.entry(item.event_id.as_str()).or_insert((j, i));
        }
    }
    let item_at = |(j, i): (usize, usize)| &jobs[j].1[i];
    // Inserting in id order makes concurrent instances wait on each other's
    // rows in one order, so they cannot deadlock.
    let mut candidates: Vec<(usize, usize)> = first.into_values().collect();
    candidates.sort_unstable_by(|a, b| item_at(*a).event_id.cmp(&item_at(*b).event_id));

    let items: Vec<&IngestItem> = candidates.iter().map(|p| item_at(*p)).collect();
    let ids: Vec<&str> = items.iter().map(|i| i.event_id.as_str()).collect();
    let types: Vec<&str> = items.iter().map(|i| i.event_type.as_str()).collect();
    let users: Vec<&str> = items.iter().map(|i| i.user_id.as_str()).collect();
    let payloads: Vec<&[u8]> = items.iter().map(|i| &i.payload[..]).collect();
    let created: Vec<i64> = items.iter().map(|i| i.created_at).collect();

    let single = one_statement(jobs);
    // New events' ids, and the webhooks written to that still exist.
    let mut inserted: HashSet<String> = HashSet::new();
    let mut live: HashSet<String> = HashSet::new();
    if single {
        // The deliveries of every candidate; those of an event that turns
        // out to be stored already find no new event to join and are not written.
        let d = Deliveries::of(jobs, candidates.iter().copied());
        let events: [&(dyn ToSql + Sync); 5] = [&ids, &types, &users, &payloads, &created];
        let params: Vec<&(dyn ToSql + Sync)> = events.into_iter().chain(d.columns()).collect();
        for row in c.query(INSERT_EVENTS_AND_DELIVERIES, &params).await? {
            let id: String = row.try_get(0).map_err(|e| corrupt("event id", e))?;
            let is_webhook: bool = row.try_get(1).map_err(|e| corrupt("row kind", e))?;
            if is_webhook {
                live.insert(id);
            } else {
                inserted.insert(id);
            }
        }
    } else {
        for row in c
            .query(INSERT_EVENTS, &[&ids, &types, &users, &payloads, &created])
            .await?
        {
            inserted.insert(row.try_get(0).map_err(|e| corrupt("event id", e))?);
        }
    }
    let created_now: HashSet<(usize, usize)> = candidates
        .iter()
        .copied()
        .filter(|p| inserted.contains(item_at(*p).event_id.as_str()))
        .collect();
    if !single {
        let places = places(c, jobs, &created_now).await?;
        let d = Deliveries::of(
            jobs,
            candidates
                .iter()
                .copied()
                .filter(|p| created_now.contains(p)),
        )
        .with_places(&places);
        if !d.ids.is_empty() {
            let rows = if places.is_empty() {
                c.query(INSERT_DELIVERIES, &d.columns()).await?
            } else {
                c.query(INSERT_ORDERED_DELIVERIES, &d.ordered_columns())
                    .await?
            };
            for row in rows {
                live.insert(row.try_get(0).map_err(|e| corrupt("webhook id", e))?);
            }
        }
    }

    // Duplicates: ids stored before this batch, and repeats within it.
    let mut duplicate_ids: Vec<&str> = Vec::new();
    for (j, (_, items)) in jobs.iter().enumerate() {
        for (i, item) in items.iter().enumerate() {
            if !created_now.contains(&(j, i)) {
                duplicate_ids.push(item.event_id.as_str());
            }
        }
    }
    duplicate_ids.sort_unstable();
    duplicate_ids.dedup();
    let mut existing: HashMap<String, Vec<DeliveryId>> = HashMap::new();
    if !duplicate_ids.is_empty() {
        for row in c.query(EXISTING_DELIVERIES, &[&duplicate_ids]).await? {
            let event: String = row.try_get(0).map_err(|e| corrupt("event id", e))?;
            let id: String = row.try_get(1).map_err(|e| corrupt("delivery id", e))?;
            let id = DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e))?;
            existing.entry(event).or_default().push(id);
        }
    }

    Ok(jobs
        .iter()
        .enumerate()
        .map(|(j, (_, items))| {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    if created_now.contains(&(j, i)) {
                        let skipped: Vec<_> = item
                            .deliveries
                            .iter()
                            .filter(|d| !live.contains(d.webhook_id.as_str()))
                            .map(|d| d.webhook_id.clone())
                            .collect();
                        if skipped.is_empty() {
                            IngestOutcome::Created
                        } else {
                            IngestOutcome::CreatedWithout { skipped }
                        }
                    } else {
                        IngestOutcome::Duplicate {
                            deliveries: existing
                                .get(item.event_id.as_str())
                                .cloned()
                                .unwrap_or_default(),
                        }
                    }
                })
                .collect()
        })
        .collect())
}

/// The places of the FIFO deliveries of the new events (at `created`), by
/// delivery id, numbered in the order the jobs arrived and, within a job,
/// the order of its events: the order of acknowledgement, as the whole
/// batch is acknowledged at once.
async fn places<'a>(
    c: &mut Conn,
    jobs: &[(&'a str, &'a [IngestItem])],
    created: &HashSet<(usize, usize)>,
) -> Result<HashMap<&'a str, i64>, StoreError> {
    let in_order = || {
        jobs.iter().enumerate().flat_map(move |(j, &(_, items))| {
            items
                .iter()
                .enumerate()
                .filter(move |(i, _)| created.contains(&(j, *i)))
                .flat_map(|(_, item)| item.deliveries.iter())
                .filter(|d| d.ordering_key.is_some())
        })
    };
    let mut wanted: HashMap<&str, i64> = HashMap::new();
    for d in in_order() {
        *wanted.entry(d.webhook_id.as_str()).or_default() += 1;
    }
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let last = super::ordering::take_places(c, &wanted).await?;
    // Each webhook's places run from its last minus its count, upwards.
    let mut next: HashMap<&str, i64> = wanted
        .iter()
        .filter_map(|(w, n)| last.get(*w).map(|last| (*w, last - n + 1)))
        .collect();
    let mut places = HashMap::new();
    for d in in_order() {
        // A webhook deleted meanwhile has no counter: its deliveries are
        // dropped by the insert anyway.
        if let Some(place) = next.get_mut(d.webhook_id.as_str()) {
            places.insert(d.id.as_str(), *place);
            *place += 1;
        }
    }
    Ok(places)
}

/// The columns of the deliveries of some events, as arrays for `UNNEST`.
#[derive(Default)]
struct Deliveries<'a> {
    ids: Vec<&'a str>,
    events: Vec<&'a str>,
    webhooks: Vec<&'a str>,
    types: Vec<&'a str>,
    users: Vec<&'a str>,
    created: Vec<i64>,
    owners: Vec<Option<&'a str>>,
    ordering_keys: Vec<Option<&'a str>>,
    places: Vec<Option<i64>>,
}

impl<'a> Deliveries<'a> {
    /// The arrays in the order of the statements' `UNNEST`.
    fn columns(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.ids,
            &self.events,
            &self.webhooks,
            &self.types,
            &self.users,
            &self.created,
            &self.owners,
        ]
    }

    /// The arrays of [`INSERT_ORDERED_DELIVERIES`].
    fn ordered_columns(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.ids,
            &self.events,
            &self.webhooks,
            &self.types,
            &self.users,
            &self.created,
            &self.owners,
            &self.ordering_keys,
            &self.places,
        ]
    }

    /// Fills in the order and place of each FIFO delivery.
    fn with_places(mut self, places: &HashMap<&str, i64>) -> Self {
        if !places.is_empty() {
            self.places = self.ids.iter().map(|id| places.get(id).copied()).collect();
        }
        self
    }

    /// The deliveries of the items at `positions` (job index, item index).
    fn of(
        jobs: &[(&'a str, &'a [IngestItem])],
        positions: impl Iterator<Item = (usize, usize)>,
    ) -> Self {
        let mut d = Deliveries::default();
        for (j, i) in positions {
            let (owner, item) = (jobs[j].0, &jobs[j].1[i]);
            for delivery in &item.deliveries {
                d.ids.push(delivery.id.as_str());
                d.events.push(item.event_id.as_str());
                d.webhooks.push(delivery.webhook_id.as_str());
                d.types.push(item.event_type.as_str());
                d.users.push(item.user_id.as_str());
                d.created.push(item.created_at);
                d.owners.push(delivery.claimed.then_some(owner));
                d.ordering_keys.push(delivery.ordering_key.as_deref());
            }
        }
        d
    }
}
