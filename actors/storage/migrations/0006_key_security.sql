-- API keys: a lookup id drawn apart from the secret, an HMAC-SHA256 under a server-side pepper
-- (the pepper is a setting, never in the database), expiry, and rotation with an overlap.
--
-- Keys stored before this migration are invalidated, not carried over. Their rows held the
-- first 12 characters of the key next to an unsalted SHA-256: exactly what made a dump
-- dangerous (a 16-character bootstrap key left 4 characters to guess). Carrying them over
-- would mean keeping that material, because the pepper cannot be applied in SQL and the keys
-- themselves are not known. So the rows are revoked and their material erased; the rows stay
-- (sessions and audit refer to key ids). `tracemill up` registers its bootstrap key or makes a
-- fresh key at each start anyway; other clients need a new key (`tracemill keys create`).

ALTER TABLE api_keys
    ADD COLUMN lookup_id   text,
    ADD COLUMN key_hmac    bytea,
    ADD COLUMN expires_at  timestamptz,
    ADD COLUMN replaced_by uuid REFERENCES api_keys(key_id);

UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), prefix = '', key_hash = '\x'::bytea;
ALTER TABLE api_keys DROP COLUMN prefix, DROP COLUMN key_hash;

ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_hmac_with_lookup CHECK ((lookup_id IS NULL) = (key_hmac IS NULL)),
    ADD CONSTRAINT api_keys_old_format_revoked CHECK (lookup_id IS NOT NULL OR revoked_at IS NOT NULL),
    ADD CONSTRAINT api_keys_lookup_id_form CHECK (lookup_id ~ '^[0-9a-f]{16}$'),
    ADD CONSTRAINT api_keys_hmac_length CHECK (octet_length(key_hmac) = 32);

CREATE UNIQUE INDEX api_keys_lookup_idx ON api_keys (lookup_id);
