// OnboardingStore implementation shared by both SQL backends; `include!`d by `sqlite.rs` and
// `postgres.rs` after `shared.rs` (whose imports and helpers it uses).
//
// Every "use" (accepting an invite, revoking or resending it, consuming an OAuth `state`) is one
// conditional UPDATE whose WHERE clause re-checks liveness, so of two concurrent callers exactly
// one sees a changed row.

macro_rules! invite_columns {
    () => {
        "id, email, name, agent_id, origin, created_by, created_at, expires_at, used_at, revoked_at, user_id, sent_count"
    };
}

fn invite_from_row(row: &DbRow) -> crate::Result<crate::onboarding::Invite> {
    let origin: String = row.try_get("origin")?;
    Ok(crate::onboarding::Invite {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        agent_id: parse_agent_id(row.try_get("agent_id")?)?,
        origin: crate::onboarding::InviteOrigin::parse(&origin)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown invite origin {origin:?}")))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        user_id: row.try_get::<Option<String>, _>("user_id")?.map(parse_user_id).transpose()?,
        sent_count: row.try_get("sent_count")?,
    })
}

/// The PKCE verifier is bound to its `state` row: a sealed verifier copied to another row does
/// not open.
fn oauth_state_context(state_hash: &str) -> SealContext<'_> {
    SealContext { table: "oauth_states", row_id: state_hash, owner: "oauth" }
}

const INVITE_PURPOSE: &str = "invite";
const RECONNECT_PURPOSE: &str = "reconnect";

#[async_trait::async_trait]
impl crate::onboarding::OnboardingStore for Store_ {
    async fn create_invite(&self, invite: crate::onboarding::NewInvite) -> crate::Result<crate::onboarding::Invite> {
        let id = crewgate_core::token::random_hex(16);
        let now = now_millis();
        let email = invite.email.trim().to_lowercase();
        let inserted = sqlx::query(
            "INSERT INTO invites (id, token_hash, email, name, agent_id, origin, created_by, created_at, expires_at, sent_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)",
        )
        .bind(&id)
        .bind(invite.token_hash.as_str())
        .bind(&email)
        .bind(&invite.name)
        .bind(invite.agent_id.as_str())
        .bind(invite.origin.as_str())
        .bind(&invite.created_by)
        .bind(now)
        .bind(invite.expires_at)
        .execute(&self.pool)
        .await;
        if let Err(e) = inserted {
            let err = conflict_or(e, || format!("agent id {} is already reserved by an invite", invite.agent_id));
            // The token hash is unique too; only blame the agent id when it really is reserved.
            if matches!(err, crate::StoreError::Conflict(_))
                && !crate::onboarding::OnboardingStore::invite_reserves_agent(self, &invite.agent_id).await?
            {
                return Err(crate::StoreError::Conflict("this invite token is already registered".to_owned()));
            }
            return Err(err);
        }
        Ok(crate::onboarding::Invite {
            id,
            email,
            name: invite.name,
            agent_id: invite.agent_id,
            origin: invite.origin,
            created_by: invite.created_by,
            created_at: now,
            expires_at: invite.expires_at,
            used_at: None,
            revoked_at: None,
            user_id: None,
            sent_count: 1,
        })
    }

