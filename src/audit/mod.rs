//! The audit log: every agent action and every access to a citizen's data, written in
//! the same transaction as the action, each event chained to the previous one by a
//! SHA-256 hash so that a removed or edited row is detected by `eguichet audit verify`.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::schema::{audit_chain_head, audit_events};
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

#[derive(Queryable, Insertable)]
#[diesel(table_name = audit_events)]
struct EventRow {
    seq: i64,
    occurred_at: chrono::NaiveDateTime,
    tenant_id: Option<String>,
    actor: String,
    action: String,
    subject: Option<String>,
    citizen_id: Option<String>,
    details: String,
    prev_hash: String,
    hash: String,
}

impl EventRow {
    fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut part = |value: &[u8]| {
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value);
        };
        part(self.prev_hash.as_bytes());
        part(&self.seq.to_be_bytes());
        part(self.occurred_at.and_utc().to_rfc3339().as_bytes());
        part(self.tenant_id.as_deref().unwrap_or("").as_bytes());
        part(self.actor.as_bytes());
        part(self.action.as_bytes());
        part(self.subject.as_deref().unwrap_or("").as_bytes());
        part(self.citizen_id.as_deref().unwrap_or("").as_bytes());
        part(self.details.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Appends `event` to the chain. Call it inside the transaction of the action itself,
/// so the action and its record commit together or not at all.
pub fn record(conn: &mut Conn, event: AuditEvent) -> Result<i64, DbError> {
    // Bumping the head first takes its row lock (PostgreSQL) or the write lock
    // (SQLite): concurrent appends queue here and each sees the previous hash.
    let (seq, prev_hash): (i64, String) = diesel::update(audit_chain_head::table)
        .filter(audit_chain_head::id.eq(1))
        .set(audit_chain_head::seq.eq(audit_chain_head::seq + 1))
        .returning((audit_chain_head::seq, audit_chain_head::hash))
        .get_result(conn)?;
    let mut row = EventRow {
        seq,
        occurred_at: crate::now(),
        tenant_id: event.tenant_id,
        actor: event.actor.label(),
        action: event.action.to_owned(),
        subject: event.subject,
        citizen_id: event.citizen_id,
        details: event.details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.compute_hash();
    diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(conn)?;
    diesel::update(audit_chain_head::table)
        .filter(audit_chain_head::id.eq(1))
        .set(audit_chain_head::hash.eq(&row.hash))
        .execute(conn)?;
    Ok(seq)
}

/// The result of checking the whole chain.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every event links to the previous one and the head matches the last event.
    Intact { events: i64 },
    /// The first event (by sequence number) where the chain breaks, and why.
    Broken { seq: i64, reason: String },
}

/// Walks the chain from the first event to the head.
pub fn verify_chain(conn: &mut Conn) -> Result<ChainCheck, DbError> {
    const BATCH: i64 = 1000;
    let mut expected_prev = "0".repeat(64);
    let mut expected_seq = 1;
    loop {
        let rows: Vec<EventRow> = audit_events::table
            .filter(audit_events::seq.ge(expected_seq))
            .order(audit_events::seq.asc())
            .limit(BATCH)
            .load(conn)?;
        let batch_len = rows.len() as i64;
        for row in rows {
            let broken = |reason: &str| {
                Ok(ChainCheck::Broken {
                    seq: expected_seq,
                    reason: reason.to_owned(),
                })
            };
            if row.seq != expected_seq {
                return broken("event missing");
            }
            if row.prev_hash != expected_prev {
                return broken("does not link to the previous event");
            }
            if row.compute_hash() != row.hash {
                return broken("content does not match its hash");
            }
            expected_prev = row.hash;
            expected_seq += 1;
        }
        if batch_len < BATCH {
            break;
        }
    }
    let (head_seq, head_hash): (i64, String) = audit_chain_head::table
        .select((audit_chain_head::seq, audit_chain_head::hash))
        .first(conn)?;
    let events = expected_seq - 1;
    if head_seq != events || head_hash != expected_prev {
        return Ok(ChainCheck::Broken {
            seq: events + 1,
            reason: format!("head says {head_seq} events, the log holds {events}"),
        });
    }
    Ok(ChainCheck::Intact { events })
}
