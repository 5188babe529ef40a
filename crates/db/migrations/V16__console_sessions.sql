-- outboxd schema, version 16: console sessions kept in the database.
--
-- A browser session of the console (an admin's, or a tenant's portal
-- session) is a row: the cookie carries a random token, the row its
-- SHA-256, so a leaked table does not sign anyone in. Every replica reads
-- the same rows, so signing out ends the session everywhere at once, and
-- a portal session is bound to its tenant here, not by anything the
-- browser holds.
--
-- A portal link can be used once: its nonce is recorded when it signs a
-- browser in, and kept until the link would have expired anyway.

CREATE TABLE outbox.console_sessions (
    token_sha256 bytea PRIMARY KEY,
    -- null: an admin session; else the tenant whose portal this is
    tenant       text CHECK (tenant IS NULL OR outbox.is_valid_tenant(tenant)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON outbox.console_sessions (expires_at);
COMMENT ON TABLE outbox.console_sessions IS
  'Signed-in console and portal browsers; a row deleted is a session ended on every replica.';

CREATE TABLE outbox.portal_links_used (
    nonce      text PRIMARY KEY,
    tenant     text NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
COMMENT ON TABLE outbox.portal_links_used IS
  'Portal links that signed a browser in: each works once, until it expires.';
