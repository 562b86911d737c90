-- Events stored per hour of their creation, for the operator's charts.
-- Counting the window's events from `events` read every one of them (a
-- heap visit each until vacuum marks the pages all-visible): 46-95 ms for
-- 240,000 events at rest and over 100 ms under ingest
-- (docs/performance-log.md, 2026-12-06). Each ingest statement adds its
-- new events here, under its own connection's key (`writer`, the backend's
-- process id), so that two writers, of one instance or of several, never
-- wait on each other's row lock until their commits.
CREATE TABLE event_hourly (
    hour   BIGINT NOT NULL,                   -- created_at / 3,600,000
    writer INTEGER NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (hour, writer)
);

-- What the events stored so far add up to (writer 0: no connection has
-- process id 0).
INSERT INTO event_hourly (hour, writer, n)
SELECT created_at / 3600000, 0, COUNT(*) FROM events GROUP BY 1;
