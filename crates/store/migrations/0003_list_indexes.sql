-- Lists sort "newest" by sample time (ts DESC, id DESC). Each equality filter gets an index
-- that ends in (ts, id), so a filtered page is one index walk of 51 entries whatever the
-- table size; the time-range filter walks anomalies_ts.
DROP INDEX anomalies_open;
DROP INDEX anomalies_severity;
DROP INDEX anomalies_cohort;
CREATE INDEX anomalies_status_ts ON anomalies (status, ts DESC, id DESC);
CREATE INDEX anomalies_severity_ts ON anomalies (severity, ts DESC, id DESC);
CREATE INDEX anomalies_cohort_ts ON anomalies (cohort, ts DESC, id DESC);
