-- Moderation of training data and model calls in batches (issue 19.3, 19.4).
--
-- Scores and decisions are stored per step, never the text: the text stays where it was,
-- in the (redacted) event. A step whose decision is 'block' never enters a dataset; 'warn'
-- and 'block' steps also get a pending review flag with reason 'moderation'.

ALTER TABLE review_flags DROP CONSTRAINT review_flags_reason_check;
ALTER TABLE review_flags ADD CONSTRAINT review_flags_reason_check CHECK (reason IN
    ('wrong_action', 'off_task', 'personal_data', 'poor_quality', 'other', 'moderation'));

-- Per workspace thresholds, set by admins; a workspace without a row uses the settings'.
CREATE TABLE moderation_thresholds (
    org_id       uuid NOT NULL,
    workspace_id uuid NOT NULL,
    warn         double precision NOT NULL CHECK (warn BETWEEN 0 AND 1),
    block        double precision NOT NULL CHECK (block BETWEEN 0 AND 1),
    updated_by   uuid NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, workspace_id),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id),
    CHECK (warn <= block)
);

-- One row per scored step: the highest category and score, every category's score, who
-- scored it (openai model or the local fallback) and the decision at the thresholds then.
CREATE TABLE moderation_scores (
    session_id  uuid NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq >= 0),
    scores      jsonb NOT NULL,
    category    text NOT NULL CHECK (category IN ('toxicity', 'harassment', 'self_harm', 'sexual', 'violence')),
    score       double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    decision    text NOT NULL CHECK (decision IN ('ok', 'warn', 'block')),
    source      text NOT NULL CHECK (source IN ('openai', 'local')),
    model       text NOT NULL,
    scored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX moderation_scores_blocked_idx ON moderation_scores (session_id) WHERE decision = 'block';

-- When a session's steps were scored (a session with no text steps is scored with none).
ALTER TABLE sessions ADD COLUMN moderated_at timestamptz;

-- Batches sent to the provider's Batch API, and their lines. A line names what it is for
-- (kind, session, seq); the request body is rebuilt from the stored data when it is sent or
-- retried, so no text is kept here.
CREATE TABLE model_batches (
    batch_id       text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('vision', 'card', 'moderation')),
    status         text NOT NULL,
    input_file_id  text NOT NULL,
    output_file_id text,
    error_file_id  text,
    lines          integer NOT NULL CHECK (lines >= 0),
    completed      integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    tokens_in      bigint NOT NULL DEFAULT 0,
    tokens_out     bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
