-- A delivery log filtered by event type reads that type's deliveries of the
-- webhook only, in the log's order (newest first, ties by id). Without it
-- a type few deliveries have walked the webhook's whole log (1.4 s at
-- 1,000,000 deliveries on the embedded store, which has the same index;
-- docs/performance-log.md, 2026-12-06). The log's queries name the type
-- literally when it is given, so that a generic plan can use this index.
CREATE INDEX deliveries_type ON deliveries (webhook_id, event_type, created_at DESC, id DESC);
