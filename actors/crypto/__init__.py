"""Encryption at rest (issue 18.5): AES-256-GCM envelopes under per-workspace data keys wrapped
by a key-encryption key. envelope: one value's format; kek: what wraps data keys; keyring: data
keys made, stored and cached; event_fields: which event columns, both ways; rotation: a
workspace's values moved to a new data key."""
