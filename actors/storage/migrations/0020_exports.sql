-- Exports (issue 18.2): a copy of everything kept about a recorded person, one ZIP in the
-- object store, built by a Ray job (jobs/export.py). The row is the record: the ZIP is
-- downloadable once `status` is ready and `object_key` names it. A run writes its ZIP under a
-- key of its own and publishes it by setting `object_key` here, so a rerun or a run killed
-- midway never leaves a half-written ZIP where a download finds it.
CREATE TABLE exports (
    export_id     uuid PRIMARY KEY,
    org_id        uuid NOT NULL,
    workspace_id  uuid NOT NULL,
    -- No foreign key: the purge removes a deleted recorder's row (and its exports with it).
    recorder_id   uuid NOT NULL,
    requested_by  text NOT NULL,          -- the actor: "key:<id>", "account:<id>", "cli:<user>"
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    ray_job_id    text,
    progress      jsonb,                  -- counts so far, written while the job runs
    counts        jsonb,                  -- the manifest's counts once ready
    object_key    text,
    bytes         bigint CHECK (bytes >= 0),
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id),
    CHECK ((status = 'ready') = (object_key IS NOT NULL))
);
CREATE INDEX exports_recorder_idx ON exports (recorder_id, created_at DESC);
