-- Events stored per hour of their creation, for the operator's charts,
-- as on PostgreSQL (its migration 11). Counting the window's events from
-- `events`, one range per span, took 7.7 ms at rest and 34.5 ms under
-- ingest at 200,000 events (docs/performance-log.md, 2026-12-06). Each
-- ingest transaction adds its new events here, one row per hour it
-- touches.
CREATE TABLE event_hourly (
    hour INTEGER PRIMARY KEY,                 -- created_at / 3,600,000
    n    INTEGER NOT NULL
);

-- What the events stored so far add up to.
INSERT INTO event_hourly (hour, n)
SELECT created_at / 3600000, COUNT(*) FROM events GROUP BY 1;
