-- Consent (issue 18.1): each workspace has a notice (what is recorded, masked, kept and for how
-- long); a recorder (migration 0009) agrees to one version of it, and may withdraw.
--
-- Notices: every version a workspace ever showed is kept (a person agreed to that text, and the
-- export shows it); one of them is current. A version's content never changes: an admin who
-- edits the notice gives it a new version, and recorders agree again. Every workspace gets a
-- default notice (existing ones here, new ones from a trigger); it is `required`, so a
-- recorder-bound key records nothing until its recorder agreed.
CREATE TABLE consent_notices (
    org_id         uuid NOT NULL,
    workspace_id   uuid NOT NULL,
    version        text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    text           text NOT NULL CHECK (length(text) BETWEEN 1 AND 20000),
    required       boolean NOT NULL,
    recorded       text[] NOT NULL DEFAULT '{}',
    masked         text[] NOT NULL DEFAULT '{}',
    retention_days integer CHECK (retention_days BETWEEN 1 AND 36500),  -- NULL: not stated
    is_current     boolean NOT NULL DEFAULT true,
    created_by     uuid,  -- the key or account that set it; NULL for the default
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, version),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX consent_notices_current_idx ON consent_notices (workspace_id) WHERE is_current;

-- The default notice, for a workspace that has none yet.
CREATE FUNCTION tracemill_insert_default_notice(org uuid, ws uuid) RETURNS void LANGUAGE sql AS $$
    INSERT INTO consent_notices (org_id, workspace_id, version, text, required, recorded, masked)
    VALUES (org, ws, 'default-1',
            'While you record, tracemill keeps the pages you visit, what you click and type, and '
            'screenshots of those pages, to study how tasks are done in a browser. Passwords are never '
            'sent; card numbers, email addresses and the parts of pages marked private are masked before '
            'anything leaves your browser. You can stop recording and withdraw this consent at any time, '
            'and ask for a copy of what was kept or for its deletion.',
            true,
            ARRAY['pages visited (address and title)', 'clicks, scrolling and navigation',
                  'typed text and form changes', 'screenshots of the pages'],
            ARRAY['password fields (never sent)', 'card numbers and email addresses',
                  'elements marked tm-mask (text masked) or tm-block (left out)'])
    ON CONFLICT DO NOTHING
$$;
SELECT tracemill_insert_default_notice(org_id, workspace_id) FROM workspaces;

CREATE FUNCTION tracemill_default_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tracemill_insert_default_notice(NEW.org_id, NEW.workspace_id);
    RETURN NEW;
END $$;
CREATE TRIGGER workspaces_default_notice AFTER INSERT ON workspaces
    FOR EACH ROW EXECUTE FUNCTION tracemill_default_notice();

-- Consent records, append-only: agreeing adds a row (agreeing again adds another); withdrawing
-- stamps `withdrawn_at` on the recorder's open rows, and nothing else of a row ever changes (a
-- trigger refuses it). A recorder's purge (deletion, migration 0017) removes its rows with it.
-- A recorder has current consent when an open row names its workspace's current notice version.
CREATE TABLE consent_records (
    consent_id     uuid PRIMARY KEY,
    org_id         uuid NOT NULL,
    workspace_id   uuid NOT NULL,
    recorder_id    uuid NOT NULL REFERENCES recorders (recorder_id) ON DELETE CASCADE,
    notice_version text NOT NULL,
    agreed_at      timestamptz NOT NULL DEFAULT now(),
    withdrawn_at   timestamptz,
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id),
    FOREIGN KEY (workspace_id, notice_version) REFERENCES consent_notices (workspace_id, version),
    CHECK (withdrawn_at IS NULL OR withdrawn_at >= agreed_at)
);
CREATE INDEX consent_records_recorder_idx ON consent_records (recorder_id, agreed_at DESC);
CREATE INDEX consent_records_open_idx ON consent_records (recorder_id, notice_version) WHERE withdrawn_at IS NULL;
CREATE INDEX consent_records_workspace_idx ON consent_records (org_id, workspace_id, agreed_at DESC);

CREATE FUNCTION tracemill_consent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.withdrawn_at IS NOT NULL OR NEW.withdrawn_at IS NULL
       OR (NEW.consent_id, NEW.org_id, NEW.workspace_id, NEW.recorder_id, NEW.notice_version, NEW.agreed_at)
          IS DISTINCT FROM
          (OLD.consent_id, OLD.org_id, OLD.workspace_id, OLD.recorder_id, OLD.notice_version, OLD.agreed_at) THEN
        RAISE EXCEPTION 'consent records are append-only: only an open record''s withdrawn_at may be set';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consent_records_append_only BEFORE UPDATE ON consent_records
    FOR EACH ROW EXECUTE FUNCTION tracemill_consent_append_only();
