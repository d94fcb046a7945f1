-- The dashboard's live view and event rate look at an organisation's recently updated sessions.
CREATE INDEX sessions_org_updated_idx ON sessions (org_id, updated_at DESC);
