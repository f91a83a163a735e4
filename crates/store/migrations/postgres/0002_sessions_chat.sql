-- crewgate schema v2 (PostgreSQL): chat sessions keyed by API clients, and tool-call metadata of messages.
-- `client_key` is a hash of the OpenAI `user` field / `X-Crewgate-Session` header; one live session
-- per (agent, key), a deleted session frees its key.
ALTER TABLE sessions ADD COLUMN client_key TEXT;
CREATE UNIQUE INDEX sessions_client_key ON sessions(agent_id, client_key)
    WHERE client_key IS NOT NULL AND deleted_at IS NULL;

-- Sealed JSON {tool_calls, tool_call_id, tool_name}; NULL for plain text messages.
ALTER TABLE messages ADD COLUMN meta BYTEA;
