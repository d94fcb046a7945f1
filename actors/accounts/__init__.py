"""People's accounts: passwords (argon2id), access tokens (JWT), refresh tokens, invitations,
sign-in limits, and the audit trail every security event and admin action is written to."""
