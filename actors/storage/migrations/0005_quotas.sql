-- Quotas per organisation. The defaults are settings (configs/limits.py, QuotaSettings); a row
-- here overrides one quota for one organisation.
CREATE TABLE org_quotas (
    org_id      uuid NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    quota       text NOT NULL CHECK (quota IN ('concurrent_datasets', 'concurrent_finetunes',
                                               'finetunes_per_day', 'sessions_per_day', 'stored_bytes')),
    max_value   bigint NOT NULL CHECK (max_value >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, quota)
);

-- Counters of the quotas that are not counted from their own tables (jobs are): sessions
-- created per UTC day, and screenshot bytes stored (period 1970-01-01: a running total).
-- Incremented by one conditional statement, so concurrent requests never pass a limit together.
CREATE TABLE quota_usage (
    org_id  uuid NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    quota   text NOT NULL CHECK (quota IN ('sessions_per_day', 'stored_bytes')),
    period  date NOT NULL,
    used    bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (org_id, quota, period)
);

INSERT INTO quota_usage (org_id, quota, period, used)
SELECT s.org_id, 'stored_bytes', DATE '1970-01-01', sum(sc.bytes)
FROM screenshots sc JOIN sessions s USING (session_id)
GROUP BY s.org_id;

INSERT INTO quota_usage (org_id, quota, period, used)
SELECT org_id, 'sessions_per_day', (now() AT TIME ZONE 'UTC')::date, count(*)
FROM sessions
WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY org_id;

-- The fine-tunes of an organisation's UTC day are counted from finetunes (created_at), and the
-- active jobs from datasets/finetunes by status: both already indexed by (org_id, created_at).
