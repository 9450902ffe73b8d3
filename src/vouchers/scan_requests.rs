//! One submission of a scan, recognised when it comes back. The scan form carries a
//! one-time token issued when the form is shown; an API request carries its own
//! `Idempotency-Key`. The first submission scans and keeps its answer; the same
//! submission again (a double click, a resubmitted form, a retried request) gets that
//! answer back and scans nothing. Nothing else is absorbed: a code in a new submission
//! is scanned, and a voucher collected before is never answered as a success.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::redeem::{self, FailureLimit, Scan, ScanOutcome};
use crate::crypto::{HashDomain, KeyedHasher};
use crate::db::schema::voucher_scan_requests;
use crate::db::{AnyConnection, Conn, DbError};

/// How long a scan form's token stays usable: a desk's page left open all day.
const FORM_TOKEN_HOURS: i64 = 12;
/// How long an API client's `Idempotency-Key` is remembered.
const IDEMPOTENCY_KEY_HOURS: i64 = 24;

/// What identifies a submission.
#[derive(Debug, Clone)]
pub enum SubmissionKey {
    /// The one-time token of a scan form, issued by [`issue_form_token`].
    FormToken(String),
    /// An API client's `Idempotency-Key`, chosen per request.
    IdempotencyKey(String),
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// Scanned now.
    First(ScanOutcome),
    /// The same submission came back: the first one's answer, and nothing scanned.
    Repeated(ScanOutcome),
    /// This `Idempotency-Key` was already used for another code or site.
    KeyReused,
}

impl Submission {
    /// The answer to show (none for a reused key).
    pub fn outcome(&self) -> Option<&ScanOutcome> {
        match self {
            Self::First(outcome) | Self::Repeated(outcome) => Some(outcome),
            Self::KeyReused => None,
        }
    }
}

fn hash_key(hasher: &KeyedHasher, key: &SubmissionKey) -> String {
    let tagged = match key {
        SubmissionKey::FormToken(token) => format!("form:{token}"),
        SubmissionKey::IdempotencyKey(key) => format!("api:{key}"),
    };
    hasher.hash(HashDomain::ScanRequest, tagged.as_bytes())
}

/// What the submission carried, so that a key sent again with another code is not
/// answered with the first code's outcome.
fn hash_code(hasher: &KeyedHasher, scan: &Scan<'_>) -> String {
    let carried = match &scan.code {
        Ok(code) => format!("code:{}", code.as_str()),
        Err(error) => format!("malformed:{error:?}"),
    };
    hasher.hash(HashDomain::ScanRequest, carried.as_bytes())
}

