//! An agent's API tokens: issued with a name and an optional expiry, listed (never
//! the secret), revoked one by one or all at once when the agent is disabled, refused
//! once revoked or expired, and purged some time after.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use serde::Serialize;

use super::{Agent, AgentError, AgentRow, ApiToken};
use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::{agents, api_tokens};
use crate::db::{Conn, DbError};

/// `last_used_at` is written at most this often, not on every API request.
pub const LAST_USED_INTERVAL: TimeDelta = TimeDelta::seconds(60);

/// A token's name: what the agent or the operator calls it ("comptabilité", "cli").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

/// Why a token name was refused.
#[derive(Debug, thiserror::Error)]
#[error("a token name has 1 to 64 characters, none of them a control character")]
pub struct TokenNameError;

impl TokenName {
    pub fn parse(text: &str) -> Result<Self, TokenNameError> {
        let text = text.trim();
        let length = text.chars().count();
        if (1..=64).contains(&length) && !text.chars().any(char::is_control) {
            Ok(Self(text.to_owned()))
        } else {
            Err(TokenNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a new token is to be.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub name: TokenName,
    /// `None`: the token never expires.
    pub expires_at: Option<NaiveDateTime>,
}

impl TokenRequest {
    /// A token named `name` that lasts `days` from `now` (0: forever).
    pub fn lasting(name: TokenName, days: u32, now: NaiveDateTime) -> Self {
        Self {
            name,
            expires_at: (days > 0).then(|| now + TimeDelta::days(i64::from(days))),
        }
    }
}

/// A token just issued: the secret is shown once.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: String,
    pub token: ApiToken,
}

/// Issues a new API token for an agent; the plain token is returned once.
pub fn issue_api_token(
    conn: &mut Conn,
    agent: &Agent,
    request: &TokenRequest,
    actor: Actor,
) -> Result<IssuedToken, AgentError> {
    let token = ApiToken::generate();
    let id = crate::new_id();
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(&id),
            api_tokens::tenant_id.eq(&agent.tenant_id),
            api_tokens::agent_id.eq(&agent.id),
            api_tokens::token_hash.eq(token.hash()),
            api_tokens::created_at.eq(crate::now()),
            api_tokens::name.eq(request.name.as_str()),
            api_tokens::expires_at.eq(request.expires_at),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(actor, "api_token.issued")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id)
            .details(serde_json::json!({
                "token_id": id,
                "expires_at": request.expires_at.map(|at| at.to_string()),
            })),
    )?;
    Ok(IssuedToken { id, token })
}

/// Whether a token may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenListing {
    pub id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub state: TokenState,
}

type ListingRow = (
    String,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// An agent's tokens, newest first, the ended ones too until they are purged.
pub fn list_api_tokens(
    conn: &mut Conn,
    agent_id: &str,
    now: NaiveDateTime,
) -> Result<Vec<TokenListing>, DbError> {
    let rows: Vec<ListingRow> = api_tokens::table
        .filter(api_tokens::agent_id.eq(agent_id))
        .order((api_tokens::created_at.desc(), api_tokens::id))
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::created_at,
            api_tokens::expires_at,
            api_tokens::last_used_at,
            api_tokens::revoked_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, created_at, expires_at, last_used_at, revoked_at)| {
                let state = if revoked_at.is_some() {
                    TokenState::Revoked
                } else if expires_at.is_some_and(|at| at <= now) {
                    TokenState::Expired
                } else {
                    TokenState::Active
                };
                TokenListing {
                    id,
                    name,
                    created_at,
                    expires_at,
                    last_used_at,
                    revoked_at,
                    state,
                }
            },
        )
        .collect())
}

/// What revoking by id or name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// This token (id) is revoked now.
    Revoked(String),
    /// No unrevoked token of the agent has this id or name.
    NotFound,
    /// Several unrevoked tokens share this name: revoke by id.
    Ambiguous,
}

