-- Deletion (issue 18.3): a deleted session or recorder is hidden at once from every read and
-- purged after a grace period (jobs/purge.py). `deleted_at` hides; `purge_after` says when the
-- purge may remove the rows (and objects). Every read of sessions filters `deleted_at IS NULL`.
ALTER TABLE sessions
    ADD COLUMN deleted_at  timestamptz,
    ADD COLUMN purge_after timestamptz,
    ADD CONSTRAINT sessions_purge_after_deleted CHECK ((deleted_at IS NULL) = (purge_after IS NULL));
CREATE INDEX sessions_purge_due_idx ON sessions (purge_after) WHERE deleted_at IS NOT NULL;

ALTER TABLE recorders
    ADD COLUMN deleted_at  timestamptz,
    ADD COLUMN purge_after timestamptz;

-- What a purge leaves of a session: its id, owner and dates, no recorded value. The purge
-- writes this before removing anything, so a purge killed midway finds its work list here
-- (objects are listed by the prefixes derived from these ids) and finishes on the next run.
CREATE TABLE purged_sessions (
    session_id   uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    workspace_id uuid NOT NULL,
    recorder_id  uuid,
    deleted_at   timestamptz NOT NULL,
    image_sha256 text[] NOT NULL DEFAULT '{}',  -- vision cache entries to remove
    object_keys  text[] NOT NULL DEFAULT '{}',  -- keys named by its rows (besides the prefixes)
    rows_done    boolean NOT NULL DEFAULT false,
    purged_at    timestamptz
);

-- Datasets that contained a deleted session: files withdrawn, row marked; models trained on
-- them flagged in the registry.
ALTER TABLE datasets
    ADD COLUMN withdrawn_at     timestamptz,
    ADD COLUMN withdrawn_reason text;
ALTER TABLE models
    ADD COLUMN flagged_at  timestamptz,
    ADD COLUMN flag_reason text;
