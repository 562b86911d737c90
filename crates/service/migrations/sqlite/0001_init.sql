-- Webhooks, events, deliveries and attempts of the embedded store.
CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY,
    owner_id              TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL,           -- JSON array of types and patterns
    description           TEXT,
    is_active             INTEGER NOT NULL,
    scope_all             INTEGER NOT NULL DEFAULT 0,
    secret_enc            TEXT NOT NULL,           -- sealed with WEBHOOK_ENCRYPTION_KEY
    prev_secret_enc       TEXT,
    prev_secret_until     INTEGER,
    disabled_reason       TEXT,
    disabled_at           INTEGER,
    failing_since         INTEGER,
    consecutive_exhausted INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks (owner_id, created_at DESC, id DESC);

CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    payload    BLOB NOT NULL,                      -- the exact envelope bytes sent
    created_at INTEGER NOT NULL
);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
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
);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying');

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
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
);
