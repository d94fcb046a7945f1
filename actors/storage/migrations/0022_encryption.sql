-- Encryption at rest (issue 18.5): per-workspace data keys, stored only wrapped by the
-- key-encryption key (a secret from the environment, or a KMS key), never in plain text.
-- Each encrypted value names its data key by `key_id` (actors/crypto/envelope.py), so rows
-- under an old key stay readable while a rotation re-encrypts them; a retired key is no longer
-- used for writes but is kept, since a value it encrypted may still be read (a backup).
-- No other schema change: an encrypted event keeps its columns (url and target NULL, payload
-- {"$enc": envelope}), so the search document (0008) indexes nothing of it by itself.

CREATE TABLE data_keys (
    key_id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL,
    -- The data key wrapped by the KEK: AES-GCM nonce + ciphertext, or a KMS ciphertext blob.
    wrapped      bytea NOT NULL,
    -- Which KEK wrapped it ("local:<fingerprint>" or "kms:<key id>"): a wrong KEK is named, not guessed.
    kek_ref      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at   timestamptz
);
-- A writer's lookup: the newest key of a workspace that is not retired.
CREATE INDEX data_keys_workspace_idx ON data_keys (workspace_id, created_at DESC) WHERE retired_at IS NULL;
