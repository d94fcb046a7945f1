-- People: accounts with argon2id password hashes, their memberships (organisation, workspace,
-- role), refresh tokens stored hashed in families, invitations; and the append-only audit log.
--
-- Memberships name a workspace by id without a foreign key: the workspaces table is migration
-- 0009's (H8), which may add the constraint once both exist; the organisation is enforced.
-- Secrets are never stored: password hashes are argon2id, refresh and invitation tokens are
-- SHA-256 of 256-bit random values (a guess cannot be tested against them faster than online).

CREATE TABLE accounts (
    account_id      uuid PRIMARY KEY,
    email           text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    password_hash   text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    display_name    text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    -- Access tokens issued (iat, in ms) before this are refused: a password change sets it.
    tokens_valid_after  timestamptz NOT NULL DEFAULT '-infinity',
    disabled_at     timestamptz
);
-- Emails are stored lower-cased; the index also guards rows written around the CHECK.
CREATE UNIQUE INDEX accounts_email_idx ON accounts (lower(email));

CREATE TABLE memberships (
    account_id   uuid NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    org_id       uuid NOT NULL REFERENCES organizations(org_id),
    workspace_id uuid NOT NULL,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'reviewer', 'analyst', 'recorder')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, workspace_id)
);
CREATE INDEX memberships_workspace_idx ON memberships (workspace_id);

-- One row per refresh token ever issued. A family is one sign-in's chain of rotations: using a
-- token marks it used and issues its successor; presenting a used token again (a replay: one
-- of the two holders is a thief) revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash   bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    family_id    uuid NOT NULL,
    account_id   uuid NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_account_idx ON refresh_tokens (account_id) WHERE revoked_at IS NULL;

CREATE TABLE invitations (
    invitation_id uuid PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    email         text NOT NULL CHECK (email = lower(email)),
    org_id        uuid NOT NULL REFERENCES organizations(org_id),
    workspace_id  uuid NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'reviewer', 'analyst', 'recorder')),
    invited_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    accepted_at   timestamptz,
    account_id    uuid REFERENCES accounts(account_id)
);

-- Security events and admin actions. Who (actor kind and id), what (action, target), when,
-- from which address, the request id, and a small JSON of non-secret details.
CREATE TABLE audit_log (
    audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    org_id      uuid,
    workspace_id uuid,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('key', 'account', 'cli', 'system', 'anonymous')),
    actor_id    text,
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure', 'refused')),
    target      text,
    address     inet,
    request_id  text,
    -- The account a sign-in attempt named (by id when it exists, else a keyed hash of the
    -- email): the per-account sign-in limit counts these without storing unknown emails.
    subject     text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_org_at_idx ON audit_log (org_id, audit_id DESC);
CREATE INDEX audit_log_signin_address_idx ON audit_log (address, at) WHERE action = 'signin.failure';
CREATE INDEX audit_log_signin_subject_idx ON audit_log (subject, at) WHERE action = 'signin.failure';

-- Append-only: no role, the owner included, may change or remove an entry once written.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
