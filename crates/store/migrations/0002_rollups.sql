-- Counters and roll-ups kept current by triggers, in the same transaction as the rows they
-- count, so the dashboard reads a handful of rows instead of scanning a million anomalies.

-- Counts by (dimension, value): anomaly_status, anomaly_severity, anomaly_cohort,
-- incident_status, and devices ('devices', '').
CREATE TABLE counters (
    dim    TEXT NOT NULL,
    value  TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (dim, value)
) WITHOUT ROWID;

-- Anomalies per hour of sample time: count and score sum (the mean is sum / n).
CREATE TABLE anomaly_hourly (
    bucket     INTEGER PRIMARY KEY,  -- Unix ms of the hour's start
    n          INTEGER NOT NULL,
    score_sum  REAL NOT NULL
);

-- One row per device attribute (the cohort and every label), indexed both ways, so that
-- "which devices run firmware 4.2" and "what does this device run" are index lookups.
CREATE TABLE device_attributes (
    attr       TEXT NOT NULL,
    value      TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (attr, value, device_id)
) WITHOUT ROWID;
CREATE INDEX device_attributes_device ON device_attributes (device_id);

-- Devices with at least one incident that is not resolved, and how many.
CREATE TABLE device_open_incidents (
    device_id  TEXT PRIMARY KEY,
    n          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX incidents_status ON incidents (status, id DESC);
CREATE INDEX anomalies_incident ON anomalies (incident_id, id DESC) WHERE incident_id IS NOT NULL;

CREATE TRIGGER anomalies_count_insert AFTER INSERT ON anomalies BEGIN
    INSERT INTO counters (dim, value, n) VALUES ('anomaly_status', new.status, 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    INSERT INTO counters (dim, value, n) VALUES ('anomaly_severity', new.severity, 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    INSERT INTO counters (dim, value, n) VALUES ('anomaly_cohort', COALESCE(new.cohort, ''), 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    INSERT INTO anomaly_hourly (bucket, n, score_sum)
        VALUES (new.ts - (new.ts % 3600000), 1, new.anomaly_score)
        ON CONFLICT (bucket) DO UPDATE SET n = n + 1, score_sum = score_sum + excluded.score_sum;
END;

CREATE TRIGGER anomalies_count_status AFTER UPDATE OF status ON anomalies
WHEN old.status != new.status BEGIN
    UPDATE counters SET n = n - 1 WHERE dim = 'anomaly_status' AND value = old.status;
    INSERT INTO counters (dim, value, n) VALUES ('anomaly_status', new.status, 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER anomalies_count_delete AFTER DELETE ON anomalies BEGIN
    UPDATE counters SET n = n - 1 WHERE dim = 'anomaly_status' AND value = old.status;
    UPDATE counters SET n = n - 1 WHERE dim = 'anomaly_severity' AND value = old.severity;
    UPDATE counters SET n = n - 1 WHERE dim = 'anomaly_cohort' AND value = COALESCE(old.cohort, '');
    UPDATE anomaly_hourly SET n = n - 1, score_sum = score_sum - old.anomaly_score
        WHERE bucket = old.ts - (old.ts % 3600000);
END;

CREATE TRIGGER devices_attributes_insert AFTER INSERT ON devices BEGIN
    INSERT INTO counters (dim, value, n) VALUES ('devices', '', 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    INSERT OR IGNORE INTO device_attributes (attr, value, device_id)
        SELECT 'cohort', new.cohort, new.id WHERE new.cohort IS NOT NULL;
    INSERT OR IGNORE INTO device_attributes (attr, value, device_id)
        SELECT key, CAST(value AS TEXT), new.id FROM json_each(new.labels) WHERE value IS NOT NULL;
END;

CREATE TRIGGER devices_attributes_update AFTER UPDATE OF cohort, labels ON devices
WHEN old.cohort IS NOT new.cohort OR old.labels IS NOT new.labels BEGIN
    DELETE FROM device_attributes WHERE device_id = new.id;
    INSERT OR IGNORE INTO device_attributes (attr, value, device_id)
        SELECT 'cohort', new.cohort, new.id WHERE new.cohort IS NOT NULL;
    INSERT OR IGNORE INTO device_attributes (attr, value, device_id)
        SELECT key, CAST(value AS TEXT), new.id FROM json_each(new.labels) WHERE value IS NOT NULL;
END;

CREATE TRIGGER incidents_count_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO counters (dim, value, n) VALUES ('incident_status', new.status, 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    INSERT INTO device_open_incidents (device_id, n)
        SELECT new.device_id, 1 WHERE new.status != 'resolved'
        ON CONFLICT (device_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER incidents_count_status AFTER UPDATE OF status ON incidents
WHEN old.status != new.status BEGIN
    UPDATE counters SET n = n - 1 WHERE dim = 'incident_status' AND value = old.status;
    INSERT INTO counters (dim, value, n) VALUES ('incident_status', new.status, 1)
        ON CONFLICT (dim, value) DO UPDATE SET n = n + 1;
    -- Leaving "not resolved".
    UPDATE device_open_incidents SET n = n - 1
        WHERE device_id = new.device_id AND new.status = 'resolved';
    DELETE FROM device_open_incidents WHERE device_id = new.device_id AND n <= 0;
    -- Reopened.
    INSERT INTO device_open_incidents (device_id, n)
        SELECT new.device_id, 1 WHERE old.status = 'resolved'
        ON CONFLICT (device_id) DO UPDATE SET n = n + 1;
END;
