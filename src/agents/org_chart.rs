//! The org chart: which departments each agent works for, and what that lets them
//! reach. Admins reach their whole tenant; other agents reach their own departments,
//! plus the documents they delivered themselves.

use diesel::prelude::*;

use super::{Agent, AgentRow, Role};
use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::{agent_departments, agents, departments};
use crate::db::{Conn, DbError};

/// What an agent may reach in their tenant.
#[derive(Debug, Clone)]
pub struct AgentScope {
    pub tenant_id: String,
    pub agent_id: String,
    /// Admins see and deliver for every department.
    pub whole_tenant: bool,
    /// The departments the agent works for.
    pub department_ids: Vec<String>,
}

impl AgentScope {
    /// Loads the departments of `agent`.
    pub fn load(conn: &mut Conn, agent: &Agent) -> Result<Self, DbError> {
        Ok(Self {
            tenant_id: agent.tenant_id.clone(),
            agent_id: agent.id.clone(),
            whole_tenant: agent.role == Role::Admin,
            department_ids: departments_of(conn, &agent.id)?,
        })
    }

    /// Whether the agent may deliver for, and see the deliveries of, this department.
    pub fn covers_department(&self, department_id: &str) -> bool {
        self.whole_tenant || self.department_ids.iter().any(|id| id == department_id)
    }

    /// The department a delivery goes to when the agent names none: their only one.
    pub fn implied_department(&self) -> Option<&str> {
        match self.department_ids.as_slice() {
            [only] if !self.whole_tenant => Some(only),
            _ => None,
        }
    }

    /// Whether a delivery without a department is allowed: only for admins and agents
    /// who belong to no department (a small commune with no org chart).
    pub fn may_deliver_without_department(&self) -> bool {
        self.whole_tenant || self.department_ids.is_empty()
    }
}

/// The ids of the departments an agent works for.
pub fn departments_of(conn: &mut Conn, agent_id: &str) -> Result<Vec<String>, DbError> {
    Ok(agent_departments::table
        .filter(agent_departments::agent_id.eq(agent_id))
        .select(agent_departments::department_id)
        .order(agent_departments::department_id.asc())
        .load(conn)?)
}

