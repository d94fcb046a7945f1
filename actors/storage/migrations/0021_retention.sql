-- Retention (issue 18.4): per workspace, how long each kind of recorded data is kept; the
-- retention job (jobs/retention.py) removes what is past it. Events move to a table partitioned
-- by month, so retention drops a whole month at once instead of deleting row by row.

-- A workspace's periods in days; NULL: the deployment's default (configs/retention.py), so a
-- changed default reaches every workspace that never chose its own.
CREATE TABLE workspace_retention (
    workspace_id     uuid PRIMARY KEY REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    org_id           uuid NOT NULL,
    events_days      integer CHECK (events_days BETWEEN 1 AND 3650),
    screenshots_days integer CHECK (screenshots_days BETWEEN 1 AND 3650),
    archives_days    integer CHECK (archives_days BETWEEN 1 AND 3650),
    datasets_days    integer CHECK (datasets_days BETWEEN 1 AND 3650),
    audit_days       integer CHECK (audit_days BETWEEN 1 AND 3650),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- What retention removed from a session: its row stays (counters, quality, analysis, card,
-- site, title), so trends and the dashboard keep counting it; these say which data went when.
ALTER TABLE sessions
    ADD COLUMN events_expired_at      timestamptz,
    ADD COLUMN screenshots_expired_at timestamptz,
    ADD COLUMN archive_expired_at     timestamptz;
-- The job's walk: a workspace's sessions oldest first.
CREATE INDEX sessions_workspace_created_idx ON sessions (workspace_id, created_at);

-- The last start and end of each scheduled job (the daily scheduler, cluster/scheduler.py):
-- a run missed while the cluster was down is caught up when the scheduler starts.
CREATE TABLE scheduled_runs (
    name        text PRIMARY KEY,
    started_at  timestamptz,
    finished_at timestamptz,
    report      jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- The audit log stays append-only (0010) with one sanctioned exception: the retention job
-- declares, in its own transaction, the moment before which entries are past their period
-- (SET LOCAL tracemill.audit_expire_before), and only entries older than that and older than a
-- day (the shortest period) may be deleted. Updates and TRUNCATE stay refused for everyone.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.at < nullif(current_setting('tracemill.audit_expire_before', true), '')::timestamptz
       AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Events partitioned by the month their session was created (UTC). One session's events all
-- share that month, so the unique key (session_id, seq, session_month) is in effect
-- (session_id, seq): the ingest's idempotent insert keeps its meaning. Writers take the month
-- from the session row (tracemill_session_month), never from the event's own time.
CREATE FUNCTION tracemill_session_month(created timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', created AT TIME ZONE 'UTC')::date
$$;

ALTER TABLE interactions RENAME TO interactions_unpartitioned;
ALTER TABLE interactions_unpartitioned RENAME CONSTRAINT interactions_pkey TO interactions_unpartitioned_pkey;

CREATE TABLE interactions (
    session_id    uuid NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    seq           bigint NOT NULL CHECK (seq >= 0),
    type          text NOT NULL,
    ts            timestamptz NOT NULL,
    url           text,
    target        jsonb,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at   timestamptz NOT NULL DEFAULT now(),
    session_month date NOT NULL,
    PRIMARY KEY (session_id, seq, session_month)
) PARTITION BY RANGE (session_month);
-- Rows of a month with no partition yet (the job fell behind) land here rather than fail the
-- ingest; creating that month's partition moves them out.
CREATE TABLE interactions_default PARTITION OF interactions DEFAULT;

-- Create the partition of `month` (named interactions_pYYYYMM) if it is missing, moving any
-- rows of that month out of the default partition first (ATTACH refuses while they are there).
CREATE FUNCTION tracemill_events_partition(month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name  text := 'interactions_p' || to_char(first, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE interactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM interactions_default WHERE session_month >= %L'
                   ' AND session_month < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   first, (first + interval '1 month')::date, name);
    EXECUTE format('ALTER TABLE interactions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, first, (first + interval '1 month')::date);
    RETURN true;
END $$;

-- A partition for every month that has sessions, this month and the next two; then the rows.
SELECT tracemill_events_partition(m) FROM (
    SELECT DISTINCT tracemill_session_month(created_at) AS m FROM sessions
    UNION SELECT tracemill_session_month(now() + make_interval(months => k)) FROM generate_series(0, 2) k
) months ORDER BY m;

INSERT INTO interactions (session_id, seq, type, ts, url, target, payload, received_at, session_month)
SELECT i.session_id, i.seq, i.type, i.ts, i.url, i.target, i.payload, i.received_at,
       tracemill_session_month(s.created_at)
FROM interactions_unpartitioned i JOIN sessions s USING (session_id);
DROP TABLE interactions_unpartitioned;