/// Issues a scan form's one-time token for an agent at a site, and returns it in clear
/// for the form (only its keyed hash is kept).
pub fn issue_form_token(
    conn: &mut Conn,
    hasher: &KeyedHasher,
    tenant_id: &str,
    agent_id: &str,
    site_id: &str,
    now: NaiveDateTime,
) -> Result<String, DbError> {
    let token = hex::encode(crate::crypto::random_bytes::<16>());
    diesel::insert_into(voucher_scan_requests::table)
        .values((
            voucher_scan_requests::id.eq(crate::new_id()),
            voucher_scan_requests::tenant_id.eq(tenant_id),
            voucher_scan_requests::agent_id.eq(agent_id),
            voucher_scan_requests::site_id.eq(site_id),
            voucher_scan_requests::key_hash
                .eq(hash_key(hasher, &SubmissionKey::FormToken(token.clone()))),
            voucher_scan_requests::created_at.eq(now),
            voucher_scan_requests::expires_at.eq(now + TimeDelta::hours(FORM_TOKEN_HOURS)),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Redeems a scan once per submission (call in a write transaction). Without a key, or
/// with a form token that is unknown, expired or another agent's, the code is simply
/// scanned: the key only spares a repeated submission its "already collected" answer.
pub fn redeem_once(
    conn: &mut Conn,
    hasher: &KeyedHasher,
    limit: FailureLimit,
    scan: &Scan<'_>,
    key: Option<&SubmissionKey>,
) -> Result<Submission, DbError> {
    let now = crate::now();
    let Some(key) = key else {
        return Ok(Submission::First(redeem::redeem(
            conn, hasher, limit, scan,
        )?));
    };
    let (key_hash, code_hash) = (hash_key(hasher, key), hash_code(hasher, scan));
    let claimed = match key {
        SubmissionKey::FormToken(_) => claim_form_token(conn, scan, &key_hash, &code_hash, now)?,
        SubmissionKey::IdempotencyKey(_) => claim_key(conn, scan, &key_hash, &code_hash, now)?,
    };
    if let Some(id) = claimed {
        let outcome = redeem::redeem(conn, hasher, limit, scan)?;
        let kept = serde_json::to_string(&outcome)
            .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
        diesel::update(voucher_scan_requests::table.find(id))
            .set(voucher_scan_requests::outcome.eq(kept))
            .execute(conn)?;
        return Ok(Submission::First(outcome));
    }
    // Taken before (committed, since the claim waited for it): the same submission if
    // it carried the same code to the same site.
    let earlier: Option<(String, Option<String>, Option<String>)> = voucher_scan_requests::table
        .filter(voucher_scan_requests::agent_id.eq(&scan.agent.id))
        .filter(voucher_scan_requests::key_hash.eq(&key_hash))
        .filter(voucher_scan_requests::expires_at.gt(now))
        .select((
            voucher_scan_requests::site_id,
            voucher_scan_requests::code_hash,
            voucher_scan_requests::outcome,
        ))
        .get_result(conn)
        .optional()?;
    let same = earlier.and_then(|(site_id, earlier_code, outcome)| {
        (site_id == scan.site.id && earlier_code.as_deref() == Some(code_hash.as_str()))
            .then_some(outcome)
            .flatten()
    });
    match (same, key) {
        (Some(outcome), _) => {
            let outcome = serde_json::from_str(&outcome)
                .map_err(|error| diesel::result::Error::DeserializationError(Box::new(error)))?;
            Ok(Submission::Repeated(outcome))
        }
        (None, SubmissionKey::IdempotencyKey(_)) => Ok(Submission::KeyReused),
        (None, SubmissionKey::FormToken(_)) => Ok(Submission::First(redeem::redeem(
            conn, hasher, limit, scan,
        )?)),
    }
}

/// Consumes a form's token in one statement; a concurrent submission of the same form
/// waits for this one and finds it consumed.
fn claim_form_token(
    conn: &mut Conn,
    scan: &Scan<'_>,
    key_hash: &str,
    code_hash: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, DbError> {
    Ok(diesel::update(
        voucher_scan_requests::table
            .filter(voucher_scan_requests::agent_id.eq(&scan.agent.id))
            .filter(voucher_scan_requests::key_hash.eq(key_hash))
            .filter(voucher_scan_requests::site_id.eq(&scan.site.id))
            .filter(voucher_scan_requests::consumed_at.is_null())
            .filter(voucher_scan_requests::expires_at.gt(now)),
    )
    .set((
        voucher_scan_requests::consumed_at.eq(now),
        voucher_scan_requests::code_hash.eq(code_hash),
    ))
    .returning(voucher_scan_requests::id)
    .get_result(conn)
    .optional()?)
}

/// Records an API request's key unless the agent used it already; a concurrent
/// request with the same key waits for this one's transaction and inserts nothing.
fn claim_key(
    conn: &mut Conn,
    scan: &Scan<'_>,
    key_hash: &str,
    code_hash: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, DbError> {
    // An expired key may be used again.
    diesel::delete(
        voucher_scan_requests::table
            .filter(voucher_scan_requests::agent_id.eq(&scan.agent.id))
            .filter(voucher_scan_requests::key_hash.eq(key_hash))
            .filter(voucher_scan_requests::expires_at.le(now)),
    )
    .execute(conn)?;
    let id = crate::new_id();
    let insert = diesel::insert_into(voucher_scan_requests::table).values((
        voucher_scan_requests::id.eq(&id),
        voucher_scan_requests::tenant_id.eq(&scan.agent.tenant_id),
        voucher_scan_requests::agent_id.eq(&scan.agent.id),
        voucher_scan_requests::site_id.eq(&scan.site.id),
        voucher_scan_requests::key_hash.eq(key_hash),
        voucher_scan_requests::code_hash.eq(code_hash),
        voucher_scan_requests::created_at.eq(now),
        voucher_scan_requests::consumed_at.eq(now),
        voucher_scan_requests::expires_at.eq(now + TimeDelta::hours(IDEMPOTENCY_KEY_HOURS)),
    ));
    // ON CONFLICT DO NOTHING, so that losing the race does not abort the PostgreSQL
    // transaction (the multi-backend connection does not offer it: one arm each).
    let inserted = match conn {
        AnyConnection::Postgresql(conn) => insert.on_conflict_do_nothing().execute(conn)?,
        AnyConnection::Sqlite(conn) => insert.on_conflict_do_nothing().execute(conn)?,
    };
    Ok((inserted == 1).then_some(id))
}

/// Deletes the scan requests whose time is past (form tokens never used included);
/// returns how many went.
pub fn purge_expired_scan_requests(conn: &mut Conn, now: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(
        voucher_scan_requests::table.filter(voucher_scan_requests::expires_at.le(now)),
    )
    .execute(conn)?)
}
