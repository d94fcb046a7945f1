-- Ingest schema: organisations, API keys, sessions, interactions, screenshots.

CREATE TABLE organizations (
    org_id      uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The well-known default organisation that `tracemill up` and the bootstrap key use.
INSERT INTO organizations (org_id, name)
VALUES ('00000000-0000-0000-0000-000000000001', 'default');

-- Only a lookup prefix and a hash are stored: a leaked table does not leak usable keys.
CREATE TABLE api_keys (
    key_id      uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(org_id),
    name        text NOT NULL DEFAULT '',
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_scopes_known CHECK (scopes <@ ARRAY['ingest', 'read', 'admin']::text[])
);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX api_keys_hash_idx ON api_keys (key_hash);

CREATE TABLE sessions (
    session_id        uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organizations(org_id),
    type              text NOT NULL CHECK (type IN ('human', 'automated', 'hybrid')),
    status            text NOT NULL DEFAULT 'recording'
                      CHECK (status IN ('recording', 'finalizing', 'ready', 'rejected', 'failed')),
    task              text,
    client            jsonb,
    user_agent        text,
    viewport          jsonb,
    metadata          jsonb,
    request_hash      bytea NOT NULL,
    event_count       bigint NOT NULL DEFAULT 0,
    screenshot_count  bigint NOT NULL DEFAULT 0,
    duplicate_count   bigint NOT NULL DEFAULT 0,
    acked_through     bigint NOT NULL DEFAULT -1,
    max_seq           bigint NOT NULL DEFAULT -1,
    outcome           text CHECK (outcome IN ('success', 'abandoned', 'failure')),
    last_seq          bigint,
    completeness          real,
    selector_reliability  real,
    screenshot_quality    real,
    training_value        real,
    quality_overall       real,
    quality_reasons       jsonb,
    archive_key       text,
    archive_sha256    text,
    archive_bytes     bigint,
    started_at        timestamptz,
    ended_at          timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- Listing an organisation's sessions by status and recency (API, dataset selection).
CREATE INDEX sessions_org_status_created_idx ON sessions (org_id, status, created_at DESC);

CREATE TABLE interactions (
    session_id  uuid NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq >= 0),
    type        text NOT NULL,
    ts          timestamptz NOT NULL,
    url         text,
    target      jsonb,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
-- The primary key serves every query the API makes on interactions (by session, by seq range).

CREATE TABLE screenshots (
    session_id      uuid NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    screenshot_id   text NOT NULL,
    seq             bigint,
    captured_at     timestamptz,
    trigger         text,
    content_type    text NOT NULL,
    raw_key         text,
    webp_key        text,
    bytes           bigint NOT NULL,
    width           integer NOT NULL,
    height          integer NOT NULL,
    sha256          text NOT NULL,
    status          text NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'processing', 'compressed', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, screenshot_id)
);
-- Finding work: screenshots still waiting for processing.
CREATE INDEX screenshots_pending_idx ON screenshots (created_at) WHERE status IN ('received', 'processing');
