//! Who is calling. Resolved from a bearer token before any handler touches state.

use crate::ids::{AgentId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holder of an admin token (`cga_`): may see and manage everything.
    Admin { token_id: String },
    /// Holder of a user token (`cgu_`): may only see its own user record and its own agent.
    User { user_id: UserId, agent_id: AgentId, token_id: String },
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin { .. })
    }

    pub fn token_id(&self) -> &str {
        match self {
            Principal::Admin { token_id } | Principal::User { token_id, .. } => token_id,
        }
    }

    /// True when this principal may see the given agent. Users see only their own agent.
    pub fn can_see_agent(&self, agent: &AgentId) -> bool {
        match self {
            Principal::Admin { .. } => true,
            Principal::User { agent_id, .. } => agent_id == agent,
        }
    }

    pub fn can_see_user(&self, user: &UserId) -> bool {
        match self {
            Principal::Admin { .. } => true,
            Principal::User { user_id, .. } => user_id == user,
        }
    }

    /// Short description for the audit log (never contains a secret).
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin { token_id } => format!("admin:{token_id}"),
            Principal::User { user_id, .. } => format!("user:{user_id}"),
        }
    }
}
