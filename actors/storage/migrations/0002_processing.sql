-- Processing: screenshot compression results, vision analyses, privacy audit, finalisation
-- progress. Every step's progress lives here so a restart resumes the work.

ALTER TABLE sessions
    -- Where finalisation stands: screenshots → vision → analysis → archive → done.
    ADD COLUMN finalize_stage     text CHECK (finalize_stage IN
                                  ('screenshots', 'vision', 'analysis', 'archive', 'done')),
    ADD COLUMN finalize_attempts  integer NOT NULL DEFAULT 0,
    ADD COLUMN finalize_error     text,
    ADD COLUMN finalized_at       timestamptz,
    ADD COLUMN quality_parts      jsonb,
    ADD COLUMN quality_suggestions jsonb,
    ADD COLUMN analysis           jsonb,
    -- Scores are rounded to 4 decimals; real (float4) would hand back 0.9271000027656555.
    ALTER COLUMN completeness TYPE double precision,
    ALTER COLUMN selector_reliability TYPE double precision,
    ALTER COLUMN screenshot_quality TYPE double precision,
    ALTER COLUMN training_value TYPE double precision,
    ALTER COLUMN quality_overall TYPE double precision;
-- The shards' sweep: sessions whose finalisation a restart interrupted.
CREATE INDEX sessions_finalizing_idx ON sessions (updated_at) WHERE status = 'finalizing';

ALTER TABLE screenshots
    ADD COLUMN webp_bytes        bigint,
    ADD COLUMN webp_width        integer,
    ADD COLUMN webp_height       integer,
    ADD COLUMN webp_sha256       text,
    ADD COLUMN phash             text,
    ADD COLUMN near_duplicate_of text,
    ADD COLUMN boxes_painted     integer,
    ADD COLUMN local_vision      jsonb,
    ADD COLUMN vision            jsonb,
    ADD COLUMN vision_source     text CHECK (vision_source IN ('openai', 'cache', 'local', 'local_fallback')),
    ADD COLUMN attempts          integer NOT NULL DEFAULT 0,
    ADD COLUMN error             text,
    ADD COLUMN compressed_at     timestamptz;

-- One analysis per image and model: the same picture is never sent to a model twice.
CREATE TABLE vision_cache (
    image_sha256   text NOT NULL,
    model          text NOT NULL,
    prompt_version text NOT NULL,
    analysis       jsonb NOT NULL,
    tokens_in      integer NOT NULL DEFAULT 0,
    tokens_out     integer NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_sha256, model, prompt_version)
);

-- Every provider call and every fallback, with what it cost.
CREATE TABLE vision_calls (
    call_id         bigserial PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    screenshot_id   text NOT NULL,
    image_sha256    text NOT NULL,
    provider        text NOT NULL,
    model           text,
    outcome         text NOT NULL CHECK (outcome IN ('ok', 'cached', 'fallback')),
    fallback_reason text,
    tokens_in       integer NOT NULL DEFAULT 0,
    tokens_out      integer NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    latency_ms      integer,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vision_calls_session_idx ON vision_calls (session_id);

-- How many values of each type were redacted per session: counts only, never the values.
CREATE TABLE privacy_audit (
    session_id  uuid NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    source      text NOT NULL CHECK (source IN ('events', 'screenshots')),
    kind        text NOT NULL,
    count       bigint NOT NULL CHECK (count >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, source, kind)
);
