//! Ingest: events and their deliveries, inside the writer's transaction.

use rusqlite::{Connection, params};
use webhook_domain::ids::DeliveryId;

use crate::store::hourly::{self, Tally};
use crate::store::{IngestItem, IngestOutcome, StoreError};

/// The ingest statements, prepared once for every ingest job of a
/// transaction that follow each other (the writer keeps one while only
/// ingest jobs run): fetching three statements from rusqlite's cache and
/// looking the webhook up again cost each single-event job about 8k
/// instructions.
pub struct Ingester<'c> {
    insert_event: rusqlite::CachedStatement<'c>,
    insert_delivery: rusqlite::CachedStatement<'c>,
    webhook_exists: rusqlite::CachedStatement<'c>,
    /// Webhooks looked up so far. Valid while no other kind of job runs: a
    /// webhook deleted by one would otherwise still count as present.
    known: crate::FastMap<String, bool>,
    /// The new deliveries, counted as pending in the kept aggregate: written
    /// once for the whole transaction by [`Ingester::finish`], one change per
    /// webhook and hour rather than one per delivery.
    pending: Tally,
    /// The new events per hour, written to `event_hourly` the same way.
    events: EventsPerHour,
}

/// Events counted per hour of their creation (a transaction touches one
/// hour, two at an hour's turn).
#[derive(Default)]
struct EventsPerHour(Vec<(i64, i64)>);

impl EventsPerHour {
    fn count(&mut self, created_at: i64) {
        let hour = hourly::hour_of(created_at);
        match self.0.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, n)) => *n += 1,
            None => self.0.push((hour, 1)),
        }
    }

    fn write(&self, c: &Connection) -> Result<(), StoreError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut upsert = c.prepare_cached(
            "INSERT INTO event_hourly (hour, n) VALUES (?1, ?2) \
             ON CONFLICT (hour) DO UPDATE SET n = n + excluded.n",
        )?;
        for (hour, n) in &self.0 {
            upsert.execute(params![hour, n])?;
        }
        Ok(())
    }
}

impl<'c> Ingester<'c> {
    pub fn new(c: &'c Connection) -> Result<Self, StoreError> {
        Ok(Ingester {
            insert_event: c.prepare_cached(
                "INSERT INTO events (id, event_type, user_id, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO NOTHING",
            )?,
            insert_delivery: c.prepare_cached(
                "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, \
                 lease_owner, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7, ?6, ?6)",
            )?,
            // A webhook deleted after routing but before this commit gets no
            // delivery (the check a foreign key made, without failing the
            // whole group commit). A separate lookup, not INSERT ... SELECT:
            // SQLite gives a statement that may write several rows a statement
            // journal, a copy of every page it touches, which cost more than
            // the insert itself.
            webhook_exists: c.prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1")?,
            known: crate::FastMap::default(),
            pending: Tally::default(),
            events: EventsPerHour::default(),
        })
    }

    /// Adds the deliveries stored so far to the kept aggregate. Runs in the
    /// same transaction before any other kind of job and before the commit,
    /// so the counts and the rows are committed together.
    pub fn finish(self, c: &Connection) -> Result<(), StoreError> {
        super::record::write_tally(c, &self.pending)?;
        self.events.write(c)
    }

    /// Stores `items` (one job's events) on `c`, the connection it was made on.
    pub fn ingest(
        &mut self,
        c: &Connection,
        owner: &str,
        items: &[IngestItem],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let inserted = self.insert_event.execute(params![
                item.event_id.as_str(),
                item.event_type,
                item.user_id.as_str(),
                &item.payload[..],
                item.created_at,
            ])?;
            if inserted == 0 {
                let mut existing =
                    c.prepare_cached("SELECT id FROM deliveries WHERE event_id = ?1 ORDER BY id")?;
                let deliveries = existing
                    .query_map([item.event_id.as_str()], |r| r.get::<_, String>(0))?
                    .filter_map(|id| id.ok().and_then(|id| DeliveryId::parse(&id).ok()))
                    .collect();
                outcomes.push(IngestOutcome::Duplicate { deliveries });
                continue;
            }
            self.events.count(item.created_at);
            let mut skipped = Vec::new();
            for delivery in &item.deliveries {
                let webhook = delivery.webhook_id.as_str();
                let exists = match self.known.get(webhook) {
                    Some(&exists) => exists,
                    None => {
                        let exists = self.webhook_exists.exists([webhook])?;
                        self.known.insert(webhook.to_string(), exists);
                        exists
                    }
                };
                if !exists {
                    skipped.push(delivery.webhook_id.clone());
                    continue;
                }
                let claimed_by = delivery.claimed.then_some(owner);
                if let Some(key) = &delivery.ordering_key {
                    // Its place in its order is taken here, on the only
                    // writer: insert order is commit order, which is the
                    // order of acknowledgement.
                    let place = super::ordering::take_places(c, webhook, 1)?;
                    c.prepare_cached(
                        "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
                         next_attempt_at, lease_owner, created_at, updated_at, ordering_key, fifo_seq) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, NULL, ?6, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        delivery.id.as_str(),
                        item.event_id.as_str(),
                        webhook,
                        item.event_type,
                        item.user_id.as_str(),
                        item.created_at,
                        key,
                        place,
                    ])?;
                    self.pending
                        .count(webhook, item.created_at, hourly::PENDING, 1);
                    continue;
                }
                self.insert_delivery.execute(params![
                    delivery.id.as_str(),
                    item.event_id.as_str(),
                    delivery.webhook_id.as_str(),
                    item.event_type,
                    item.user_id.as_str(),
                    item.created_at,
                    claimed_by,
                ])?;
                self.pending
                    .count(webhook, item.created_at, hourly::PENDING, 1);
            }
            outcomes.push(if skipped.is_empty() {
                IngestOutcome::Created
            } else {
                IngestOutcome::CreatedWithout { skipped }
            });
        }
        Ok(outcomes)
    }
}
