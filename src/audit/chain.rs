//! The chain itself: how an event's hash is computed, appending, checking the whole
//! chain (against the anchors when given), and re-chaining events written before the
//! chain was keyed.
//!
//! Version 1 hashed each event with a plain SHA-256: anyone able to write to the
//! database could edit an event and recompute every hash after it. Version 2 is an
//! HMAC-SHA-256 under a key derived (HKDF, [`CHAIN_KEY_INFO`]) from the installation's
//! HMAC key, which the database holds only wrapped by the master key; the key survives
//! a master-key rotation, which re-wraps it. Only version 2 verifies: the first start
//! of a version that keys the chain checks the plain chain and re-chains it under the
//! key (`rechain_unkeyed_events`), recording what it found.

use std::collections::BTreeMap;

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::anchors::Anchor;
use super::{Actor, AuditEvent};
use crate::crypto::DerivedKey;
use crate::db::schema::{audit_chain_head, audit_events};
use crate::db::{Conn, DbError};

/// HKDF `info` of the audit chain's key.
pub const CHAIN_KEY_INFO: &[u8] = b"eguichet/audit-chain/v2";

/// Hashes linked by a plain SHA-256 (events written before the chain was keyed).
const UNKEYED: i32 = 1;
/// Hashes that are an HMAC under the chain key.
const KEYED: i32 = 2;

/// The `prev_hash` of the first event.
fn genesis() -> String {
    "0".repeat(64)
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = audit_events)]
pub(super) struct EventRow {
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
    chain_version: i32,
}

impl EventRow {
    /// The parts of the event the hash covers, each length-prefixed.
    fn parts(&self) -> [Vec<u8>; 9] {
        [
            self.prev_hash.as_bytes().to_vec(),
            self.seq.to_be_bytes().to_vec(),
            self.occurred_at.and_utc().to_rfc3339().into_bytes(),
            self.tenant_id.as_deref().unwrap_or("").as_bytes().to_vec(),
            self.actor.as_bytes().to_vec(),
            self.action.as_bytes().to_vec(),
            self.subject.as_deref().unwrap_or("").as_bytes().to_vec(),
            self.citizen_id.as_deref().unwrap_or("").as_bytes().to_vec(),
            self.details.as_bytes().to_vec(),
        ]
    }

    /// The version 1 hash: plain SHA-256, which anyone can recompute.
    fn unkeyed_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for part in self.parts() {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(&part);
        }
        hex::encode(hasher.finalize())
    }

    /// The version 2 hash: HMAC-SHA-256 under the chain key, the version included.
    fn keyed_hash(&self, key: &DerivedKey) -> String {
        self.parts()
            .iter()
            .fold(key.start().part(&KEYED.to_be_bytes()), |mac, part| {
                mac.part(part)
            })
            .finish()
    }

    /// Whether the stored hash is the one its version computes.
    fn hash_holds(&self, key: &DerivedKey) -> bool {
        match self.chain_version {
            UNKEYED => self.unkeyed_hash() == self.hash,
            KEYED => self.keyed_hash(key) == self.hash,
            _ => false,
        }
    }
}

/// Takes the head's lock and bumps its sequence number: (new seq, previous hash).
fn bump_head(conn: &mut Conn) -> Result<(i64, String), DbError> {
    // Bumping the head first takes its row lock (PostgreSQL) or the write lock
    // (SQLite): concurrent appends queue here and each sees the previous hash.
    Ok(diesel::update(audit_chain_head::table)
        .filter(audit_chain_head::id.eq(1))
        .set(audit_chain_head::seq.eq(audit_chain_head::seq + 1))
        .returning((audit_chain_head::seq, audit_chain_head::hash))
        .get_result(conn)?)
}

fn set_head(conn: &mut Conn, seq: i64, hash: &str) -> Result<(), DbError> {
    diesel::update(audit_chain_head::table)
        .filter(audit_chain_head::id.eq(1))
        .set((
            audit_chain_head::seq.eq(seq),
            audit_chain_head::hash.eq(hash),
        ))
        .execute(conn)?;
    Ok(())
}

