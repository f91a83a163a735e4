// WebSessionStore implementation shared by both SQL backends; `include!`d by `sqlite.rs` and
// `postgres.rs` after `shared.rs`.

#[async_trait::async_trait]
impl crate::web_sessions::WebSessionStore for Store_ {
    async fn create_web_session(
        &self,
        hash: &TokenHash,
        token_id: &str,
        csrf: &str,
        expires_at: Millis,
    ) -> crate::Result<()> {
        sqlx::query("INSERT INTO web_sessions (hash, token_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash.as_str())
            .bind(token_id)
            .bind(csrf)
            .bind(now_millis())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn resolve_web_session(
        &self,
        hash: &TokenHash,
        now: Millis,
    ) -> crate::Result<Option<crate::web_sessions::WebSession>> {
        let row = sqlx::query(
            "SELECT w.csrf, w.expires_at AS session_expires_at, t.id, t.kind, t.display, t.label, t.user_id, t.agent_id, t.created_at, t.revoked_at, t.last_used_at \
             FROM web_sessions w JOIN tokens t ON t.id = w.token_id \
             WHERE w.hash = $1 AND w.revoked_at IS NULL AND w.expires_at > $2 \
               AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(hash.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(crate::web_sessions::WebSession {
            token: token_from_row(&row)?,
            csrf: row.try_get("csrf")?,
            expires_at: row.try_get("session_expires_at")?,
        }))
    }

    async fn revoke_web_session(&self, hash: &TokenHash, now: Millis) -> crate::Result<bool> {
        let done = sqlx::query("UPDATE web_sessions SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(hash.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
