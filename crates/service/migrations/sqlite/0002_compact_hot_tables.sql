-- The three tables every delivery writes to, rebuilt for the writer's hot path.
--
-- WITHOUT ROWID: each table is one B-tree keyed by its primary key, instead of
-- a rowid table plus a separate primary-key index. Every event, delivery and
-- attempt used to touch both; now it touches one, which is fewer pages per
-- group commit and one lookup less for each update by id.
--
-- No foreign keys on them: a check was a parent lookup per inserted row on
-- the writer's serial path, and a child whose parent had just been deleted
-- (an attempt finishing while its webhook is deleted) failed the whole group
-- commit. The store now keeps the relations itself: ingest skips deliveries
-- of a webhook deleted meanwhile, attempts of a vanished delivery are not
-- recorded, and deleting a webhook or pruning deletes the children first.
CREATE TABLE events_v2 (
    id         TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    payload    BLOB NOT NULL,                      -- the exact envelope bytes sent
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO events_v2 (id, event_type, user_id, payload, created_at)
    SELECT id, event_type, user_id, payload, created_at FROM events;

CREATE TABLE deliveries_v2 (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL,                -- pending | retrying | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,                         -- instance holding it in memory
    last_status_code INTEGER,
    last_error_kind  TEXT,
    last_error       TEXT,
    last_duration_ms INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER
) WITHOUT ROWID;
INSERT INTO deliveries_v2
    SELECT id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, lease_owner,
           last_status_code, last_error_kind, last_error, last_duration_ms, created_at, updated_at, delivered_at
    FROM deliveries;

CREATE TABLE attempts_v2 (
    delivery_id      TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    request_headers  TEXT NOT NULL,                -- JSON [[name, value], ...]
    status_code      INTEGER,
    response_headers TEXT NOT NULL,
    response_body    TEXT NOT NULL,
    error_kind       TEXT,
    error_message    TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
INSERT INTO attempts_v2
    SELECT delivery_id, attempt, started_at, duration_ms, request_headers, status_code, response_headers,
           response_body, error_kind, error_message
    FROM attempts;

-- Children first: with foreign keys on, dropping a parent deletes through its children.
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
ALTER TABLE attempts_v2 RENAME TO attempts;

CREATE INDEX events_created ON events (created_at);
-- Ascending (it was DESC): new deliveries land at the right edge of their
-- webhook's range instead of its left, which split a page on most commits.
-- The newest-first listing walks it backwards just as fast.
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying');