/// The head of the chain as the database has it: (sequence number, hash).
pub fn chain_head(conn: &mut Conn) -> Result<(i64, String), DbError> {
    Ok(audit_chain_head::table
        .select((audit_chain_head::seq, audit_chain_head::hash))
        .first(conn)?)
}

pub(super) fn append(conn: &mut Conn, key: &DerivedKey, event: AuditEvent) -> Result<i64, DbError> {
    let (seq, prev_hash) = bump_head(conn)?;
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
        chain_version: KEYED,
    };
    row.hash = row.keyed_hash(key);
    diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(conn)?;
    set_head(conn, seq, &row.hash)?;
    Ok(seq)
}

/// The result of checking the whole chain.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every event links to the previous one, the head matches the last event, and
    /// every anchor given matches the event it names.
    Intact { events: i64 },
    /// The first event (by sequence number) where the chain breaks, and why.
    Broken { seq: i64, reason: String },
}

const BATCH: i64 = 1000;

/// Walks the events in order, a batch at a time.
fn for_each_event(
    conn: &mut Conn,
    mut visit: impl FnMut(&mut Conn, EventRow) -> Result<Option<ChainCheck>, DbError>,
) -> Result<Option<ChainCheck>, DbError> {
    let mut next = 1;
    loop {
        let rows: Vec<EventRow> = audit_events::table
            .filter(audit_events::seq.ge(next))
            .order(audit_events::seq.asc())
            .limit(BATCH)
            .load(conn)?;
        let batch_len = rows.len() as i64;
        for row in rows {
            next = row.seq + 1;
            if let Some(verdict) = visit(conn, row)? {
                return Ok(Some(verdict));
            }
        }
        if batch_len < BATCH {
            return Ok(None);
        }
    }
}

/// Walks the chain from the first event to the head, checking each event's HMAC and
/// link, then `anchors` (heads copied out of the database, oldest first): an edited or
/// rewritten event, a cut tail or a head set back are each reported at the first event
/// concerned.
pub fn verify_chain(
    conn: &mut Conn,
    key: &DerivedKey,
    anchors: &[Anchor],
) -> Result<ChainCheck, DbError> {
    let mut by_seq: BTreeMap<i64, &Anchor> = BTreeMap::new();
    for anchor in anchors {
        if let Some(other) = by_seq.insert(anchor.seq, anchor)
            && other.hash != anchor.hash
        {
            return Ok(ChainCheck::Broken {
                seq: anchor.seq,
                reason: format!(
                    "the anchors of {} and {} disagree on this event",
                    other.at, anchor.at
                ),
            });
        }
    }
    let mut expected_prev = genesis();
    let mut expected_seq = 1;
    let broken = for_each_event(conn, |_, row| {
        let broken = |reason: String| {
            Ok(Some(ChainCheck::Broken {
                seq: expected_seq,
                reason,
            }))
        };
        if row.seq != expected_seq {
            return broken("event missing".to_owned());
        }
        if row.prev_hash != expected_prev {
            return broken("does not link to the previous event".to_owned());
        }
        if row.chain_version != KEYED {
            return broken("not sealed with the installation's key".to_owned());
        }
        if !row.hash_holds(key) {
            return broken("content does not match its hash".to_owned());
        }
        if let Some(anchor) = by_seq.get(&row.seq)
            && anchor.hash != row.hash
        {
            return broken(format!(
                "differs from the anchor written at {}: the chain was rewritten from here",
                anchor.at
            ));
        }
        expected_prev = row.hash;
        expected_seq += 1;
        Ok(None)
    })?;
    if let Some(broken) = broken {
        return Ok(broken);
    }
    let events = expected_seq - 1;
    if let Some((_, anchor)) = by_seq.range(events + 1..).next() {
        return Ok(ChainCheck::Broken {
            seq: events + 1,
            reason: format!(
                "the log ends at event {events}, but event {} was anchored at {}: \
                 its tail was cut or its head set back",
                anchor.seq, anchor.at
            ),
        });
    }
    let (head_seq, head_hash) = chain_head(conn)?;
    if head_seq != events || head_hash != expected_prev {
        return Ok(ChainCheck::Broken {
            seq: events + 1,
            reason: format!("head says {head_seq} events, the log holds {events}"),
        });
    }
    Ok(ChainCheck::Intact { events })
}

