-- Training: dataset builds, fine-tunes, the model registry and evaluations.
-- Every row is written by a Ray Job driver (jobs/) or queued by the API; the driver of a job
-- that died is resumed from these rows, so each step's outcome is recorded before the next.

CREATE TABLE datasets (
    dataset_id    uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations(org_id),
    name          text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    config        jsonb NOT NULL,
    code_version  text NOT NULL,
    ray_job_id    text,
    -- Lineage: the sessions the examples came from, by split.
    train_sessions       uuid[] NOT NULL DEFAULT '{}',
    validation_sessions  uuid[] NOT NULL DEFAULT '{}',
    counts        jsonb,
    report        jsonb,
    files         jsonb,        -- {name: {key, bytes, sha256}}
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_org_created_idx ON datasets (org_id, created_at DESC);

CREATE TABLE finetunes (
    finetune_id         uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations(org_id),
    dataset_id          uuid NOT NULL REFERENCES datasets(dataset_id),
    provider            text NOT NULL,
    base_model          text NOT NULL,
    settings            jsonb NOT NULL,   -- hyperparameters and policy; never the API key
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'uploading', 'submitted', 'running',
                                          'succeeded', 'failed', 'cancelled')),
    attempt             integer NOT NULL DEFAULT 0,  -- provider jobs started so far
    training_file_id    text,
    validation_file_id  text,
    provider_job_id     text,
    fine_tuned_model    text,
    trained_tokens      bigint,
    error               text,
    cancel_requested    boolean NOT NULL DEFAULT false,
    ray_job_id          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);
CREATE INDEX finetunes_org_created_idx ON finetunes (org_id, created_at DESC);

CREATE TABLE finetune_events (
    finetune_id      uuid NOT NULL REFERENCES finetunes(finetune_id) ON DELETE CASCADE,
    provider_job_id  text NOT NULL,
    event_id         text NOT NULL,
    created_at       timestamptz,
    level            text NOT NULL DEFAULT 'info',
    message          text NOT NULL DEFAULT '',
    data             jsonb,
    PRIMARY KEY (finetune_id, provider_job_id, event_id)
);

CREATE TABLE finetune_checkpoints (
    finetune_id      uuid NOT NULL REFERENCES finetunes(finetune_id) ON DELETE CASCADE,
    provider_job_id  text NOT NULL,
    step             integer NOT NULL,
    metrics          jsonb NOT NULL,
    checkpoint_model text,
    PRIMARY KEY (finetune_id, provider_job_id, step)
);

-- The model registry: one row per model a fine-tune produced.
CREATE TABLE models (
    model_id     uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations(org_id),
    name         text NOT NULL,              -- what the provider serves it as
    version      integer NOT NULL,           -- 1, 2, … per (org, provider, base_model, suffix)
    provider     text NOT NULL,
    base_model   text NOT NULL,
    suffix       text NOT NULL DEFAULT '',
    finetune_id  uuid NOT NULL UNIQUE REFERENCES finetunes(finetune_id),
    dataset_id   uuid NOT NULL REFERENCES datasets(dataset_id),
    metrics      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, name),
    UNIQUE (org_id, provider, base_model, suffix, version)
);

CREATE TABLE evaluations (
    eval_id               uuid PRIMARY KEY,
    org_id                uuid NOT NULL REFERENCES organizations(org_id),
    dataset_id            uuid NOT NULL REFERENCES datasets(dataset_id),
    provider              text NOT NULL,
    model                 text NOT NULL,
    status                text NOT NULL DEFAULT 'running'
                          CHECK (status IN ('running', 'succeeded', 'failed')),
    examples              integer NOT NULL DEFAULT 0,
    answered              integer NOT NULL DEFAULT 0,  -- replies that parsed as an action
    step_accuracy         double precision,
    element_accuracy      double precision,
    action_type_accuracy  double precision,
    details               jsonb,          -- per action type, errors, settings
    error                 text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    finished_at           timestamptz
);
CREATE INDEX evaluations_model_idx ON evaluations (model, created_at DESC);
