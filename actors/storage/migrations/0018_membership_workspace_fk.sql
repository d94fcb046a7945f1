-- Memberships, invitations and refresh tokens name a workspace that exists (0010 was written
-- before 0009's workspaces table was committed, so it could not say so). Memberships and
-- invitations name it with its organisation, so a row cannot pair one organisation with another's
-- workspace.
--
-- A row naming no existing workspace (or another organisation's) grants nothing the API would
-- honour, and moving it into some default workspace could grant access nobody gave: such rows
-- are removed, not repaired. The audit log keeps who was given what and when.
DELETE FROM memberships m WHERE NOT EXISTS (
    SELECT 1 FROM workspaces w WHERE w.org_id = m.org_id AND w.workspace_id = m.workspace_id);
DELETE FROM invitations i WHERE NOT EXISTS (
    SELECT 1 FROM workspaces w WHERE w.org_id = i.org_id AND w.workspace_id = i.workspace_id);
DELETE FROM refresh_tokens t WHERE NOT EXISTS (
    SELECT 1 FROM workspaces w WHERE w.workspace_id = t.workspace_id);

ALTER TABLE memberships ADD CONSTRAINT memberships_workspace_fk
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id);
ALTER TABLE invitations ADD CONSTRAINT invitations_workspace_fk
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, workspace_id);
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_workspace_fk
    FOREIGN KEY (workspace_id) REFERENCES workspaces (workspace_id);
-- The referencing side is looked up when a workspace's row changes; memberships has its index.
CREATE INDEX invitations_workspace_idx ON invitations (org_id, workspace_id);
CREATE INDEX refresh_tokens_workspace_idx ON refresh_tokens (workspace_id);
