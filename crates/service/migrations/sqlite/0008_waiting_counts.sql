-- Waiting deliveries counted in the kept aggregate instead of through an
-- index: slot -3 pending, -4 retrying, per webhook and hour of creation.
-- The index `deliveries_open` took an entry from every delivery at ingest
-- and lost it when the delivery ended, two B-tree writes per delivery on
-- the writer's path; the counters change once per webhook and hour in each
-- transaction (the writer adds up an ingest transaction's new deliveries),
-- and the reads that used the index (the overall and per-endpoint figures,
-- the hourly chart) read counters they already read.
INSERT INTO delivery_hourly (webhook_id, hour, slot, n)
SELECT webhook_id, created_at / 3600000,
       CASE status WHEN 'pending' THEN -3 ELSE -4 END, COUNT(*)
FROM deliveries WHERE status IN ('pending', 'retrying')
GROUP BY 1, 2, 3;

DROP INDEX deliveries_open;
