-- Kept statistics: per webhook and hour of the deliveries' creation, how
-- many ended failed and how many delivered, by latency bucket (the embedded
-- store's migration 0007 explains the table). `slot`: 0 and up, a latency
-- bucket of delivered ones (webhook_domain::latency); -1 failed; -2
-- delivered without a recorded duration.
CREATE TABLE delivery_hourly (
    webhook_id TEXT NOT NULL,
    hour       BIGINT NOT NULL,                   -- created_at / 3,600,000
    slot       INTEGER NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, hour, slot)
);

-- What the deliveries stored so far add up to.
INSERT INTO delivery_hourly (webhook_id, hour, slot, n)
SELECT webhook_id, hour, slot, COUNT(*) FROM (
    SELECT webhook_id, created_at / 3600000 AS hour,
        CASE
        WHEN status = 'failed' THEN -1
        WHEN d IS NULL THEN -2
        WHEN d < 32 THEN d
        WHEN d < 64 THEN 32 + ((d >> 1) & 15)
        WHEN d < 128 THEN 48 + ((d >> 2) & 15)
        WHEN d < 256 THEN 64 + ((d >> 3) & 15)
        WHEN d < 512 THEN 80 + ((d >> 4) & 15)
        WHEN d < 1024 THEN 96 + ((d >> 5) & 15)
        WHEN d < 2048 THEN 112 + ((d >> 6) & 15)
        WHEN d < 4096 THEN 128 + ((d >> 7) & 15)
        WHEN d < 8192 THEN 144 + ((d >> 8) & 15)
        WHEN d < 16384 THEN 160 + ((d >> 9) & 15)
        WHEN d < 32768 THEN 176 + ((d >> 10) & 15)
        WHEN d < 65536 THEN 192 + ((d >> 11) & 15)
        WHEN d < 131072 THEN 208 + ((d >> 12) & 15)
        WHEN d < 262144 THEN 224 + ((d >> 13) & 15)
        WHEN d < 524288 THEN 240 + ((d >> 14) & 15)
        WHEN d < 1048576 THEN 256 + ((d >> 15) & 15)
        WHEN d < 2097152 THEN 272 + ((d >> 16) & 15)
        WHEN d < 4194304 THEN 288 + ((d >> 17) & 15)
        WHEN d < 8388608 THEN 304 + ((d >> 18) & 15)
        WHEN d < 16777216 THEN 320 + ((d >> 19) & 15)
        WHEN d < 33554432 THEN 336 + ((d >> 20) & 15)
        WHEN d < 67108864 THEN 352 + ((d >> 21) & 15)
        WHEN d < 134217728 THEN 368 + ((d >> 22) & 15)
        WHEN d < 268435456 THEN 384 + ((d >> 23) & 15)
        WHEN d < 536870912 THEN 400 + ((d >> 24) & 15)
        WHEN d < 1073741824 THEN 416 + ((d >> 25) & 15)
        WHEN d < 2147483648 THEN 432 + ((d >> 26) & 15)
        WHEN d < 4294967296 THEN 448 + ((d >> 27) & 15)
        END AS slot
    FROM (SELECT webhook_id, created_at, status, last_duration_ms::bigint AS d FROM deliveries
          WHERE status IN ('delivered', 'failed')) AS finished
) AS slotted
GROUP BY webhook_id, hour, slot;

-- Waiting work by creation time: the live pending and retrying counts of a
-- window, without reading the whole window.
CREATE INDEX deliveries_open ON deliveries (webhook_id, created_at)
    WHERE status IN ('pending', 'retrying');

-- The log's `status=failed` filter (failed deliveries are rare).
CREATE INDEX deliveries_failed ON deliveries (webhook_id, created_at DESC, id DESC)
    WHERE status = 'failed';

-- Every delivery is inserted as pending and updated to final once, so each
-- leaves a dead row version and a dead `deliveries_open` entry behind; at
-- the default scale factor (20 % of the table) autovacuum waited until
-- 2.6 million had piled up under a benchmark's 1,000,000 deliveries, and
-- counting the few waiting deliveries through the index took 0.4-1.5 s
-- instead of 0.2 ms (performance log, 2026-12-06). Vacuum after 1 %.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.01,
                            autovacuum_vacuum_threshold = 1000,
                            autovacuum_vacuum_cost_delay = 0);
