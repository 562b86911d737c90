-- One index orders a webhook's delivery log instead of two. `deliveries_type`
-- (webhook_id, event_type, created_at, then the primary key) answers every
-- read `deliveries_webhook` (webhook_id, created_at) answered: a read that
-- names no event type names every catalogue type instead, one range of the
-- index per type (`event_type IN (...)`), and the log's newest-first page
-- merges the types' ranges in order (store/sqlite/logs.rs). Every ingested
-- delivery wrote an entry to both indexes on the writer's path; now it
-- writes one (docs/performance-log.md, 2026-12-06).
DROP INDEX deliveries_webhook;
