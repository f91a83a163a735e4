// Store implementation shared by both SQL backends; `include!`d by `sqlite.rs` and `postgres.rs`,
// each of which defines `Db`, `BACKEND` and a struct with `pool` and `sealer` fields.

use super::{
    MessageMeta, conflict_or, new_id, parse_agent_id, parse_json, parse_kind, parse_role, parse_status,
    parse_token_kind, parse_user_id,
};
use crate::{
    AuditScope, Message, NewAgent, NewAudit, NewMessage, NewToken, NewUser, Session, Store, TokenScope,
};
use crewgate_core::{
    Agent, AgentId, AuditEntry, Millis, SealContext, TokenHash, TokenInfo, TokenKind, User, UserId,
    UserStatus, now_millis,
};
use sqlx::Row as _;

type DbRow = <Db as sqlx::Database>::Row;

// Column lists as macros so `concat!` builds `&'static str` queries (sqlx refuses dynamic SQL).
macro_rules! token_columns {
    () => {
        "id, kind, display, label, user_id, agent_id, created_at, revoked_at, last_used_at"
    };
}
macro_rules! agent_columns {
    () => {
        "id, kind, owner_id, name, settings, created_at"
    };
}
macro_rules! user_columns {
    () => {
        "id, email, name, role, status, created_at"
    };
}
macro_rules! session_columns {
    () => {
        "id, agent_id, title, created_at, updated_at"
    };
}
macro_rules! audit_columns {
    () => {
        "id, at, actor, user_id, agent_id, action, detail"
    };
}