/// What re-chaining found and did.
#[derive(Debug, PartialEq, Eq)]
pub struct RechainReport {
    /// Events re-chained under the key.
    pub events: i64,
    /// The first event whose plain chain was already broken, if any: its content is
    /// kept, but nothing vouches for it or for what came before the keyed chain.
    pub broken_at: Option<i64>,
}

/// Re-chains under the key every event from the first one not keyed, after checking
/// the chain as it stands; records the re-chaining as an event of its own. Runs in the
/// caller's transaction, holding the head's lock. `None` when every event is keyed.
pub fn rechain_unkeyed_events(
    conn: &mut Conn,
    key: &DerivedKey,
) -> Result<Option<RechainReport>, DbError> {
    let unkeyed = audit_events::table
        .filter(audit_events::chain_version.ne(KEYED))
        .select(audit_events::seq)
        .order(audit_events::seq.asc())
        .first::<i64>(conn)
        .optional()?;
    if unkeyed.is_none() {
        return Ok(None);
    }
    // The head's lock, then the check again: another instance may have done it.
    diesel::update(audit_chain_head::table)
        .filter(audit_chain_head::id.eq(1))
        .set(audit_chain_head::seq.eq(audit_chain_head::seq))
        .execute(conn)?;
    let Some(first_unkeyed) = audit_events::table
        .filter(audit_events::chain_version.ne(KEYED))
        .select(audit_events::seq)
        .order(audit_events::seq.asc())
        .first::<i64>(conn)
        .optional()?
    else {
        return Ok(None);
    };

    // Check the chain as written (each event by its own version), then re-link every
    // event from the first unkeyed one on.
    let mut broken_at = None;
    let mut stored_prev = genesis();
    let mut new_prev = genesis();
    let mut expected_seq = 1;
    let mut rewritten = 0;
    for_each_event(conn, |conn, mut row| {
        if broken_at.is_none()
            && (row.seq != expected_seq || row.prev_hash != stored_prev || !row.hash_holds(key))
        {
            broken_at = Some(expected_seq.min(row.seq));
        }
        stored_prev = row.hash.clone();
        expected_seq = row.seq + 1;
        if row.seq >= first_unkeyed {
            row.prev_hash = new_prev.clone();
            row.chain_version = KEYED;
            row.hash = row.keyed_hash(key);
            diesel::update(audit_events::table.filter(audit_events::seq.eq(row.seq)))
                .set((
                    audit_events::prev_hash.eq(&row.prev_hash),
                    audit_events::hash.eq(&row.hash),
                    audit_events::chain_version.eq(KEYED),
                ))
                .execute(conn)?;
            rewritten += 1;
        }
        new_prev = row.hash;
        Ok(None)
    })?;
    let (head_seq, _) = chain_head(conn)?;
    if broken_at.is_none() && head_seq != expected_seq - 1 {
        broken_at = Some(expected_seq);
    }
    // The head follows the re-linked chain; an event missing at the end stays missing.
    set_head(conn, expected_seq - 1, &new_prev)?;
    let report = RechainReport {
        events: rewritten,
        broken_at,
    };
    append(
        conn,
        key,
        AuditEvent::new(Actor::System, "audit.chain_keyed").details(serde_json::json!({
            "events": report.events,
            "unkeyed_chain_broken_at": report.broken_at,
        })),
    )?;
    Ok(Some(report))
}
