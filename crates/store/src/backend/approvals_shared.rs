// ApprovalStore implementation shared by both SQL backends; `include!`d after `shared.rs` by
// `sqlite.rs` and `postgres.rs`.

fn proposal_context<'a>(id: &'a str, agent: &'a str, field: &'a str) -> SealContext<'a> {
    // The field name is part of the table label so args, summary and result can not be swapped.
    SealContext { table: field, row_id: id, owner: agent }
}

macro_rules! proposal_columns {
    () => {
        "id, agent_id, number, session_id, owner_id, tool, args, fingerprint, summary, state, decision, superseded_by, idempotency_key, result, trace_id, created_at, updated_at, expires_at"
    };
}

impl Store_ {
    fn proposal_from_row(&self, row: &DbRow) -> crate::Result<crewgate_core::Proposal> {
        let id: String = row.try_get("id")?;
        let agent: String = row.try_get("agent_id")?;
        let open_json = |field: &str, sealed: &[u8]| -> crate::Result<serde_json::Value> {
            let plain = self.sealer.open(proposal_context(&id, &agent, field), sealed)?;
            serde_json::from_slice(&plain).map_err(|e| crate::StoreError::Corrupt(format!("proposal {id} {field}: {e}")))
        };
        let args = open_json("proposals.args", &row.try_get::<Vec<u8>, _>("args")?)?;
        let summary = open_json("proposals.summary", &row.try_get::<Vec<u8>, _>("summary")?)?;
        let result = row
            .try_get::<Option<Vec<u8>>, _>("result")?
            .map(|sealed| open_json("proposals.result", &sealed))
            .transpose()?;
        let state_text: String = row.try_get("state")?;
        let decision = row
            .try_get::<Option<String>, _>("decision")?
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| crate::StoreError::Corrupt(format!("proposal {id} decision: {e}")))?;
        Ok(crewgate_core::Proposal {
            number: row.try_get("number")?,
            agent_id: parse_agent_id(agent.clone())?,
            session_id: row.try_get("session_id")?,
            owner_id: row.try_get::<Option<String>, _>("owner_id")?.map(parse_user_id).transpose()?,
            tool: row.try_get("tool")?,
            args,
            fingerprint: row.try_get("fingerprint")?,
            summary: summary.as_str().unwrap_or_default().to_owned(),
            state: crewgate_core::ProposalState::parse(&state_text)
                .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown proposal state {state_text:?}")))?,
            decision,
            superseded_by: row.try_get("superseded_by")?,
            idempotency_key: row.try_get("idempotency_key")?,
            result,
            trace_id: row.try_get("trace_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            expires_at: row.try_get("expires_at")?,
            id,
        })
    }

    fn seal_json(&self, id: &str, agent: &str, field: &str, v: &serde_json::Value) -> crate::Result<Vec<u8>> {
        Ok(self.sealer.seal(proposal_context(id, agent, field), v.to_string().as_bytes())?)
    }
}

