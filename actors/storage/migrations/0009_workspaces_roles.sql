-- Organisations hold workspaces; every owned row (session, screenshot, dataset, fine-tune,
-- model, evaluation, key, review flag) belongs to one workspace of its organisation. Keys get a
-- role (actors/permissions.py) and may name the recorder (the person or extension install)
-- that uses them; sessions record the key and recorder that created them.
--
-- Existing data moves into a default workspace per organisation (the default organisation's
-- has a fixed id, like the organisation). Existing keys keep working: their scopes map to a
-- role (admin -> admin, review -> reviewer, ingest -> recorder, read -> analyst; a key with
-- both ingest and read becomes a recorder, which reads the sessions it recorded).
--
-- Writers that do not name a workspace (the shards' session insert, a fine-tune driver's model
-- row, the benches) get one from a trigger: the parent's (a screenshot's session, a fine-tune's
-- or evaluation's dataset, a model's fine-tune, a flag's session), else the organisation's
-- default. A composite foreign key keeps each row's workspace inside its organisation.

CREATE TABLE workspaces (
    workspace_id uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (org_id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name),
    UNIQUE (org_id, workspace_id)
);
CREATE UNIQUE INDEX workspaces_one_default_idx ON workspaces (org_id) WHERE is_default;

CREATE FUNCTION tracemill_default_workspace_id(org uuid) RETURNS uuid LANGUAGE sql AS $$
    SELECT CASE WHEN org = '00000000-0000-0000-0000-000000000001'::uuid
                THEN '00000000-0000-0000-0001-000000000001'::uuid ELSE gen_random_uuid() END
$$;

INSERT INTO workspaces (workspace_id, org_id, name, is_default)
SELECT tracemill_default_workspace_id(org_id), org_id, 'default', true FROM organizations;

-- Every organisation, however created (the admin API, a test's INSERT), has its default workspace.
CREATE FUNCTION tracemill_org_default_workspace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workspaces (workspace_id, org_id, name, is_default)
    VALUES (tracemill_default_workspace_id(NEW.org_id), NEW.org_id, 'default', true);
    RETURN NEW;
END $$;
CREATE TRIGGER organizations_default_workspace AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION tracemill_org_default_workspace();

CREATE TABLE recorders (
    recorder_id  uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    workspace_id uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id)
);

-- The workspace a row gets when its writer names none.
CREATE FUNCTION tracemill_fill_workspace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.workspace_id IS NULL THEN
        IF TG_TABLE_NAME IN ('screenshots', 'review_flags') THEN
            SELECT workspace_id INTO NEW.workspace_id FROM sessions WHERE session_id = NEW.session_id;
        ELSIF TG_TABLE_NAME IN ('finetunes', 'evaluations') THEN
            SELECT workspace_id INTO NEW.workspace_id FROM datasets WHERE dataset_id = NEW.dataset_id;
        ELSIF TG_TABLE_NAME = 'models' THEN
            SELECT workspace_id INTO NEW.workspace_id FROM finetunes WHERE finetune_id = NEW.finetune_id;
        END IF;
    END IF;
    IF NEW.workspace_id IS NULL AND TG_TABLE_NAME <> 'screenshots' THEN
        SELECT workspace_id INTO NEW.workspace_id FROM workspaces WHERE org_id = NEW.org_id AND is_default;
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE api_keys
    ADD COLUMN workspace_id uuid,
    ADD COLUMN role         text,
    ADD COLUMN recorder_id  uuid REFERENCES recorders (recorder_id);
UPDATE api_keys SET role = CASE
    WHEN 'admin' = ANY (scopes) THEN 'admin'
    WHEN 'review' = ANY (scopes) THEN 'reviewer'
    WHEN 'ingest' = ANY (scopes) THEN 'recorder'
    ELSE 'analyst' END;
ALTER TABLE api_keys
    ALTER COLUMN role SET NOT NULL,
    ADD CONSTRAINT api_keys_role_known CHECK (role IN ('owner', 'admin', 'reviewer', 'analyst', 'recorder'));

ALTER TABLE sessions
    ADD COLUMN workspace_id   uuid,
    ADD COLUMN created_by_key uuid REFERENCES api_keys (key_id),
    ADD COLUMN recorder_id    uuid REFERENCES recorders (recorder_id);
ALTER TABLE screenshots ADD COLUMN workspace_id uuid;
ALTER TABLE datasets ADD COLUMN workspace_id uuid;
ALTER TABLE finetunes ADD COLUMN workspace_id uuid;
ALTER TABLE models ADD COLUMN workspace_id uuid;
ALTER TABLE evaluations ADD COLUMN workspace_id uuid;

UPDATE api_keys t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE sessions t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE datasets t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE finetunes t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE models t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE evaluations t SET workspace_id = w.workspace_id FROM workspaces w WHERE w.org_id = t.org_id AND w.is_default;
UPDATE screenshots t SET workspace_id = s.workspace_id FROM sessions s WHERE s.session_id = t.session_id;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['api_keys', 'sessions', 'datasets', 'finetunes', 'models', 'evaluations'] LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN workspace_id SET NOT NULL,'
                       ' ADD CONSTRAINT %I FOREIGN KEY (org_id, workspace_id)'
                       ' REFERENCES workspaces (org_id, workspace_id)', tbl, tbl || '_workspace_fk');
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW'
                       ' EXECUTE FUNCTION tracemill_fill_workspace()', tbl || '_fill_workspace', tbl);
    END LOOP;
    -- Review flags (migration 0008) belong to their session's workspace.
    IF to_regclass('review_flags') IS NOT NULL THEN
        ALTER TABLE review_flags ADD COLUMN workspace_id uuid;
        UPDATE review_flags t SET workspace_id = s.workspace_id FROM sessions s WHERE s.session_id = t.session_id;
        ALTER TABLE review_flags ALTER COLUMN workspace_id SET NOT NULL,
            ADD CONSTRAINT review_flags_workspace_fk FOREIGN KEY (org_id, workspace_id)
                REFERENCES workspaces (org_id, workspace_id);
        CREATE TRIGGER review_flags_fill_workspace BEFORE INSERT ON review_flags
            FOR EACH ROW EXECUTE FUNCTION tracemill_fill_workspace();
    END IF;
END $$;

ALTER TABLE screenshots
    ALTER COLUMN workspace_id SET NOT NULL,
    ADD CONSTRAINT screenshots_workspace_fk FOREIGN KEY (workspace_id) REFERENCES workspaces (workspace_id);
CREATE TRIGGER screenshots_fill_workspace BEFORE INSERT ON screenshots
    FOR EACH ROW EXECUTE FUNCTION tracemill_fill_workspace();

-- Lists and lookups are per workspace now.
CREATE INDEX sessions_workspace_status_idx ON sessions (workspace_id, status, created_at DESC);
CREATE INDEX sessions_workspace_updated_idx ON sessions (workspace_id, updated_at DESC);
CREATE INDEX datasets_workspace_created_idx ON datasets (workspace_id, created_at DESC);
CREATE INDEX finetunes_workspace_created_idx ON finetunes (workspace_id, created_at DESC);
