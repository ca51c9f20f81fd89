-- Per-device sample lists as runs, and the samples not yet in a run listed in memory.
--
-- Migration 0007 listed each sample twice per device: a trigger put it into
-- `telemetry_device_recent`, and a bulk move later copied it into `telemetry_device`, one row
-- per sample. The trigger and the recent table's pages (rewritten by every batch) were about
-- 40 % of the ingest writer's time, and the move sorted every sample again.
--
-- Now:
-- * Samples stored since the last move are listed in the server's memory
--   (crates/store/src/unmoved.rs). Nothing durable depends on that list: those samples are
--   the `telemetry` rows with an id above `telemetry_device_moves.moved_through` (the ids of
--   `telemetry` only grow; rows are never deleted), and the list is rebuilt from them when a
--   store opens.
-- * A move writes one row per device: a run of that device's sample times as a JSON array,
--   keyed by its newest time. A device's latest samples are its newest runs, then the rows
--   found through the unique (time, device) index.
DROP TRIGGER telemetry_device_recent_insert;

CREATE TABLE telemetry_device_runs (
    device_id  TEXT NOT NULL,
    last_ts    INTEGER NOT NULL,
    -- Tells apart two runs of a device with the same newest time (a sample retried after its
    -- move is listed again): the move mark, or a negative chunk number for the runs below.
    seq        INTEGER NOT NULL,
    -- JSON array of sample times.
    times      TEXT NOT NULL,
    PRIMARY KEY (device_id, last_ts, seq)
) WITHOUT ROWID;

-- The lists kept so far, in runs of up to 256 samples (as a move writes them).
INSERT INTO telemetry_device_runs (device_id, last_ts, seq, times)
    SELECT device_id, MAX(ts), -1 - chunk, json_group_array(ts) FROM (
        SELECT device_id, ts, (ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY ts) - 1) / 256 AS chunk
        FROM (SELECT device_id, ts FROM telemetry_device UNION SELECT device_id, ts FROM telemetry_device_recent)
        ORDER BY device_id, ts)
    GROUP BY device_id, chunk;
DROP TABLE telemetry_device;
DROP TABLE telemetry_device_recent;

CREATE TABLE telemetry_device_moves (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    moved_through  INTEGER NOT NULL
);
INSERT INTO telemetry_device_moves (singleton, moved_through) SELECT 1, COALESCE(MAX(id), 0) FROM telemetry;