fn grant_from_row(row: &DbRow) -> crate::Result<crate::approvals::Grant> {
    let match_text: String = row.try_get("match_args")?;
    let match_args = match parse_json(&match_text)? {
        serde_json::Value::Object(m) => m,
        _ => return Err(crate::StoreError::Corrupt("grant match_args is not an object".into())),
    };
    Ok(crate::approvals::Grant {
        id: row.try_get("id")?,
        agent_id: parse_agent_id(row.try_get("agent_id")?)?,
        action: row.try_get("action")?,
        match_args,
        expires_at: row.try_get("expires_at")?,
        daily_cap: row.try_get("daily_cap")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const MAX_NUMBER_ATTEMPTS: usize = 20;

#[async_trait::async_trait]
impl crate::approvals::ApprovalStore for Store_ {
    async fn create_proposal(&self, p: crate::approvals::NewProposal) -> crate::Result<crewgate_core::Proposal> {
        let id = new_id();
        let now = now_millis();
        let agent = p.agent_id.as_str();
        let fingerprint = crewgate_core::fingerprint(&p.tool, &p.args);
        let args = self.seal_json(&id, agent, "proposals.args", &p.args)?;
        let summary = self.seal_json(&id, agent, "proposals.summary", &serde_json::Value::String(p.summary.clone()))?;
        let idempotency_key = format!("cg-{id}");
        // Numbers are per agent; two concurrent proposals may pick the same one, and the unique
        // constraint sends the loser round again.
        for _ in 0..MAX_NUMBER_ATTEMPTS {
            let number: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM proposals WHERE agent_id = $1")
                .bind(agent)
                .fetch_one(&self.pool)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO proposals (id, agent_id, number, session_id, owner_id, tool, args, fingerprint, summary, state, idempotency_key, trace_id, created_at, updated_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $12, $13)",
            )
            .bind(&id)
            .bind(agent)
            .bind(number)
            .bind(&p.session_id)
            .bind(p.owner_id.as_ref().map(UserId::as_str))
            .bind(&p.tool)
            .bind(&args)
            .bind(&fingerprint)
            .bind(&summary)
            .bind(&idempotency_key)
            .bind(&p.trace_id)
            .bind(now)
            .bind(p.expires_at)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => {
                    return Ok(crewgate_core::Proposal {
                        id,
                        number,
                        agent_id: p.agent_id,
                        session_id: p.session_id,
                        owner_id: p.owner_id,
                        tool: p.tool,
                        args: p.args,
                        fingerprint,
                        summary: p.summary,
                        state: crewgate_core::ProposalState::Pending,
                        decision: None,
                        superseded_by: None,
                        idempotency_key,
                        result: None,
                        trace_id: p.trace_id,
                        created_at: now,
                        updated_at: now,
                        expires_at: p.expires_at,
                    });
                }
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(crate::StoreError::Conflict("could not allocate a proposal number; try again".into()))
    }

    async fn get_proposal(&self, agent: &AgentId, id: &str) -> crate::Result<Option<crewgate_core::Proposal>> {
        let sql = concat!("SELECT ", proposal_columns!(), " FROM proposals WHERE id = $1 AND agent_id = $2");
        let row = sqlx::query(sql).bind(id).bind(agent.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(|r| self.proposal_from_row(r)).transpose()
    }

    async fn get_proposal_by_number(
        &self,
        agent: &AgentId,
        number: i64,
    ) -> crate::Result<Option<crewgate_core::Proposal>> {
        let sql = concat!("SELECT ", proposal_columns!(), " FROM proposals WHERE agent_id = $1 AND number = $2");
        let row = sqlx::query(sql).bind(agent.as_str()).bind(number).fetch_optional(&self.pool).await?;
        row.as_ref().map(|r| self.proposal_from_row(r)).transpose()
    }

    async fn list_proposals(
        &self,
        agent: &AgentId,
        state: Option<crewgate_core::ProposalState>,
        limit: i64,
    ) -> crate::Result<Vec<crewgate_core::Proposal>> {
        let rows = match state {
            Some(s) => {
                let sql = concat!(
                    "SELECT ",
                    proposal_columns!(),
                    " FROM proposals WHERE agent_id = $1 AND state = $2 ORDER BY number DESC LIMIT $3"
                );
                sqlx::query(sql).bind(agent.as_str()).bind(s.as_str()).bind(limit).fetch_all(&self.pool).await?
            }
            None => {
                let sql =
                    concat!("SELECT ", proposal_columns!(), " FROM proposals WHERE agent_id = $1 ORDER BY number DESC LIMIT $2");
                sqlx::query(sql).bind(agent.as_str()).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(|r| self.proposal_from_row(r)).collect()
    }

    async fn proposals_in_state(
        &self,
        state: crewgate_core::ProposalState,
    ) -> crate::Result<Vec<crewgate_core::Proposal>> {
        let sql = concat!("SELECT ", proposal_columns!(), " FROM proposals WHERE state = $1 ORDER BY created_at");
        let rows = sqlx::query(sql).bind(state.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.proposal_from_row(r)).collect()
    }

    async fn transition_proposal(
        &self,
        agent: &AgentId,
        id: &str,
        t: crate::approvals::Transition,
    ) -> crate::Result<Option<crewgate_core::Proposal>> {
        if !t.from.can_move_to(t.to) {
            return Err(crate::StoreError::Conflict(format!("a proposal cannot move from {} to {}", t.from, t.to)));
        }
        let now = now_millis();
        let decision = t
            .decision
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| crate::StoreError::Corrupt(format!("decision does not serialise: {e}")))?;
        let result = t.result.as_ref().map(|r| self.seal_json(id, agent.as_str(), "proposals.result", r)).transpose()?;
        // One conditional UPDATE: of two concurrent approvals exactly one sees rows_affected = 1.
        let done = sqlx::query(
            "UPDATE proposals SET state = $1, updated_at = $2, \
               decision = COALESCE($3, decision), superseded_by = COALESCE($4, superseded_by), result = COALESCE($5, result) \
             WHERE id = $6 AND agent_id = $7 AND state = $8 AND ($9 IS NULL OR fingerprint = $9)",
        )
        .bind(t.to.as_str())
        .bind(now)
        .bind(decision)
        .bind(&t.superseded_by)
        .bind(result)
        .bind(id)
        .bind(agent.as_str())
        .bind(t.from.as_str())
        .bind(&t.fingerprint)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        crate::approvals::ApprovalStore::get_proposal(self, agent, id).await
    }

    async fn expire_proposals(&self, now: Millis) -> crate::Result<Vec<crewgate_core::Proposal>> {
        let sql = concat!(
            "SELECT ",
            proposal_columns!(),
            " FROM proposals WHERE state = 'pending' AND expires_at <= $1 ORDER BY created_at"
        );
        let rows = sqlx::query(sql).bind(now).fetch_all(&self.pool).await?;
        let mut expired = Vec::new();
        for row in &rows {
            let p = self.proposal_from_row(row)?;
            let t = crate::approvals::Transition::new(crewgate_core::ProposalState::Pending, crewgate_core::ProposalState::Expired);
            if let Some(moved) = crate::approvals::ApprovalStore::transition_proposal(self, &p.agent_id, &p.id, t).await? {
                expired.push(moved);
            }
        }
        Ok(expired)
    }

    async fn create_grant(&self, g: crate::approvals::NewGrant) -> crate::Result<crate::approvals::Grant> {
        let id = new_id();
        let now = now_millis();
        let match_text = serde_json::Value::Object(g.match_args.clone()).to_string();
        sqlx::query(
            "INSERT INTO grants (id, agent_id, action, match_args, expires_at, daily_cap, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(g.agent_id.as_str())
        .bind(&g.action)
        .bind(&match_text)
        .bind(g.expires_at)
        .bind(g.daily_cap)
        .bind(&g.created_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(crate::approvals::Grant {
            id,
            agent_id: g.agent_id,
            action: g.action,
            match_args: g.match_args,
            expires_at: g.expires_at,
            daily_cap: g.daily_cap,
            created_by: g.created_by,
            created_at: now,
            revoked_at: None,
        })
    }

    async fn list_grants(&self, agent: &AgentId) -> crate::Result<Vec<crate::approvals::Grant>> {
        let rows = sqlx::query(
            "SELECT id, agent_id, action, match_args, expires_at, daily_cap, created_by, created_at, revoked_at FROM grants WHERE agent_id = $1 ORDER BY created_at, id",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn revoke_grant(&self, agent: &AgentId, id: &str, now: Millis) -> crate::Result<bool> {
        let done = sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND agent_id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .bind(agent.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn grant_uses_since(&self, grant_id: &str, since: Millis) -> crate::Result<i64> {
        // The decision column holds `{"kind":"auto","grant_id":"…"}`; match on the serialised form.
        let pattern = format!("%\"grant_id\":\"{grant_id}\"%");
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM proposals WHERE decision LIKE $1 AND created_at >= $2")
            .bind(pattern)
            .bind(since)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn verify_audit_chain(&self) -> crate::Result<crate::approvals::ChainReport> {
        let rows = sqlx::query(
            "SELECT id, at, actor, user_id, agent_id, action, detail, prev_hash, hash FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut prev = String::new();
        let mut first_bad = None;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let expected = audit_hash(
                &prev,
                id,
                row.try_get("at")?,
                row.try_get("actor")?,
                row.try_get("user_id")?,
                row.try_get("agent_id")?,
                row.try_get("action")?,
                row.try_get("detail")?,
            );
            let stored_prev: String = row.try_get("prev_hash")?;
            let stored: String = row.try_get("hash")?;
            if stored_prev != prev || stored != expected {
                first_bad = Some(id);
                break;
            }
            prev = stored;
        }
        Ok(crate::approvals::ChainReport { entries: i64::try_from(rows.len()).unwrap_or(i64::MAX), first_bad })
    }
}

/// Hash of one audit entry chained to its predecessor. Fields are length-prefixed so no two
/// different entries serialise alike.
#[allow(clippy::too_many_arguments)]
fn audit_hash(
    prev: &str,
    id: i64,
    at: i64,
    actor: &str,
    user_id: Option<&str>,
    agent_id: Option<&str>,
    action: &str,
    detail: &str,
) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [prev, &id.to_string(), &at.to_string(), actor, user_id.unwrap_or("\u{0}"), agent_id.unwrap_or("\u{0}"), action, detail] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}