    async fn get_invite(&self, id: &str) -> crate::Result<Option<crate::onboarding::Invite>> {
        let sql = concat!("SELECT ", invite_columns!(), " FROM invites WHERE id = $1");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    async fn find_invite_by_token(&self, hash: &TokenHash) -> crate::Result<Option<crate::onboarding::Invite>> {
        let sql = concat!("SELECT ", invite_columns!(), " FROM invites WHERE token_hash = $1");
        let row = sqlx::query(sql).bind(hash.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    async fn list_invites(&self) -> crate::Result<Vec<crate::onboarding::Invite>> {
        let sql = concat!("SELECT ", invite_columns!(), " FROM invites ORDER BY created_at DESC, id DESC");
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(invite_from_row).collect()
    }

    async fn invite_reserves_agent(&self, agent_id: &AgentId) -> crate::Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invites WHERE agent_id = $1")
            .bind(agent_id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    async fn revoke_invite(&self, id: &str, now: Millis) -> crate::Result<bool> {
        let done = sqlx::query(
            "UPDATE invites SET revoked_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn reissue_invite(
        &self,
        id: &str,
        token_hash: TokenHash,
        expires_at: Millis,
        _now: Millis,
    ) -> crate::Result<Option<crate::onboarding::Invite>> {
        let sql = concat!(
            "UPDATE invites SET token_hash = $1, expires_at = $2, sent_count = sent_count + 1 \
             WHERE id = $3 AND used_at IS NULL AND revoked_at IS NULL RETURNING ",
            invite_columns!()
        );
        let row = sqlx::query(sql)
            .bind(token_hash.as_str())
            .bind(expires_at)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || "this invite token is already registered".to_owned()))?;
        row.as_ref().map(invite_from_row).transpose()
    }

    async fn use_invite(&self, id: &str, now: Millis) -> crate::Result<bool> {
        let done = sqlx::query(
            "UPDATE invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_invite(&self, id: &str) -> crate::Result<()> {
        let done = sqlx::query("UPDATE invites SET used_at = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(format!("invite {id}")));
        }
        Ok(())
    }

    async fn set_invite_user(&self, id: &str, user: &UserId) -> crate::Result<()> {
        let done = sqlx::query("UPDATE invites SET user_id = $1 WHERE id = $2")
            .bind(user.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(format!("invite {id}")));
        }
        Ok(())
    }

    async fn create_oauth_state(&self, state: crate::onboarding::NewOAuthState) -> crate::Result<()> {
        let hash = state.state_hash.as_str();
        let verifier = secrecy::ExposeSecret::expose_secret(&state.verifier);
        let sealed = self.sealer.seal(oauth_state_context(hash), verifier.as_bytes())?;
        let (purpose, invite_id, user_id) = match &state.purpose {
            crate::onboarding::OAuthPurpose::Invite { invite_id } => (INVITE_PURPOSE, Some(invite_id.as_str()), None),
            crate::onboarding::OAuthPurpose::Reconnect { user_id } => {
                (RECONNECT_PURPOSE, None, Some(user_id.as_str()))
            }
        };
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, purpose, invite_id, user_id, verifier, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(purpose)
        .bind(invite_id)
        .bind(user_id)
        .bind(&sealed)
        .bind(now_millis())
        .bind(state.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || "this OAuth state is already registered".to_owned()))?;
        Ok(())
    }

    async fn take_oauth_state(
        &self,
        hash: &TokenHash,
        now: Millis,
    ) -> crate::Result<Option<crate::onboarding::OAuthState>> {
        // Marking it used and reading it back is one statement: of two concurrent callbacks with
        // the same `state`, only one gets a row.
        let row = sqlx::query(
            "UPDATE oauth_states SET used_at = $1 WHERE state_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING purpose, invite_id, user_id, verifier",
        )
        .bind(now)
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let purpose: String = row.try_get("purpose")?;
        let invite_id: Option<String> = row.try_get("invite_id")?;
        let user_id: Option<String> = row.try_get("user_id")?;
        let purpose = match (purpose.as_str(), invite_id, user_id) {
            (INVITE_PURPOSE, Some(invite_id), None) => crate::onboarding::OAuthPurpose::Invite { invite_id },
            (RECONNECT_PURPOSE, None, Some(user_id)) => {
                crate::onboarding::OAuthPurpose::Reconnect { user_id: parse_user_id(user_id)? }
            }
            _ => {
                return Err(crate::StoreError::Corrupt(format!(
                    "OAuth state with purpose {purpose:?} has inconsistent ids"
                )));
            }
        };
        let sealed: Vec<u8> = row.try_get("verifier")?;
        let plain = self.sealer.open(oauth_state_context(hash.as_str()), &sealed)?;
        let verifier = String::from_utf8(plain)
            .map_err(|e| crate::StoreError::Corrupt(format!("OAuth state verifier is not UTF-8: {e}")))?;
        Ok(Some(crate::onboarding::OAuthState { purpose, verifier: secrecy::SecretString::from(verifier) }))
    }
}
