-- The queue apart from the log. A waiting delivery has a row in
-- `delivery_queue` as well as in `deliveries`: the queue row holds what
-- claims search and change (due time, claim, order), and is deleted when
-- the delivery is final. No index of the log row names a column that an
-- attempt's result changes, so recording a result is a HOT update (no new
-- index entries) where its page has room: the log is filled to half a page
-- for that.
--
-- Before, every result updated a row that five indexes held or filtered on
-- by status, claim or due time, and wrote a new entry into each index whose
-- predicate the new row met; that update was two thirds of the database's
-- time in `throughput` (performance log, 2026-12-06 and 2026-12-07).
--
-- Rolling upgrade: an instance of an older release keeps working on its
-- own rows. The log keeps its claim columns. A log row whose claim lives in
-- the queue has the claim owner 'delivery_queue', an owner that this
-- release's instances keep alive with their heartbeats, so an older
-- instance never claims it; what an older instance stores or gives back
-- has no queue row, and this release's instances adopt it into the queue
-- while older instances have been seen lately (`instances.schema` is NULL
-- for them).
CREATE TABLE delivery_queue (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'retrying')),
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    ordering_key    TEXT,
    fifo_seq        BIGINT,
    created_at      BIGINT NOT NULL
);

-- Waiting work nobody holds is the queue's from now on; work an older
-- instance holds keeps its owner in both.
UPDATE deliveries SET lease_owner = 'delivery_queue'
WHERE status IN ('pending', 'retrying') AND lease_owner IS NULL;
INSERT INTO delivery_queue (id, webhook_id, status, next_attempt_at, lease_owner, ordering_key, fifo_seq, created_at)
SELECT id, webhook_id, status, COALESCE(next_attempt_at, created_at),
       NULLIF(lease_owner, 'delivery_queue'), ordering_key, fifo_seq, created_at
FROM deliveries WHERE status IN ('pending', 'retrying');

-- Unordered waiting work of each webhook by due time (the claim seeks once
-- per webhook); ordered work by order and place; claims by owner (dead
-- instances' claims are voided); waiting work by creation (live counts).
CREATE INDEX delivery_queue_due ON delivery_queue (webhook_id, next_attempt_at)
    WHERE lease_owner IS NULL AND ordering_key IS NULL;
CREATE INDEX delivery_queue_fifo ON delivery_queue (webhook_id, ordering_key, fifo_seq, id)
    WHERE ordering_key IS NOT NULL;
CREATE INDEX delivery_queue_claimed ON delivery_queue (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX delivery_queue_open ON delivery_queue (webhook_id, created_at);

-- The log's indexes on status and due time go (no older release that can
-- still run beside this one uses them). Its index of claims stays, for the
-- older instances' recovery, keyed on a column this release never changes
-- after the insert.
DROP INDEX deliveries_due_webhook;
DROP INDEX deliveries_fifo;
DROP INDEX deliveries_open;

-- The log's `status=failed` filter by a column set only when a delivery
-- fails for good (and cleared when it is replayed): a partial index on
-- `status` would make every result's update a non-HOT one.
ALTER TABLE deliveries ADD COLUMN failed_at BIGINT;
UPDATE deliveries SET failed_at = updated_at WHERE status = 'failed';
DROP INDEX deliveries_failed;
CREATE INDEX deliveries_failed ON deliveries (webhook_id, created_at DESC, id DESC)
    WHERE failed_at IS NOT NULL;

-- Room on each page for the result's new row version (applies to pages
-- written from now on).
ALTER TABLE deliveries SET (fillfactor = 50);

-- Each delivery's queue row is inserted and deleted once.
ALTER TABLE delivery_queue SET (autovacuum_vacuum_scale_factor = 0.01,
                                autovacuum_vacuum_threshold = 1000,
                                autovacuum_vacuum_cost_delay = 0);

-- The schema each instance runs (NULL: an older release).
ALTER TABLE instances ADD COLUMN schema INTEGER;
