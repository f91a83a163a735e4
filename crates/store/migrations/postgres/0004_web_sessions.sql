-- Browser sessions: a dashboard token is exchanged once for an HttpOnly cookie. Only the cookie's
-- SHA-256 is stored; the session dies with its token.
CREATE TABLE web_sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES tokens(id),
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX web_sessions_token ON web_sessions(token_id);
