//! Server-side sessions and the short-lived state of a login or logout redirect. The
//! browser holds only random 256-bit values; the database holds their SHA-256, so a
//! copy of the database opens no session.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::auth::throttle::AddressKey;
use crate::db::schema::{auth_flows, sessions};
use crate::db::{Conn, DbError};

/// The session cookie.
pub const SESSION_COOKIE: &str = "eg_session";
/// A cookie binding a login or logout redirect to the browser that started it.
pub const BROWSER_COOKIE: &str = "eg_flow";
/// How long a login or logout redirect may take.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// `last_seen_at` is written at most this often, not on every request.
const TOUCH_INTERVAL: TimeDelta = TimeDelta::seconds(30);

/// A new random secret (256 bits, hex): session ids, states, nonces, CSRF tokens.
pub fn new_secret() -> String {
    hex::encode(crate::crypto::random_bytes::<32>())
}

/// What the database keeps of a secret.
pub fn hash_secret(secret: &str) -> String {
    crate::crypto::sha256_hex(secret.as_bytes())
}

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Citizen,
    Agent,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::Agent => "agent",
        }
    }
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub absolute: Duration,
}

impl SessionPolicy {
    /// The citizens' policy.
    pub fn from_config(config: &crate::config::SessionConfig) -> Self {
        Self {
            idle: Duration::from_secs(u64::from(config.idle_minutes) * 60),
            absolute: Duration::from_secs(u64::from(config.absolute_hours) * 3600),
        }
    }

    /// The agents' policy: their own idle time, the same absolute end.
    pub fn for_agents(config: &crate::config::SessionConfig) -> Self {
        Self {
            idle: Duration::from_secs(u64::from(config.agent_idle_minutes) * 60),
            ..Self::from_config(config)
        }
    }
}

/// A live session.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id_hash: String,
    pub kind: String,
    pub subject_id: String,
    pub provider_id: Option<String>,
    /// Kept for `id_token_hint` at logout.
    pub id_token: Option<String>,
    pub csrf_token: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// A session just opened: the cookie value is shown to the browser once.
pub struct NewSession {
    pub cookie_value: String,
    pub session: Session,
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Opens a session (a fresh id at every login). Call inside the login transaction.
pub fn open_session(
    conn: &mut Conn,
    policy: SessionPolicy,
    kind: SessionKind,
    subject_id: &str,
    provider_id: Option<&str>,
    id_token: Option<&str>,
) -> Result<NewSession, DbError> {
    let cookie_value = new_secret();
    let now = crate::now();
    let session = Session {
        id_hash: hash_secret(&cookie_value),
        kind: kind.as_str().to_owned(),
        subject_id: subject_id.to_owned(),
        provider_id: provider_id.map(str::to_owned),
        id_token: id_token.map(str::to_owned),
        csrf_token: new_secret(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + delta(policy.absolute),
    };
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_hash.eq(&session.id_hash),
            sessions::kind.eq(&session.kind),
            sessions::subject_id.eq(&session.subject_id),
            sessions::provider_id.eq(&session.provider_id),
            sessions::id_token.eq(&session.id_token),
            sessions::csrf_token.eq(&session.csrf_token),
            sessions::created_at.eq(session.created_at),
            sessions::last_seen_at.eq(session.last_seen_at),
            sessions::expires_at.eq(session.expires_at),
        ))
        .execute(conn)?;
    Ok(NewSession {
        cookie_value,
        session,
    })
}

/// The live session of `kind` behind a cookie value, refreshed; `None` when unknown,
/// idle too long or past its absolute end (an expired session is deleted).
pub fn find_session(
    conn: &mut Conn,
    policy: SessionPolicy,
    kind: SessionKind,
    cookie_value: &str,
) -> Result<Option<Session>, DbError> {
    let id_hash = hash_secret(cookie_value);
    let found: Option<Session> = sessions::table
        .find(&id_hash)
        .filter(sessions::kind.eq(kind.as_str()))
        .select(Session::as_select())
        .first(conn)
        .optional()?;
    let Some(mut session) = found else {
        return Ok(None);
    };
    let now = crate::now();
    if now >= session.expires_at || now - session.last_seen_at >= delta(policy.idle) {
        diesel::delete(sessions::table.find(&id_hash)).execute(conn)?;
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_INTERVAL {
        diesel::update(sessions::table.find(&id_hash))
            .set(sessions::last_seen_at.eq(now))
            .execute(conn)?;
        session.last_seen_at = now;
    }
    Ok(Some(session))
}

/// What logging out needs of a session that was just ended.
#[derive(Debug, Clone)]
pub struct EndedSession {
    pub subject_id: String,
    pub provider_id: Option<String>,
    pub id_token: Option<String>,
}

/// Ends a session on the server; returns what remains useful of it, if it existed.
pub fn end_session(conn: &mut Conn, cookie_value: &str) -> Result<Option<EndedSession>, DbError> {
    let ended: Option<(String, Option<String>, Option<String>)> =
        diesel::delete(sessions::table.find(hash_secret(cookie_value)))
            .returning((
                sessions::subject_id,
                sessions::provider_id,
                sessions::id_token,
            ))
            .get_result(conn)
            .optional()?;
    Ok(
        ended.map(|(subject_id, provider_id, id_token)| EndedSession {
            subject_id,
            provider_id,
            id_token,
        }),
    )
}

/// Ends every session of `kind` that `subject_id` holds (second factor reset, account
/// disabled); returns how many ended.
pub fn end_sessions_of(
    conn: &mut Conn,
    kind: SessionKind,
    subject_id: &str,
) -> Result<usize, DbError> {
    Ok(diesel::delete(
        sessions::table
            .filter(sessions::kind.eq(kind.as_str()))
            .filter(sessions::subject_id.eq(subject_id)),
    )
    .execute(conn)?)
}

/// Ends every session of `kind` that `subject_id` holds except `keep` (a hashed id):
/// a password change logs out everywhere else. Returns how many ended.
pub fn end_sessions_but(
    conn: &mut Conn,
    kind: SessionKind,
    subject_id: &str,
    keep: Option<&str>,
) -> Result<usize, DbError> {
    let Some(keep) = keep else {
        return end_sessions_of(conn, kind, subject_id);
    };
    Ok(diesel::delete(
        sessions::table
            .filter(sessions::kind.eq(kind.as_str()))
            .filter(sessions::subject_id.eq(subject_id))
            .filter(sessions::id_hash.ne(keep)),
    )
    .execute(conn)?)
}

/// What a login or logout redirect is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPurpose {
    Login,
    Logout,
    /// An agent logging in through a provider for agents (ProConnect).
    AgentLogin,
    AgentLogout,
}

