-- Webhooks and their delivery outbox. The `webhooks` and `outbox` tables of 0001 were
-- placeholders nothing ever wrote to; they are replaced.
DROP INDEX IF EXISTS outbox_due;
DROP TABLE IF EXISTS outbox;
DROP TABLE IF EXISTS webhooks;

CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    url           TEXT NOT NULL,
    secret        TEXT NOT NULL,
    min_severity  TEXT NOT NULL DEFAULT 'high' CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
    description   TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    -- Deleted hooks are kept so that their deliveries stay readable.
    deleted_at    INTEGER
);

-- One row per (webhook, alert), written in the transaction that stored the anomaly which
-- opened the incident. While an attempt runs the row is `delivering` and `next_attempt_at`
-- is the end of its lease: a worker that dies mid-attempt leaves a row that is simply due
-- again once the lease ends, so one range of the index below finds both kinds of work.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    webhook_id       INTEGER NOT NULL REFERENCES webhooks (id),
    incident_id      INTEGER NOT NULL,
    anomaly_id       INTEGER NOT NULL,
    event            TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    -- The exact bytes sent, fixed at the first attempt so that every retry is identical.
    payload          TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_hook_status ON webhook_deliveries (webhook_id, status, id DESC);