/// Adds an agent to a department (nothing happens if they already belong to it).
pub fn add_to_department(
    conn: &mut Conn,
    agent_id: &str,
    department_id: &str,
) -> Result<(), DbError> {
    let exists = agent_departments::table
        .find((agent_id, department_id))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(agent_departments::table)
            .values((
                agent_departments::agent_id.eq(agent_id),
                agent_departments::department_id.eq(department_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// An agent as the admin pages list them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentListing {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub department_ids: Vec<String>,
    pub created_at: chrono::NaiveDateTime,
}

/// The tenant's agents, by email, disabled ones included.
pub fn list_agents(conn: &mut Conn, tenant_id: &str) -> Result<Vec<AgentListing>, DbError> {
    let rows: Vec<AgentRow> = agents::table
        .filter(agents::tenant_id.eq(tenant_id))
        .order(agents::email.asc())
        .select(AgentRow::as_select())
        .load(conn)?;
    let memberships: Vec<(String, String)> = agent_departments::table
        .inner_join(agents::table)
        .filter(agents::tenant_id.eq(tenant_id))
        .select((
            agent_departments::agent_id,
            agent_departments::department_id,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|row| {
            let department_ids = memberships
                .iter()
                .filter(|(agent_id, _)| *agent_id == row.id)
                .map(|(_, department_id)| department_id.clone())
                .collect();
            listing(row, department_ids)
        })
        .collect()
}

/// One agent of the tenant, disabled or not.
pub fn find_listing(
    conn: &mut Conn,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<AgentListing>, DbError> {
    let row: Option<AgentRow> = agents::table
        .filter(agents::tenant_id.eq(tenant_id))
        .filter(agents::id.eq(agent_id))
        .select(AgentRow::as_select())
        .first(conn)
        .optional()?;
    match row {
        None => Ok(None),
        Some(row) => {
            let department_ids = departments_of(conn, &row.id)?;
            listing(row, department_ids).map(Some)
        }
    }
}

fn listing(row: AgentRow, department_ids: Vec<String>) -> Result<AgentListing, DbError> {
    let disabled = row.disabled_at.is_some();
    let created_at = row.created_at;
    let agent = Agent::try_from(row)?;
    Ok(AgentListing {
        id: agent.id,
        email: agent.email,
        role: agent.role,
        disabled,
        department_ids,
        created_at,
    })
}

/// What an admin changes about an agent.
#[derive(Debug, Clone)]
pub struct AgentChanges {
    pub role: Role,
    pub department_ids: Vec<String>,
    pub disabled: bool,
}

/// Why an org chart change was refused; the message is safe to show to the admin.
#[derive(Debug, thiserror::Error)]
pub enum OrgChartError {
    #[error("no such agent in this tenant")]
    UnknownAgent,
    #[error("no such department in this tenant")]
    UnknownDepartment,
    #[error("you cannot remove your own admin role or disable your own account")]
    OwnAccount,
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for OrgChartError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Sets an agent's role, departments and whether the account is disabled. Run inside
/// a transaction: the membership is replaced as a whole.
pub fn update_agent(
    conn: &mut Conn,
    admin: &Agent,
    agent_id: &str,
    changes: &AgentChanges,
) -> Result<(), OrgChartError> {
    // An admin who demotes or disables themselves could leave the tenant with nobody
    // able to manage it.
    if agent_id == admin.id && (changes.role != Role::Admin || changes.disabled) {
        return Err(OrgChartError::OwnAccount);
    }
    let current =
        find_listing(conn, &admin.tenant_id, agent_id)?.ok_or(OrgChartError::UnknownAgent)?;
    let known: i64 = departments::table
        .filter(departments::tenant_id.eq(&admin.tenant_id))
        .filter(departments::id.eq_any(&changes.department_ids))
        .count()
        .get_result(conn)?;
    let mut wanted = changes.department_ids.clone();
    wanted.sort();
    wanted.dedup();
    if usize::try_from(known).ok() != Some(wanted.len()) {
        return Err(OrgChartError::UnknownDepartment);
    }
    let disabled_at = match (current.disabled, changes.disabled) {
        (false, true) => Some(Some(crate::now())),
        (true, false) => Some(None),
        _ => None,
    };
    diesel::update(agents::table.find(agent_id))
        .set(agents::role.eq(changes.role.as_str()))
        .execute(conn)?;
    let mut ended = serde_json::Value::Null;
    if let Some(disabled_at) = disabled_at {
        diesel::update(agents::table.find(agent_id))
            .set(agents::disabled_at.eq(disabled_at))
            .execute(conn)?;
        if disabled_at.is_some() {
            // For good: enabling the account again later revives neither.
            let tokens = super::api_tokens::revoke_all_api_tokens(conn, agent_id)?;
            let sessions = crate::auth::sessions::end_sessions_of(
                conn,
                crate::auth::sessions::SessionKind::Agent,
                agent_id,
            )?;
            ended = serde_json::json!({ "tokens_revoked": tokens, "sessions_ended": sessions });
        }
    }
    diesel::delete(agent_departments::table.filter(agent_departments::agent_id.eq(agent_id)))
        .execute(conn)?;
    for department_id in &wanted {
        diesel::insert_into(agent_departments::table)
            .values((
                agent_departments::agent_id.eq(agent_id),
                agent_departments::department_id.eq(department_id),
            ))
            .execute(conn)?;
    }
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(admin.id.clone()), "agent.updated")
            .tenant(&admin.tenant_id)
            .subject("agent", agent_id)
            .details(serde_json::json!({
                "role": changes.role.as_str(),
                "department_ids": wanted,
                "disabled": changes.disabled,
                "ended": ended,
            })),
    )?;
    Ok(())
}
