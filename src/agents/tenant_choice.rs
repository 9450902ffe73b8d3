//! One person, several tenants: a syndicate's staff member may hold an agent account in
//! several of its communes under the same work email. After a provider login names
//! several accounts, the login waits here (a few minutes, under a one-time secret held
//! by the browser) until the person chooses which tenant to open. An admin of one
//! tenant creating an account with the same email thus adds a choice; it never locks
//! the other tenant's agent out.

use diesel::prelude::*;

use super::Agent;
use crate::auth::sessions::{hash_secret, new_secret};
use crate::db::schema::{agent_tenant_choices, tenants};
use crate::db::{Conn, DbError};

/// How long a pending choice waits.
const CHOICE_MINUTES: i64 = 5;

/// One tenant the person may open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantOption {
    pub agent_id: String,
    pub tenant_name: String,
}

/// A choice made: the account to open, and what its session keeps of the login.
pub struct ChosenAccount {
    pub agent: Agent,
    pub provider_id: String,
    pub id_token: String,
}

/// Holds a provider login that named several `agents`; returns the browser's secret.
pub fn hold_tenant_choice(
    conn: &mut Conn,
    agents: &[Agent],
    provider_id: &str,
    id_token: &str,
) -> Result<String, DbError> {
    let now = crate::now();
    // Choices abandoned by others go as new ones come.
    diesel::delete(agent_tenant_choices::table.filter(agent_tenant_choices::expires_at.lt(now)))
        .execute(conn)?;
    let secret = new_secret();
    let ids: Vec<&str> = agents.iter().map(|agent| agent.id.as_str()).collect();
    diesel::insert_into(agent_tenant_choices::table)
        .values((
            agent_tenant_choices::id_hash.eq(hash_secret(&secret)),
            agent_tenant_choices::agent_ids.eq(ids.join(" ")),
            agent_tenant_choices::provider_id.eq(provider_id),
            agent_tenant_choices::id_token.eq(id_token),
            agent_tenant_choices::expires_at.eq(now + chrono::Duration::minutes(CHOICE_MINUTES)),
        ))
        .execute(conn)?;
    Ok(secret)
}

/// The tenants a pending choice offers (accounts still active), by tenant name; `None`
/// when the secret is unknown or expired.
pub fn tenant_options(conn: &mut Conn, secret: &str) -> Result<Option<Vec<TenantOption>>, DbError> {
    let Some((ids, _, _)) = pending(conn, secret)? else {
        return Ok(None);
    };
    let mut options = Vec::new();
    for id in ids.split_whitespace() {
        let Some(agent) = super::active_agent(conn, id)? else {
            continue;
        };
        let name: String = tenants::table
            .find(&agent.tenant_id)
            .select(tenants::name)
            .first(conn)?;
        options.push(TenantOption {
            agent_id: agent.id,
            tenant_name: name,
        });
    }
    options.sort_by(|a, b| a.tenant_name.cmp(&b.tenant_name));
    Ok(Some(options))
}

/// Consumes a pending choice (once, whoever races) for `agent_id`, which must be one
/// of the accounts it offered and still active.
pub fn take_tenant_choice(
    conn: &mut Conn,
    secret: &str,
    agent_id: &str,
) -> Result<Option<ChosenAccount>, DbError> {
    let Some((ids, provider_id, id_token)) = pending(conn, secret)? else {
        return Ok(None);
    };
    let taken =
        diesel::delete(agent_tenant_choices::table.find(hash_secret(secret))).execute(conn)?;
    if taken != 1 || !ids.split_whitespace().any(|id| id == agent_id) {
        return Ok(None);
    }
    Ok(
        super::active_agent(conn, agent_id)?.map(|agent| ChosenAccount {
            agent,
            provider_id,
            id_token,
        }),
    )
}

fn pending(conn: &mut Conn, secret: &str) -> Result<Option<(String, String, String)>, DbError> {
    Ok(agent_tenant_choices::table
        .find(hash_secret(secret))
        .filter(agent_tenant_choices::expires_at.gt(crate::now()))
        .select((
            agent_tenant_choices::agent_ids,
            agent_tenant_choices::provider_id,
            agent_tenant_choices::id_token,
        ))
        .first(conn)
        .optional()?)
}

/// Deletes the choices nobody made in time; returns how many went.
pub fn purge_expired_choices(
    conn: &mut Conn,
    now: chrono::NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(
        diesel::delete(
            agent_tenant_choices::table.filter(agent_tenant_choices::expires_at.le(now)),
        )
        .execute(conn)?,
    )
}
