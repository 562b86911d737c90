-- The PostgreSQL store's delivery life (insert, claim, result) in two
-- layouts, to measure what a HOT result update would save.
--
-- a: today's `deliveries` (the service's migrations, every index).
-- b: the log row apart from the queue row. `deliveries_b` holds only the
--    columns the log shows and is indexed on columns that never change, so
--    the result is a HOT update where the page has room (fillfactor 50);
--    `queue_b` holds what claims read and write, and loses its row when the
--    delivery is final.
--
-- Usage (see docs/performance-log.md, 2026-12-07):
--   createdb hot; for f in crates/service/migrations/postgres/*.sql; do psql -d hot -f $f; done
--   psql -d hot -f docs/experiments/postgres-queue-split.sql          # creates b's tables
--   PGOPTIONS="-c bench.n=400 -c bench.variant=a -c enable_seqscan=off -c enable_bitmapscan=off" \
--     psql -d hot -v run=1 -f docs/experiments/postgres-queue-split.sql
-- Each run does bench.n batches of 128 deliveries, three commits per batch,
-- and prints its seconds and WAL bytes per delivery; TRUNCATE between runs.
-- HOT updates: `n_tup_hot_upd` of pg_stat_user_tables, read from another
-- connection after the run (a backend reports its statistics when it ends).
\set ON_ERROR_STOP 1
\if :{?run}
SELECT pg_current_wal_lsn() AS lsn0, clock_timestamp() AS t0 \gset
DO $$
DECLARE k int; ids text[]; now_ms bigint;
BEGIN
  FOR k IN 0 .. current_setting('bench.n')::int - 1 LOOP
    now_ms := (extract(epoch FROM clock_timestamp()) * 1000)::int8;
    ids := ARRAY(SELECT 'dlv_' || lpad(i::text, 26, '0') FROM generate_series(k*128, k*128+127) i);
    IF current_setting('bench.variant') = 'a' THEN
      INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, created_at, updated_at)
        SELECT u, 'evt_' || substr(u, 5), 'wh_' || (k % 4), 'user.created', 'user_1', 'pending', 0, now_ms, now_ms, now_ms FROM unnest(ids) u;
      COMMIT;
      UPDATE deliveries SET lease_owner = 'inst_1' WHERE id = ANY(ids);
      COMMIT;
      UPDATE deliveries d SET status = 'delivered', attempts = 1, next_attempt_at = NULL, lease_owner = NULL,
        last_status_code = 200, last_duration_ms = 1, updated_at = now_ms, delivered_at = now_ms
        WHERE d.id = ANY(ids) AND d.status IN ('pending', 'retrying') AND COALESCE(d.lease_owner = 'inst_1', TRUE);
      COMMIT;
    ELSE
      INSERT INTO deliveries_b (id, event_id, webhook_id, event_type, user_id, status, attempts, created_at, updated_at)
        SELECT u, 'evt_' || substr(u, 5), 'wh_' || (k % 4), 'user.created', 'user_1', 'pending', 0, now_ms, now_ms FROM unnest(ids) u;
      INSERT INTO queue_b (id, webhook_id, status, next_attempt_at, created_at)
        SELECT u, 'wh_' || (k % 4), 'pending', now_ms, now_ms FROM unnest(ids) u;
      COMMIT;
      UPDATE queue_b SET lease_owner = 'inst_1' WHERE id = ANY(ids);
      COMMIT;
      DELETE FROM queue_b q WHERE q.id = ANY(ids) AND COALESCE(q.lease_owner = 'inst_1', TRUE);
      UPDATE deliveries_b d SET status = 'delivered', attempts = 1,
        last_status_code = 200, last_duration_ms = 1, updated_at = now_ms, delivered_at = now_ms
        WHERE d.id = ANY(ids);
      COMMIT;
    END IF;
  END LOOP;
END $$;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 3) AS seconds,
       pg_size_pretty(pg_current_wal_lsn() - :'lsn0') AS wal,
       (pg_current_wal_lsn() - :'lsn0') / (current_setting('bench.n')::int * 128) AS wal_bytes_per_delivery;
\else
CREATE TABLE deliveries_b (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL, webhook_id TEXT NOT NULL, event_type TEXT NOT NULL,
    user_id TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER, last_error_kind TEXT, last_error TEXT, last_duration_ms INTEGER,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, delivered_at BIGINT
) WITH (fillfactor = 50);
CREATE INDEX deliveries_b_webhook ON deliveries_b (webhook_id, created_at DESC, id DESC);
CREATE INDEX deliveries_b_event ON deliveries_b (event_id);
CREATE INDEX deliveries_b_type ON deliveries_b (webhook_id, event_type, created_at DESC, id DESC);
CREATE TABLE queue_b (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, status TEXT NOT NULL, next_attempt_at BIGINT,
    lease_owner TEXT, ordering_key TEXT, fifo_seq BIGINT, created_at BIGINT NOT NULL
);
CREATE INDEX queue_b_due ON queue_b (webhook_id, next_attempt_at) WHERE lease_owner IS NULL AND ordering_key IS NULL;
CREATE INDEX queue_b_claimed ON queue_b (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX queue_b_fifo ON queue_b (webhook_id, ordering_key, fifo_seq, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX queue_b_open ON queue_b (webhook_id, created_at);
\endif
