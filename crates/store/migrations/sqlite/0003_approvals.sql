-- Proposals (durable approvals bound to a fingerprint), autonomy grants, and the audit hash chain.
CREATE TABLE proposals (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    number          INTEGER NOT NULL,
    session_id      TEXT,
    owner_id        TEXT,
    tool            TEXT NOT NULL,
    args            BLOB NOT NULL,
    fingerprint     TEXT NOT NULL,
    summary         BLOB NOT NULL,
    state           TEXT NOT NULL,
    decision        TEXT,
    superseded_by   TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    result          BLOB,
    trace_id        TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    UNIQUE (agent_id, number)
);
CREATE INDEX proposals_agent_state ON proposals(agent_id, state);
CREATE INDEX proposals_expiry ON proposals(state, expires_at);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    action      TEXT NOT NULL,
    match_args  TEXT NOT NULL,
    expires_at  INTEGER,
    daily_cap   INTEGER,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX grants_agent ON grants(agent_id);

ALTER TABLE audit_log ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN hash TEXT NOT NULL DEFAULT '';
-- One row that every audit append locks first, so the chain never forks under concurrency.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 0, '');
