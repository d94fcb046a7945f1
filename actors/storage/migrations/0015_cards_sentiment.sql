-- Session cards and sentiment (issue 19.1, 19.2).
--
-- Finalisation gains a "cards" stage between analysis and archive, so the archive carries
-- the card. The card's title is card_title: the search trigger of 0008 sets `title` to the
-- first page title when the final status is reached (after the cards stage), and the list
-- shows coalesce(card_title, title).

ALTER TABLE sessions DROP CONSTRAINT sessions_finalize_stage_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_finalize_stage_check CHECK (finalize_stage IN
    ('screenshots', 'vision', 'analysis', 'cards', 'archive', 'done'));

ALTER TABLE sessions
    ADD COLUMN card_title         text CHECK (char_length(card_title) <= 200),
    ADD COLUMN caption            text CHECK (char_length(caption) <= 1000),
    -- {title, caption, source: model|local, model, moments, sheet_key, sheet_frames, ...}
    ADD COLUMN card               jsonb,
    -- {label, polarity, confidence, texts, negative, neutral, positive, items: [{seq, kind,
    --  polarity, confidence, label, source}]}: readings only, never the text.
    ADD COLUMN sentiment          jsonb,
    ADD COLUMN sentiment_label    text CHECK (sentiment_label IN ('negative', 'neutral', 'positive')),
    ADD COLUMN sentiment_polarity double precision CHECK (sentiment_polarity BETWEEN -1 AND 1);
CREATE INDEX sessions_sentiment_idx ON sessions (org_id, sentiment_label);

ALTER TABLE review_flags
    ADD COLUMN note_polarity   double precision CHECK (note_polarity BETWEEN -1 AND 1),
    ADD COLUMN note_confidence double precision CHECK (note_confidence BETWEEN 0 AND 1);

-- Model replies by the sha256 of their whole request (model, messages, parameters): the same
-- call is never made twice. Replies hold titles, captions and scores, never the prompt.
CREATE TABLE inference_cache (
    prompt_sha256 text PRIMARY KEY CHECK (prompt_sha256 ~ '^[0-9a-f]{64}$'),
    kind          text NOT NULL CHECK (kind IN ('card', 'sentiment')),
    model         text NOT NULL,
    reply         jsonb NOT NULL,
    tokens_in     integer NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out    integer NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    hits          bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
