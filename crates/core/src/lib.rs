//! Domain types shared by every crewgate crate. No I/O lives here: this crate is the bottom of the
//! dependency graph (see the architecture test in `crates/cli/tests/architecture.rs`).

pub mod ids;
pub mod keys;
pub mod model;
pub mod principal;
pub mod proposal;
pub mod time;
pub mod token;
pub mod url;

pub use ids::{AgentId, IdError, UserId, agent_id_from_email};
pub use keys::{
    DerivedKey, KeyError, KeySource, MasterKey, Purpose, SealContext, SealError, Sealer, StaticKeySource,
};
pub use model::{Agent, AgentKind, AuditEntry, Role, TokenInfo, User, UserStatus};
pub use principal::Principal;
pub use proposal::{Decision, Proposal, ProposalState, canonical_json, fingerprint};
pub use token::{IssuedToken, TokenError, TokenHash, TokenKind};

/// Milliseconds since the Unix epoch; the one time representation stored everywhere so SQLite and
/// Postgres behave identically.
pub type Millis = i64;

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
