-- Waiting work indexed per webhook (as in the embedded store's migration 3).
-- The claim walked one global index of due rows in time order and filtered
-- out the rows of webhooks whose window share was full or that were paused:
-- behind an endpoint that hangs, every pass read its whole backlog. Per
-- webhook, a pass seeks once to each webhook's earliest waiting row and never
-- reads the rows of one it skips.
CREATE INDEX deliveries_due_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying');
DROP INDEX deliveries_due;