/// Revokes the agent's unrevoked token whose id or name is `id_or_name`.
pub fn revoke_api_token(
    conn: &mut Conn,
    agent: &Agent,
    id_or_name: &str,
    actor: Actor,
) -> Result<Revocation, DbError> {
    let id_or_name = id_or_name.trim();
    let ids: Vec<String> = api_tokens::table
        .filter(api_tokens::agent_id.eq(&agent.id))
        .filter(api_tokens::revoked_at.is_null())
        .filter(
            api_tokens::id
                .eq(id_or_name)
                .or(api_tokens::name.eq(id_or_name)),
        )
        .select(api_tokens::id)
        .load(conn)?;
    // An id is unique; a name may not be.
    let id = match ids.iter().find(|id| *id == id_or_name) {
        Some(id) => id.clone(),
        None => match <[String; 1]>::try_from(ids) {
            Ok([id]) => id,
            Err(ids) if ids.is_empty() => return Ok(Revocation::NotFound),
            Err(_) => return Ok(Revocation::Ambiguous),
        },
    };
    let revoked = diesel::update(
        api_tokens::table
            .find(&id)
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(crate::now()))
    .execute(conn)?;
    if revoked == 0 {
        return Ok(Revocation::NotFound);
    }
    audit::record(
        conn,
        AuditEvent::new(actor, "api_token.revoked")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id)
            .details(serde_json::json!({ "token_id": id })),
    )?;
    Ok(Revocation::Revoked(id))
}

/// Revokes every token the agent still has (the account is being disabled); returns
/// how many. The caller records the reason in its own audit event.
pub fn revoke_all_api_tokens(conn: &mut Conn, agent_id: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        api_tokens::table
            .filter(api_tokens::agent_id.eq(agent_id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(crate::now()))
    .execute(conn)?)
}

/// The agent behind a presented token, and whether its last use should be written.
#[derive(Debug)]
pub struct TokenUse {
    pub agent: Agent,
    pub token_id: String,
    /// `last_used_at` is older than [`LAST_USED_INTERVAL`] (or unset).
    pub stale_last_use: bool,
}

/// The active agent owning this token, if it is neither revoked nor expired at `now`.
/// Runs on every API request: a read only.
pub fn agent_for_token(
    conn: &mut Conn,
    token: &ApiToken,
    now: NaiveDateTime,
) -> Result<Option<TokenUse>, DbError> {
    // `get_result`, not `first`: the hash is unique, and SQLite prepares a statement
    // with a bound `LIMIT` again at every execution.
    let found: Option<(AgentRow, String, Option<NaiveDateTime>)> = agents::table
        .inner_join(api_tokens::table)
        .filter(api_tokens::token_hash.eq(token.hash()))
        .filter(api_tokens::revoked_at.is_null())
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .filter(agents::disabled_at.is_null())
        .select((
            AgentRow::as_select(),
            api_tokens::id,
            api_tokens::last_used_at,
        ))
        .get_result(conn)
        .optional()?;
    let Some((row, token_id, last_used_at)) = found else {
        return Ok(None);
    };
    Ok(Some(TokenUse {
        agent: Agent::try_from(row)?,
        token_id,
        stale_last_use: last_used_at.is_none_or(|at| now - at >= LAST_USED_INTERVAL),
    }))
}

/// Writes a token's last use, unless another request just did.
pub fn record_token_use(
    conn: &mut Conn,
    token_id: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(
        api_tokens::table.find(token_id).filter(
            api_tokens::last_used_at
                .is_null()
                .or(api_tokens::last_used_at.le(now - LAST_USED_INTERVAL)),
        ),
    )
    .set(api_tokens::last_used_at.eq(now))
    .execute(conn)?;
    Ok(())
}

/// Deletes the tokens revoked or expired more than `retention` before `now`; returns
/// how many went.
pub fn purge_ended_tokens(
    conn: &mut Conn,
    now: NaiveDateTime,
    retention: TimeDelta,
) -> Result<usize, DbError> {
    let before = now - retention;
    Ok(diesel::delete(
        api_tokens::table.filter(
            api_tokens::revoked_at
                .le(before)
                .or(api_tokens::expires_at.le(before)),
        ),
    )
    .execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(TokenName::parse("  compta ").unwrap().as_str(), "compta");
        assert!(TokenName::parse("").is_err());
        assert!(TokenName::parse("a\nb").is_err());
        assert!(TokenName::parse(&"x".repeat(65)).is_err());
        let now = crate::now();
        let name = TokenName::parse("cli").unwrap();
        assert_eq!(TokenRequest::lasting(name.clone(), 0, now).expires_at, None);
        assert_eq!(
            TokenRequest::lasting(name, 2, now).expires_at,
            Some(now + TimeDelta::days(2))
        );
    }
}
