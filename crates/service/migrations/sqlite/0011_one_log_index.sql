-- One index orders a webhook's delivery log instead of two. `deliveries_type`
-- (webhook_id, event_type, created_at, then the primary key) answers every
-- read `deliveries_webhook` (webhook_id, created_at) answered: a read that
-- names no event type finds the webhook's types by a skip over the index
-- and reads each type's range, and the log's newest-first page merges those
-- ranges in order (store/sqlite/logs.rs). Every ingested delivery wrote an
-- entry to both indexes on the writer's path; now it writes one
-- (docs/performance-log.md, 2026-12-06).
DROP INDEX deliveries_webhook;
