-- Onboarding: invites and OAuth `state`s.
--
-- An invite is single-use and expiring, bound to one e-mail (lower-cased) and to the agent id its
-- worker will get. Only the SHA-256 of the invite token is stored, so a database leak does not
-- leak working links. `agent_id` is UNIQUE over every invite ever made (used, revoked and expired
-- ones too): a reserved id is never handed out twice, and the caller picks the next suffix on a
-- conflict. `used_at` is set by one conditional UPDATE, so two concurrent accepts cannot both win.
CREATE TABLE invites (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT NOT NULL,
    name       TEXT,
    agent_id   TEXT NOT NULL UNIQUE,
    origin     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER,
    -- The user created from this invite, once accepted.
    user_id    TEXT,
    -- How many times the link was (re)sent; a resend replaces `token_hash`.
    sent_count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX invites_created ON invites(created_at);

-- OAuth `state`s: single-use and expiring, bound to an invite or to a reconnecting user. Only the
-- SHA-256 of the `state` sent to Google is stored; the PKCE verifier is sealed (bound to the state
-- hash), so neither can be replayed from a copy of the database.
CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (purpose IN ('invite', 'reconnect')),
    invite_id  TEXT,
    user_id    TEXT,
    verifier   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    -- Exactly the id its purpose needs.
    CHECK ((purpose = 'invite' AND invite_id IS NOT NULL AND user_id IS NULL)
        OR (purpose = 'reconnect' AND user_id IS NOT NULL AND invite_id IS NULL))
);
