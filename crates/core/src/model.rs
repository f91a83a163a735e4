//! Records as the store returns them and the API serialises them. None of them carries a secret.

use crate::Millis;
use crate::ids::{AgentId, UserId};
use crate::token::TokenKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Invited,
    Active,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    Orchestrator,
    Worker,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($ty::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
text_enum!(Role { Admin => "admin", Member => "member" });
text_enum!(UserStatus { Invited => "invited", Active => "active", Suspended => "suspended" });
text_enum!(AgentKind { Orchestrator => "orchestrator", Worker => "worker" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub kind: AgentKind,
    pub owner: Option<UserId>,
    pub name: String,
    /// Persona, model, allow-list and autonomy settings as the config/API gave them.
    pub settings: serde_json::Value,
    pub created_at: Millis,
}

/// A token as lists show it: never the secret, only its display form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub kind: TokenKind,
    pub display: String,
    pub label: Option<String>,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub action: String,
    pub detail: serde_json::Value,
}
