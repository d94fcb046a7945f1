-- Live updates (0014) announce nothing of a deleted session (0017). A finalisation that was in
-- flight when the session (or its recorder) was deleted may still set its final status; the
-- trigger then writes no live event and sends no NOTIFY, so no stream names the session after
-- its delete (catch-up leaves out its older events: actors/storage/live_repo.events_after).
CREATE OR REPLACE FUNCTION tracemill_live_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev_kind text := CASE WHEN TG_OP = 'INSERT' THEN 'session.created' ELSE 'session.finalized' END;
    new_id bigint;
    new_at timestamptz;
    new_ws uuid;
BEGIN
    IF NEW.deleted_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO live_events (org_id, workspace_id, kind, session_id, status, quality)
    VALUES (NEW.org_id, (to_jsonb(NEW)->>'workspace_id')::uuid, ev_kind, NEW.session_id, NEW.status,
            NEW.quality_overall)
    RETURNING event_id, created_at, workspace_id INTO new_id, new_at, new_ws;
    PERFORM pg_notify('tracemill_live', json_build_object(
        'event_id', new_id, 'org_id', NEW.org_id, 'workspace_id', new_ws, 'kind', ev_kind, 'session_id', NEW.session_id,
        'status', NEW.status, 'quality', NEW.quality_overall, 'at', new_at)::text);
    RETURN NULL;
END $$;
