-- Waiting work indexed per webhook. The scheduler used to walk one global
-- index of due work in time order and skip the rows of webhooks whose window
-- share was full or that were paused: behind an endpoint that hangs, every
-- pass stepped over its whole backlog (27 ms per pass with 30,000 rows, held
-- inside the writer's transaction, so every ingest commit waited for it).
-- Per webhook, a pass seeks once to each webhook's earliest waiting row and
-- never reads the rows of one it skips.
CREATE INDEX deliveries_due_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying');
DROP INDEX deliveries_due;
