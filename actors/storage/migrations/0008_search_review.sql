-- Search, trends and review (issue 16): what the session list filters and sorts on, one
-- full-text document per session, and reviewers' flags.
--
-- The list's columns are denormalised onto `sessions` by a trigger at the two moments they
-- become known, so no writer (the shards' insert, the analysis step, the finalizer) has to
-- remember them and an ordinary update (event counters, every batch) pays only the WHEN test:
--   * analysis recorded      → intent (the most frequent step intent), frustration (signals);
--   * final status reached   → site (host of the first URL), title (first page title) and the
--                              search document over the stored, redacted events.
-- One document per session rather than a GIN index over `interactions`, chosen by measurement
-- (`tracemill bench search`, README "Search figures"): on 10k sessions and 1M events the
-- per-session index is 5 MB and a common word's page + total takes p95 ~10 ms; an expression
-- index over the events is 15 MB, builds in 11 s, and the same search takes p95 ~2.4 s,
-- because every matching event row must be found and grouped by session before the
-- organisation, the filters, the sort and the count apply.

ALTER TABLE sessions
    ADD COLUMN site         text,
    ADD COLUMN title        text,
    ADD COLUMN intent       text,
    ADD COLUMN frustration  integer NOT NULL DEFAULT 0 CHECK (frustration >= 0),
    ADD COLUMN review_state text NOT NULL DEFAULT 'none'
                            CHECK (review_state IN ('none', 'pending', 'reviewed', 'resolved')),
    ADD COLUMN search_doc   tsvector;

-- The searchable text of a session: its task (weight A), then every distinct page URL, page
-- title and acted-on element text / label of its stored events, bounded so that a huge
-- session cannot make a document over PostgreSQL's 1 MB tsvector limit. 'simple': no
-- stemming or stop words, because pages come in any language.
CREATE FUNCTION tracemill_search_doc(sid uuid, task text) RETURNS tsvector
LANGUAGE sql STABLE AS $$
    SELECT setweight(to_tsvector('simple', coalesce(task, '')), 'A')
        || to_tsvector('simple', coalesce((
            SELECT left(string_agg(v, ' '), 200000) FROM (
                SELECT DISTINCT left(v, 300) AS v
                FROM interactions i,
                     unnest(ARRAY[i.url, i.payload->>'title', i.target->>'text',
                                  i.target->'attributes'->>'aria-label',
                                  i.target->'attributes'->>'placeholder']) AS v
                WHERE i.session_id = sid AND v IS NOT NULL AND v <> ''
            ) d), ''))
$$;

CREATE FUNCTION tracemill_session_fields() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.search_doc := setweight(to_tsvector('simple', coalesce(NEW.task, '')), 'A');
        RETURN NEW;
    END IF;
    IF NEW.analysis IS DISTINCT FROM OLD.analysis AND NEW.analysis IS NOT NULL THEN
        NEW.intent := (SELECT key FROM jsonb_each_text(NEW.analysis->'context'->'intent_counts')
                       WHERE key <> 'navigate' ORDER BY value::int DESC, key LIMIT 1);
        NEW.frustration := coalesce(jsonb_array_length(
            CASE jsonb_typeof(NEW.analysis->'context'->'frustration')
                 WHEN 'array' THEN NEW.analysis->'context'->'frustration' END), 0);
    END IF;
    IF OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('ready', 'rejected', 'failed') THEN
        SELECT lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/@?#]*@)?([^/:?#]+)'))
          INTO NEW.site FROM interactions
         WHERE session_id = NEW.session_id AND url IS NOT NULL ORDER BY seq LIMIT 1;
        SELECT left(payload->>'title', 300) INTO NEW.title FROM interactions
         WHERE session_id = NEW.session_id AND payload->>'title' <> '' ORDER BY seq LIMIT 1;
        NEW.search_doc := tracemill_search_doc(NEW.session_id, NEW.task);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER sessions_search_insert BEFORE INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION tracemill_session_fields();
CREATE TRIGGER sessions_search_update BEFORE UPDATE OF status, analysis ON sessions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.analysis IS DISTINCT FROM NEW.analysis)
    EXECUTE FUNCTION tracemill_session_fields();

