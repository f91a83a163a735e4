// Store implementation shared by both SQL backends; `include!`d by `sqlite.rs` and `postgres.rs`,
// each of which defines `Db`, `BACKEND` and a struct with `pool` and `sealer` fields.

use super::{
    conflict_or, new_id, parse_agent_id, parse_json, parse_kind, parse_role, parse_status,
    parse_token_kind, parse_user_id,
};
use crate::{AuditScope, Message, NewAgent, NewAudit, NewToken, NewUser, Session, Store, TokenScope};
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

fn secret_context<'a>(owner: &'a str, name: &'a str) -> SealContext<'a> {
    SealContext { table: "secrets", row_id: name, owner }
}

impl std::fmt::Debug for Store_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(stringify!(Store_)).field("backend", &BACKEND).finish_non_exhaustive()
    }
}

impl Store_ {
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
        let rows = sqlx::query(
            "SELECT id, agent_id, title, created_at, updated_at FROM sessions WHERE agent_id = $1 AND deleted_at IS NULL ORDER BY updated_at DESC, id DESC",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn get_session(&self, agent: &AgentId, id: &str) -> crate::Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT id, agent_id, title, created_at, updated_at FROM sessions WHERE id = $1 AND agent_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(agent.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn append_message(
        &self,
        agent: &AgentId,
        session: &str,
        role: &str,
        body: &str,
    ) -> crate::Result<Message> {
        let id = new_id();
        let now = now_millis();
        let sealed = self.sealer.seal(message_context(&id, agent), body.as_bytes())?;
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
        sqlx::query(
            "INSERT INTO messages (id, session_id, agent_id, role, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(session)
        .bind(agent.as_str())
        .bind(role)
        .bind(&sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Message { id, session_id: session.to_owned(), role: role.to_owned(), body: body.to_owned(), created_at: now })
    }

    async fn list_messages(&self, agent: &AgentId, session: &str) -> crate::Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT id, session_id, role, body, created_at FROM messages WHERE session_id = $1 AND agent_id = $2 ORDER BY id",
        )
        .bind(session)
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let sealed: Vec<u8> = row.try_get("body")?;
                let plain = self.sealer.open(message_context(&id, agent), &sealed)?;
                let body = String::from_utf8(plain)
                    .map_err(|e| crate::StoreError::Corrupt(format!("message {id} is not UTF-8: {e}")))?;
                Ok(Message {
                    session_id: row.try_get("session_id")?,
                    role: row.try_get("role")?,
                    created_at: row.try_get("created_at")?,
                    id,
                    body,
                })
            })
            .collect()
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
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, user_id, agent_id, action, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(now_millis())
        .bind(&entry.actor)
        .bind(entry.user_id.as_ref().map(UserId::as_str))
        .bind(entry.agent_id.as_ref().map(AgentId::as_str))
        .bind(&entry.action)
        .bind(entry.detail.to_string())
        .fetch_one(&self.pool)
        .await?;
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
