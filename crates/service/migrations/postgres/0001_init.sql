-- Webhooks, events, deliveries, attempts and live instances of the PostgreSQL store.
-- Times are unix milliseconds (BIGINT), as in the embedded store, so both
-- backends share one contract and one set of tests.
CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY,
    owner_id              TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT[] NOT NULL,         -- types and patterns
    description           TEXT,
    is_active             BOOLEAN NOT NULL,
    scope_all             BOOLEAN NOT NULL DEFAULT FALSE,
    secret_enc            TEXT NOT NULL,           -- sealed with WEBHOOK_ENCRYPTION_KEY, bound to id
    prev_secret_enc       TEXT,
    prev_secret_until     BIGINT,
    disabled_reason       TEXT,
    disabled_at           BIGINT,
    failing_since         BIGINT,
    consecutive_exhausted BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks (owner_id, created_at DESC, id DESC);

CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    payload    BYTEA NOT NULL,                     -- the exact envelope bytes sent
    created_at BIGINT NOT NULL
);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,                         -- instance holding it in memory (instances.id)
    last_status_code INTEGER,
    last_error_kind  TEXT,
    last_error       TEXT,
    last_duration_ms INTEGER,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying');
-- Claims are few (bounded by the instances' windows): recovery scans only these.
CREATE INDEX deliveries_claimed ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX deliveries_finished ON deliveries (created_at) WHERE status IN ('delivered', 'failed');

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    started_at       BIGINT NOT NULL,
    duration_ms      INTEGER NOT NULL,
    request_headers  TEXT NOT NULL,                -- JSON [[name, value], ...]
    status_code      INTEGER,
    response_headers TEXT NOT NULL,
    response_body    TEXT NOT NULL,
    error_kind       TEXT,
    error_message    TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- One row per running service instance; a claim whose owner has no recent
-- heartbeat here belongs to an instance that is gone.
-- Times here are on the database clock, so instances' clocks need not agree.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    beating_since BIGINT NOT NULL                  -- start of the current run of timely heartbeats
);

-- Every instance keeps a routing table of webhooks in memory. A change that
-- affects routing or signing is announced on channel `webhook_changes`
-- (payload: the webhook id), so that other instances reload within moments.
-- Failure bookkeeping (failing_since, consecutive_exhausted) announces nothing.
CREATE FUNCTION notify_webhook_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('webhook_changes', OLD.id);
    ELSE
        PERFORM pg_notify('webhook_changes', NEW.id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_announce_insert_delete AFTER INSERT OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION notify_webhook_change();
CREATE TRIGGER webhooks_announce_update AFTER UPDATE ON webhooks
    FOR EACH ROW
    WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id
       OR OLD.url IS DISTINCT FROM NEW.url
       OR OLD.event_types IS DISTINCT FROM NEW.event_types
       OR OLD.is_active IS DISTINCT FROM NEW.is_active
       OR OLD.scope_all IS DISTINCT FROM NEW.scope_all
       OR OLD.secret_enc IS DISTINCT FROM NEW.secret_enc
       OR OLD.prev_secret_enc IS DISTINCT FROM NEW.prev_secret_enc
       OR OLD.prev_secret_until IS DISTINCT FROM NEW.prev_secret_until)
    EXECUTE FUNCTION notify_webhook_change();
