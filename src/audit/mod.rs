//! The audit log: every agent action and every access to a citizen's data, written in
//! the same transaction as the action, each event chained to the previous one by an
//! HMAC under a key only the master key unlocks (`chain`), and the chain's head copied
//! out of the database's reach (`anchors`), so that an edited, removed or cut-off event
//! is detected by `eguichet audit verify`.

pub mod anchors;
mod chain;

pub use chain::{
    CHAIN_KEY_INFO, ChainCheck, RechainReport, chain_head, rechain_unkeyed_events, verify_chain,
};

use crate::db::{Conn, DbError};

/// Who did it. Only ids: the log never holds names or contacts.
#[derive(Debug, Clone)]
pub enum Actor {
    Agent(String),
    Citizen(String),
    /// Someone with shell access to the server (the command-line tools).
    Operator,
    /// The service itself (background tasks).
    System,
}

impl Actor {
    fn label(&self) -> String {
        match self {
            Self::Agent(id) => format!("agent:{id}"),
            Self::Citizen(id) => format!("citizen:{id}"),
            Self::Operator => "operator".to_owned(),
            Self::System => "system".to_owned(),
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub tenant_id: Option<String>,
    pub actor: Actor,
    /// Dotted verb, e.g. `document.delivered`.
    pub action: &'static str,
    /// What it happened to, e.g. `document:<id>`.
    pub subject: Option<String>,
    /// Whose data it concerns, so citizens can read their part of the log.
    pub citizen_id: Option<String>,
    /// Extra facts, ids and counts only.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event with no subject, citizen or details yet.
    pub fn new(actor: Actor, action: &'static str) -> Self {
        Self {
            tenant_id: None,
            actor,
            action,
            subject: None,
            citizen_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = Some(tenant_id.to_owned());
        self
    }

    pub fn subject(mut self, kind: &str, id: &str) -> Self {
        self.subject = Some(format!("{kind}:{id}"));
        self
    }

    pub fn citizen(mut self, citizen_id: &str) -> Self {
        self.citizen_id = Some(citizen_id.to_owned());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends `event` to the chain. Call it inside the transaction of the action itself,
/// so the action and its record commit together or not at all. Refused when the
/// database's keys are not open: an event the key cannot vouch for is never written.
pub fn record(conn: &mut Conn, event: AuditEvent) -> Result<i64, DbError> {
    let key = crate::db::chain_key::current()
        .ok_or_else(|| DbError::Unavailable("the audit chain's key is not loaded".to_owned()))?;
    chain::append(conn, &key, event)
}
