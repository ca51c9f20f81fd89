-- Troubleshooting answers from the LLM, cached per problem rather than per anomaly: the key is
-- the hex SHA-256 of (signature + "\n" + model version), so every anomaly of one kind scored by
-- one model shares an answer. Only LLM answers are stored; the deterministic answer is cheap
-- to rebuild. Expired rows are ignored on read and replaced on write.
--
-- 0001 created a placeholder table of this name that nothing ever wrote; its shape (one
-- opaque answer, no signature) does not fit, so it is replaced rather than altered.
DROP TABLE IF EXISTS troubleshoot_cache;

CREATE TABLE troubleshoot_cache (
    cache_key      TEXT PRIMARY KEY,
    signature      TEXT NOT NULL,
    model_version  TEXT,                -- of the anomaly's model; NULL when it has none
    llm_model      TEXT NOT NULL,       -- the LLM that wrote the answer
    summary        TEXT NOT NULL,
    steps          TEXT NOT NULL,       -- JSON array of strings
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX troubleshoot_cache_expires ON troubleshoot_cache (expires_at);
