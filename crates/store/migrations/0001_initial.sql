-- anomalyd schema, version 1 (SQLite). Times are Unix milliseconds (UTC); JSON is text.

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    cohort      TEXT,
    labels      TEXT NOT NULL DEFAULT '{}',
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
CREATE INDEX devices_cohort ON devices (cohort);

-- One row per (device, time): a retried batch inserts nothing twice.
CREATE TABLE telemetry (
    device_id   TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    metrics     TEXT NOT NULL,
    PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY,
    incident_key  TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    signature     TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    severity      TEXT NOT NULL,
    opened_at     INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    anomaly_count INTEGER NOT NULL DEFAULT 1,
    evidence      TEXT NOT NULL
);
CREATE INDEX incidents_open_key ON incidents (incident_key) WHERE status != 'resolved';
CREATE INDEX incidents_device ON incidents (device_id, id DESC);

CREATE TABLE anomalies (
    id             INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    ts             INTEGER NOT NULL,
    cohort         TEXT,
    anomaly_score  REAL NOT NULL,
    grade          REAL NOT NULL,
    severity       TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    detectors      TEXT NOT NULL,
    model_version  TEXT,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    note           TEXT,
    incident_id    INTEGER REFERENCES incidents (id),
    features       TEXT NOT NULL,
    explanation    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
-- One anomaly per sample: re-sent or re-released samples never duplicate an anomaly.
CREATE UNIQUE INDEX anomalies_sample ON anomalies (device_id, ts);
CREATE INDEX anomalies_open ON anomalies (status, id DESC) WHERE status IN ('open', 'acknowledged');
CREATE INDEX anomalies_created ON anomalies (created_at DESC, id DESC);
CREATE INDEX anomalies_severity ON anomalies (severity, id DESC);
CREATE INDEX anomalies_cohort ON anomalies (cohort, id DESC);
CREATE INDEX anomalies_score ON anomalies (anomaly_score DESC, id DESC);
CREATE INDEX anomalies_ts ON anomalies (ts, id);

CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    version     TEXT NOT NULL UNIQUE,
    params      TEXT NOT NULL DEFAULT '{}',
    metrics     TEXT NOT NULL DEFAULT '{}',
    active      INTEGER NOT NULL DEFAULT 0,
    blob        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1;

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    min_severity TEXT NOT NULL DEFAULT 'high',
    created_at  INTEGER NOT NULL
);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    webhook_id    INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    payload       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt) WHERE status = 'pending';

CREATE TABLE troubleshoot_cache (
    cache_key      TEXT PRIMARY KEY,
    answer         TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    expires_at     INTEGER NOT NULL
);