impl FlowPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Logout => "logout",
            Self::AgentLogin => "agent_login",
            Self::AgentLogout => "agent_logout",
        }
    }
}

/// A redirect in progress, as consumed on return.
#[derive(Debug, Clone)]
pub struct Flow {
    pub provider_id: String,
    pub nonce: String,
}

/// Records a redirect about to start with `state`, from the browser holding
/// `browser_cookie`. A login is counted against its client address (`limit`): when the
/// address already has `limit.pending` unexpired flows, nothing is stored and the
/// answer is false. Call inside a write transaction.
pub fn record_flow(
    conn: &mut Conn,
    purpose: FlowPurpose,
    state: &str,
    browser_cookie: &str,
    provider_id: &str,
    nonce: &str,
    limit: Option<FlowLimit<'_>>,
) -> Result<bool, DbError> {
    let now = crate::now();
    if let Some(limit) = &limit {
        lock_address(conn, limit.address)?;
        let pending: i64 = auth_flows::table
            .filter(auth_flows::address_hash.eq(limit.address.as_str()))
            .filter(auth_flows::expires_at.gt(now))
            .count()
            .get_result(conn)?;
        if pending >= i64::from(limit.pending) {
            return Ok(false);
        }
    }
    diesel::insert_into(auth_flows::table)
        .values((
            auth_flows::state_hash.eq(hash_secret(state)),
            auth_flows::purpose.eq(purpose.as_str()),
            auth_flows::browser_hash.eq(hash_secret(browser_cookie)),
            auth_flows::provider_id.eq(provider_id),
            auth_flows::nonce.eq(nonce),
            auth_flows::created_at.eq(now),
            auth_flows::expires_at.eq(now + delta(FLOW_LIFETIME)),
            auth_flows::address_hash.eq(limit.map(|limit| limit.address.as_str())),
        ))
        .execute(conn)?;
    Ok(true)
}

/// How many logins one client address may have pending.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimit<'a> {
    pub address: &'a AddressKey,
    pub pending: u32,
}

/// Makes concurrent logins from one address count one after the other, so that the
/// count and the insert of `record_flow` act as one. SQLite has one writer at a time
/// already; PostgreSQL takes a lock on the address for the transaction.
fn lock_address(conn: &mut Conn, address: &AddressKey) -> Result<(), DbError> {
    if let Conn::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7470))")
            .bind::<diesel::sql_types::Text, _>(address.as_str())
            .execute(pg)?;
    }
    Ok(())
}

/// Consumes the redirect that `state` names, if it was started by this browser for
/// this purpose and has not expired. One statement, so a replayed `state` finds nothing.
pub fn consume_flow(
    conn: &mut Conn,
    purpose: FlowPurpose,
    state: &str,
    browser_cookie: &str,
) -> Result<Option<Flow>, DbError> {
    let consumed: Option<(String, String)> = diesel::delete(
        auth_flows::table
            .filter(auth_flows::state_hash.eq(hash_secret(state)))
            .filter(auth_flows::purpose.eq(purpose.as_str()))
            .filter(auth_flows::browser_hash.eq(hash_secret(browser_cookie)))
            .filter(auth_flows::expires_at.gt(crate::now())),
    )
    .returning((auth_flows::provider_id, auth_flows::nonce))
    .get_result(conn)
    .optional()?;
    Ok(consumed.map(|(provider_id, nonce)| Flow { provider_id, nonce }))
}

/// Deletes the redirects that expired before `now`; returns how many went.
pub fn purge_expired_flows(conn: &mut Conn, now: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(auth_flows::table.filter(auth_flows::expires_at.le(now))).execute(conn)?)
}

/// Deletes the sessions that ended by `now`: past their absolute end, or idle longer
/// than their kind's policy allows. Returns how many went.
pub fn purge_ended_sessions(
    conn: &mut Conn,
    now: NaiveDateTime,
    citizens: SessionPolicy,
    agents: SessionPolicy,
) -> Result<usize, DbError> {
    let citizen_idle_since = now - delta(citizens.idle);
    let agent_idle_since = now - delta(agents.idle);
    Ok(diesel::delete(
        sessions::table.filter(
            sessions::expires_at
                .le(now)
                .or(sessions::kind
                    .eq(SessionKind::Citizen.as_str())
                    .and(sessions::last_seen_at.le(citizen_idle_since)))
                .or(sessions::kind
                    .eq(SessionKind::Agent.as_str())
                    .and(sessions::last_seen_at.le(agent_idle_since))),
        ),
    )
    .execute(conn)?)
}

/// Compares two secrets in constant time.
pub fn secrets_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
