-- Live updates (GET /v1/live): every session creation and every final status is written to a
-- small log in the same transaction as the change, and announced with NOTIFY, which
-- PostgreSQL delivers only once that transaction commits. A listener in each ingress replica
-- fans the notifications out to the open streams of the session's organisation; a client that
-- reconnects catches up from the log by event id. A trigger, so that no writer of `sessions`
-- (the shards' insert, the finalizer's status changes, a sweep) can forget to announce.

CREATE TABLE live_events (
    event_id    bigserial PRIMARY KEY,
    org_id      uuid NOT NULL,
    -- The session's workspace when sessions have one (migration 0009): streams show a caller
    -- only its workspace's sessions. Read through to_jsonb so the trigger needs no such column.
    workspace_id uuid,
    kind        text NOT NULL CHECK (kind IN ('session.created', 'session.finalized')),
    session_id  uuid NOT NULL,
    status      text NOT NULL,
    quality     double precision,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Catch-up reads one organisation's events after an id; pruning reads by age.
CREATE INDEX live_events_org_idx ON live_events (org_id, event_id);
CREATE INDEX live_events_created_idx ON live_events (created_at);

CREATE FUNCTION tracemill_live_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev_kind text := CASE WHEN TG_OP = 'INSERT' THEN 'session.created' ELSE 'session.finalized' END;
    new_id bigint;
    new_at timestamptz;
    new_ws uuid;
BEGIN
    INSERT INTO live_events (org_id, workspace_id, kind, session_id, status, quality)
    VALUES (NEW.org_id, (to_jsonb(NEW)->>'workspace_id')::uuid, ev_kind, NEW.session_id, NEW.status,
            NEW.quality_overall)
    RETURNING event_id, created_at, workspace_id INTO new_id, new_at, new_ws;
    PERFORM pg_notify('tracemill_live', json_build_object(
        'event_id', new_id, 'org_id', NEW.org_id, 'workspace_id', new_ws, 'kind', ev_kind, 'session_id', NEW.session_id,
        'status', NEW.status, 'quality', NEW.quality_overall, 'at', new_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_live_created AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION tracemill_live_event();
-- The WHEN clause is all an ordinary update (event counters, every batch) pays.
CREATE TRIGGER sessions_live_finalized AFTER UPDATE OF status ON sessions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('ready', 'rejected', 'failed'))
    EXECUTE FUNCTION tracemill_live_event();