-- Sessions stored before this migration.
UPDATE sessions SET
    intent = (SELECT key FROM jsonb_each_text(analysis->'context'->'intent_counts')
              WHERE key <> 'navigate' ORDER BY value::int DESC, key LIMIT 1),
    frustration = coalesce(jsonb_array_length(CASE jsonb_typeof(analysis->'context'->'frustration')
                  WHEN 'array' THEN analysis->'context'->'frustration' END), 0)
WHERE analysis IS NOT NULL;
UPDATE sessions s SET
    site = (SELECT lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/@?#]*@)?([^/:?#]+)'))
            FROM interactions WHERE session_id = s.session_id AND url IS NOT NULL ORDER BY seq LIMIT 1),
    title = (SELECT left(payload->>'title', 300) FROM interactions
             WHERE session_id = s.session_id AND payload->>'title' <> '' ORDER BY seq LIMIT 1),
    search_doc = CASE WHEN status IN ('ready', 'rejected', 'failed')
                      THEN tracemill_search_doc(session_id, task)
                      ELSE setweight(to_tsvector('simple', coalesce(task, '')), 'A') END;

-- Full-text search (q=).
CREATE INDEX sessions_search_idx ON sessions USING gin (search_doc);
-- The list's sorts, keyset-paged within an organisation (either direction: a btree scans
-- backwards). Sorting by event count has no index on purpose: the counter changes on every
-- committed batch, and an index on it would be written on the ingest hot path.
CREATE INDEX sessions_org_started_idx ON sessions (org_id, (coalesce(started_at, created_at)), session_id);
CREATE INDEX sessions_org_quality_idx ON sessions (org_id, (coalesce(quality_overall, -1)), session_id);
-- Filters that narrow sharply (a site, a review state) get their own entry point.
CREATE INDEX sessions_org_site_idx ON sessions (org_id, site, (coalesce(started_at, created_at)));
CREATE INDEX sessions_org_review_idx ON sessions (org_id, review_state) WHERE review_state <> 'none';

-- Reviewers' flags on a whole session (seq NULL) or one step (seq).
CREATE TABLE review_flags (
    flag_id     uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (org_id),
    session_id  uuid NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    seq         bigint CHECK (seq >= 0),
    reason      text NOT NULL CHECK (reason IN ('wrong_action', 'off_task', 'personal_data',
                                                'poor_quality', 'other')),
    note        text CHECK (char_length(note) <= 2000),
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'reviewed', 'resolved')),
    -- Who: the key (or, once people have accounts, the account) that acted. No foreign key,
    -- since either kind of principal may act.
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    reviewed_by uuid,
    reviewed_at timestamptz,
    resolved_by uuid,
    resolved_at timestamptz,
    -- The states' bookkeeping cannot disagree with the state, whatever writes the row.
    CONSTRAINT review_flags_reviewed CHECK ((state = 'pending') = (reviewed_at IS NULL)
                                           AND (reviewed_at IS NULL) = (reviewed_by IS NULL)),
    CONSTRAINT review_flags_resolved CHECK ((state = 'resolved') = (resolved_at IS NOT NULL)
                                           AND (resolved_at IS NULL) = (resolved_by IS NULL))
);
CREATE INDEX review_flags_session_idx ON review_flags (session_id, created_at);
CREATE INDEX review_flags_org_pending_idx ON review_flags (org_id, created_at DESC) WHERE state = 'pending';

-- Keys may carry the reviewer's scope.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_known;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_known
    CHECK (scopes <@ ARRAY['ingest', 'read', 'admin', 'review']::text[]);