fn user_from_row(row: &DbRow) -> crate::Result<User> {
    Ok(User {
        id: parse_user_id(row.try_get("id")?)?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: parse_role(row.try_get::<&str, _>("role")?)?,
        status: parse_status(row.try_get::<&str, _>("status")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn agent_from_row(row: &DbRow) -> crate::Result<Agent> {
    Ok(Agent {
        id: parse_agent_id(row.try_get("id")?)?,
        kind: parse_kind(row.try_get::<&str, _>("kind")?)?,
        owner: row.try_get::<Option<String>, _>("owner_id")?.map(parse_user_id).transpose()?,
        name: row.try_get("name")?,
        settings: parse_json(row.try_get::<&str, _>("settings")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &DbRow) -> crate::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        kind: parse_token_kind(row.try_get::<&str, _>("kind")?)?,
        display: row.try_get("display")?,
        label: row.try_get("label")?,
        user_id: row.try_get::<Option<String>, _>("user_id")?.map(parse_user_id).transpose()?,
        agent_id: row.try_get::<Option<String>, _>("agent_id")?.map(parse_agent_id).transpose()?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn session_from_row(row: &DbRow) -> crate::Result<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        agent_id: parse_agent_id(row.try_get("agent_id")?)?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message_context<'a>(id: &'a str, agent: &'a AgentId) -> SealContext<'a> {
    SealContext { table: "messages", row_id: id, owner: agent.as_str() }
}

fn message_meta_context<'a>(id: &'a str, agent: &'a AgentId) -> SealContext<'a> {
    SealContext { table: "messages.meta", row_id: id, owner: agent.as_str() }
}

fn secret_context<'a>(owner: &'a str, name: &'a str) -> SealContext<'a> {
    SealContext { table: "secrets", row_id: name, owner }
}

impl std::fmt::Debug for Store_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(stringify!(Store_)).field("backend", &BACKEND).finish_non_exhaustive()
    }
}

impl Store_ {
    /// Seals and inserts `(role, body, meta)` rows into a live session of `agent`, in one
    /// transaction that also bumps the session's `updated_at`.
    async fn append_rows(
        &self,
        agent: &AgentId,
        session: &str,
        rows: &[(&str, &str, Option<&[u8]>)],
    ) -> crate::Result<Vec<Message>> {
        let now = now_millis();
        let mut prepared = Vec::with_capacity(rows.len());
        for (_, body, meta) in rows {
            let id = new_id();
            let sealed = self.sealer.seal(message_context(&id, agent), body.as_bytes())?;
            let sealed_meta =
                meta.map(|m| self.sealer.seal(message_meta_context(&id, agent), m)).transpose()?;
            prepared.push((id, sealed, sealed_meta));
        }
        let mut tx = self.pool.begin().await?;
        // The session must belong to this agent: the scoping id is checked in the same statement.
        let touched = sqlx::query("UPDATE sessions SET updated_at = $1 WHERE id = $2 AND agent_id = $3 AND deleted_at IS NULL")
            .bind(now)
            .bind(session)
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(format!("session {session}")));
        }
        for ((id, sealed, sealed_meta), (role, ..)) in prepared.iter().zip(rows) {
            sqlx::query(
                "INSERT INTO messages (id, session_id, agent_id, role, body, meta, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(session)
            .bind(agent.as_str())
            .bind(*role)
            .bind(sealed)
            .bind(sealed_meta.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for ((id, ..), (role, body, meta)) in prepared.into_iter().zip(rows) {
            let meta = meta.map(|m| MessageMeta::parse(m, &id)).transpose()?.unwrap_or_default();
            out.push(Message {
                id,
                session_id: session.to_owned(),
                role: (*role).to_owned(),
                body: (*body).to_owned(),
                created_at: now,
                tool_calls: meta.tool_calls,
                tool_call_id: meta.tool_call_id,
                tool_name: meta.tool_name,
            });
        }
        Ok(out)
    }

    fn message_from_row(&self, row: &DbRow, agent: &AgentId) -> crate::Result<Message> {
        let id: String = row.try_get("id")?;
        let sealed: Vec<u8> = row.try_get("body")?;
        let plain = self.sealer.open(message_context(&id, agent), &sealed)?;
        let body = String::from_utf8(plain)
            .map_err(|e| crate::StoreError::Corrupt(format!("message {id} is not UTF-8: {e}")))?;
        let meta = match row.try_get::<Option<Vec<u8>>, _>("meta")? {
            Some(sealed) => MessageMeta::parse(&self.sealer.open(message_meta_context(&id, agent), &sealed)?, &id)?,
            None => MessageMeta::default(),
        };
        Ok(Message {
            session_id: row.try_get("session_id")?,
            role: row.try_get("role")?,
            created_at: row.try_get("created_at")?,
            tool_calls: meta.tool_calls,
            tool_call_id: meta.tool_call_id,
            tool_name: meta.tool_name,
            id,
            body,
        })
    }

    /// Records the key check value on first open; afterwards refuses a different key.
    async fn check_key(&self, check: &str) -> crate::Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING")
            .bind(check)
            .execute(&self.pool)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_one(&self.pool)
            .await?;
        if subtle::ConstantTimeEq::ct_eq(stored.as_bytes(), check.as_bytes()).into() {
            Ok(())
        } else {
            Err(crate::StoreError::WrongMasterKey)
        }
    }
}

#[async_trait::async_trait]
impl Store for Store_ {
    fn backend(&self) -> crate::Backend {
        BACKEND
    }

    async fn ping(&self) -> crate::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser) -> crate::Result<User> {
        let id = UserId::generate();
        let now = now_millis();
        let email = user.email.trim().to_lowercase();
        sqlx::query(
            "INSERT INTO users (id, email, name, role, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.as_str())
        .bind(&email)
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("a user with e-mail {email} already exists")))?;
        Ok(User { id, email, name: user.name, role: user.role, status: user.status, created_at: now })
    }

    async fn get_user(&self, id: &UserId) -> crate::Result<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let row = sqlx::query(sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> crate::Result<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
        let row = sqlx::query(sql)
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> crate::Result<Vec<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users ORDER BY id");
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_user_status(&self, id: &UserId, status: UserStatus) -> crate::Result<()> {
        let done = sqlx::query("UPDATE users SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    async fn create_agent(&self, agent: NewAgent) -> crate::Result<Agent> {
        let now = now_millis();
        let settings = agent.settings.to_string();
        sqlx::query(
            "INSERT INTO agents (id, kind, owner_id, name, settings, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(agent.id.as_str())
        .bind(agent.kind.as_str())
        .bind(agent.owner.as_ref().map(UserId::as_str))
        .bind(&agent.name)
        .bind(&settings)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("agent id {} is already taken", agent.id)))?;
        Ok(Agent {
            id: agent.id,
            kind: agent.kind,
            owner: agent.owner,
            name: agent.name,
            settings: agent.settings,
            created_at: now,
        })
    }

    async fn get_agent(&self, id: &AgentId) -> crate::Result<Option<Agent>> {
        let sql = concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self) -> crate::Result<Vec<Agent>> {
        let sql = concat!("SELECT ", agent_columns!(), " FROM agents WHERE deleted_at IS NULL ORDER BY id");
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn count_agents(&self) -> crate::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn agent_id_taken(&self, id: &AgentId) -> crate::Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    async fn delete_agent(&self, id: &AgentId) -> crate::Result<bool> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE agents SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn worker_of_user(&self, user: &UserId) -> crate::Result<Option<Agent>> {
        let sql = concat!("SELECT ", agent_columns!(), " FROM agents WHERE owner_id = $1 AND kind = 'worker' AND deleted_at IS NULL ORDER BY created_at LIMIT 1");
        let row = sqlx::query(sql).bind(user.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn insert_token(&self, token: NewToken) -> crate::Result<TokenInfo> {
        insert_token_with(&self.pool, token, now_millis()).await
    }

    async fn resolve_token(&self, hash: &TokenHash, now: Millis) -> crate::Result<Option<TokenInfo>> {
        let sql = concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)");
        let row = sqlx::query(sql).bind(hash.as_str()).bind(now).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn get_token(&self, id: &str) -> crate::Result<Option<TokenInfo>> {
        let sql = concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, scope: TokenScope) -> crate::Result<Vec<TokenInfo>> {
        let rows = match scope {
            TokenScope::All => {
                let sql = concat!("SELECT ", token_columns!(), " FROM tokens ORDER BY created_at, id");
                sqlx::query(sql).fetch_all(&self.pool).await?
            }
            TokenScope::User(user) => {
                let sql = concat!("SELECT ", token_columns!(), " FROM tokens WHERE user_id = $1 ORDER BY created_at, id");
                sqlx::query(sql).bind(user.as_str()).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, now: Millis) -> crate::Result<bool> {
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_token(&self, old_id: &str, replacement: NewToken, now: Millis) -> crate::Result<TokenInfo> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(old_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(format!("live token {old_id}")));
        }
        let info = insert_token_with(&mut *tx, replacement, now).await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn count_live_tokens(&self, kind: TokenKind) -> crate::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE kind = $1 AND revoked_at IS NULL")
            .bind(kind.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_session(&self, agent: &AgentId, title: &str) -> crate::Result<Session> {
        let id = new_id();
        let now = now_millis();
        sqlx::query(
            "INSERT INTO sessions (id, agent_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(agent.as_str())
        .bind(title)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(Session { id, agent_id: agent.clone(), title: title.to_owned(), created_at: now, updated_at: now })
    }

    async fn list_sessions(&self, agent: &AgentId) -> crate::Result<Vec<Session>> {
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE agent_id = $1 AND deleted_at IS NULL ORDER BY updated_at DESC, id DESC");
        let rows = sqlx::query(sql).bind(agent.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn get_session(&self, agent: &AgentId, id: &str) -> crate::Result<Option<Session>> {
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = $1 AND agent_id = $2 AND deleted_at IS NULL");
        let row = sqlx::query(sql).bind(id).bind(agent.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn append_message(
        &self,
        agent: &AgentId,
        session: &str,
        role: &str,
        body: &str,
    ) -> crate::Result<Message> {
        let mut out = self.append_rows(agent, session, &[(role, body, None)]).await?;
        out.pop().ok_or_else(|| crate::StoreError::Corrupt("append returned no message".into()))
    }

    async fn list_messages(&self, agent: &AgentId, session: &str) -> crate::Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT m.id, m.session_id, m.role, m.body, m.meta, m.created_at FROM messages m JOIN sessions s ON s.id = m.session_id AND s.agent_id = m.agent_id WHERE m.session_id = $1 AND m.agent_id = $2 AND s.deleted_at IS NULL ORDER BY m.id",
        )
        .bind(session)
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| self.message_from_row(row, agent)).collect()
    }

    async fn recent_messages(&self, agent: &AgentId, session: &str, limit: i64) -> crate::Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT m.id, m.session_id, m.role, m.body, m.meta, m.created_at FROM messages m JOIN sessions s ON s.id = m.session_id AND s.agent_id = m.agent_id WHERE m.session_id = $1 AND m.agent_id = $2 AND s.deleted_at IS NULL ORDER BY m.id DESC LIMIT $3",
        )
        .bind(session)
        .bind(agent.as_str())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows.iter().map(|row| self.message_from_row(row, agent)).collect::<crate::Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    async fn append_messages(
        &self,
        agent: &AgentId,
        session: &str,
        messages: &[NewMessage],
    ) -> crate::Result<Vec<Message>> {
        let metas = messages.iter().map(MessageMeta::of).collect::<crate::Result<Vec<_>>>()?;
        let rows: Vec<(&str, &str, Option<&[u8]>)> = messages
            .iter()
            .zip(&metas)
            .map(|(m, meta)| (m.role.as_str(), m.body.as_str(), meta.as_deref()))
            .collect();
        self.append_rows(agent, session, &rows).await
    }

    async fn rename_session(&self, agent: &AgentId, id: &str, title: &str) -> crate::Result<Option<Session>> {
        let done = sqlx::query(
            "UPDATE sessions SET title = $1, updated_at = $2 WHERE id = $3 AND agent_id = $4 AND deleted_at IS NULL",
        )
        .bind(title)
        .bind(now_millis())
        .bind(id)
        .bind(agent.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_session(agent, id).await
    }

    async fn delete_session(&self, agent: &AgentId, id: &str) -> crate::Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET deleted_at = $1 WHERE id = $2 AND agent_id = $3 AND deleted_at IS NULL",
        )
        .bind(now_millis())
        .bind(id)
        .bind(agent.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn session_for_key(&self, agent: &AgentId, key: &str, title: &str) -> crate::Result<Session> {
        let find = concat!("SELECT ", session_columns!(), " FROM sessions WHERE agent_id = $1 AND client_key = $2 AND deleted_at IS NULL");
        if let Some(row) = sqlx::query(find).bind(agent.as_str()).bind(key).fetch_optional(&self.pool).await? {
            return session_from_row(&row);
        }
        // A concurrent caller may insert the same key first; the partial unique index turns the
        // loser's insert into a no-op and both read the winner's row.
        let now = now_millis();
        sqlx::query(
            "INSERT INTO sessions (id, agent_id, title, created_at, updated_at, client_key) VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(new_id())
        .bind(agent.as_str())
        .bind(title)
        .bind(now)
        .bind(key)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(find).bind(agent.as_str()).bind(key).fetch_optional(&self.pool).await?;
        match row {
            Some(row) => session_from_row(&row),
            None => Err(crate::StoreError::Conflict(format!(
                "the session for this client key of agent {agent} was deleted while it was being created; try again"
            ))),
        }
    }

    async fn put_secret(&self, owner: &str, name: &str, value: &secrecy::SecretString) -> crate::Result<()> {
        let sealed = self.sealer.seal(secret_context(owner, name), secrecy::ExposeSecret::expose_secret(value).as_bytes())?;
        sqlx::query(
            "INSERT INTO secrets (owner, name, value, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (owner, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(owner)
        .bind(name)
        .bind(&sealed)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_secret(&self, owner: &str, name: &str) -> crate::Result<Option<secrecy::SecretString>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM secrets WHERE owner = $1 AND name = $2")
            .bind(owner)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(sealed) = sealed else { return Ok(None) };
        let plain = self.sealer.open(secret_context(owner, name), &sealed)?;
        let text = String::from_utf8(plain)
            .map_err(|e| crate::StoreError::Corrupt(format!("secret {name} is not UTF-8: {e}")))?;
        Ok(Some(secrecy::SecretString::from(text)))
    }

    async fn append_audit(&self, entry: NewAudit) -> crate::Result<i64> {
        let at = now_millis();
        let detail = entry.detail.to_string();
        let user = entry.user_id.as_ref().map(UserId::as_str);
        let agent = entry.agent_id.as_ref().map(AgentId::as_str);
        let mut tx = self.pool.begin().await?;
        // Writing the head row first takes the write lock (SQLite) or the row lock (PostgreSQL),
        // so concurrent appends line up and the hash chain never forks.
        let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, last_hash")
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = head.try_get("seq")?;
        let prev: String = head.try_get("last_hash")?;
        let hash = audit_hash(&prev, id, at, &entry.actor, user, agent, &entry.action, &detail);
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, user_id, agent_id, action, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(at)
        .bind(&entry.actor)
        .bind(user)
        .bind(agent)
        .bind(&entry.action)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET last_hash = $1 WHERE id = 1").bind(&hash).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_audit(&self, scope: AuditScope, limit: i64) -> crate::Result<Vec<AuditEntry>> {
        let rows = match scope {
            AuditScope::All => {
                let sql = concat!("SELECT ", audit_columns!(), " FROM audit_log ORDER BY id DESC LIMIT $1");
                sqlx::query(sql).bind(limit).fetch_all(&self.pool).await?
            }
            AuditScope::User(user) => {
                let sql = concat!("SELECT ", audit_columns!(), " FROM audit_log WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(sql).bind(user.as_str()).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    user_id: row.try_get::<Option<String>, _>("user_id")?.map(parse_user_id).transpose()?,
                    agent_id: row.try_get::<Option<String>, _>("agent_id")?.map(parse_agent_id).transpose()?,
                    action: row.try_get("action")?,
                    detail: parse_json(row.try_get::<&str, _>("detail")?)?,
                })
            })
            .collect()
    }
}

async fn insert_token_with<'e, E>(executor: E, token: NewToken, now: Millis) -> crate::Result<TokenInfo>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let id = new_id();
    sqlx::query(
        "INSERT INTO tokens (id, kind, hash, display, label, user_id, agent_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(token.kind.as_str())
    .bind(token.hash.as_str())
    .bind(&token.display)
    .bind(&token.label)
    .bind(token.user_id.as_ref().map(UserId::as_str))
    .bind(token.agent_id.as_ref().map(AgentId::as_str))
    .bind(now)
    .bind(token.expires_at)
    .execute(executor)
    .await
    .map_err(|e| conflict_or(e, || "this token is already registered".to_owned()))?;
    Ok(TokenInfo {
        id,
        kind: token.kind,
        display: token.display,
        label: token.label,
        user_id: token.user_id,
        agent_id: token.agent_id,
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    })
}
