//! Municipal staff: their accounts, roles and API tokens. Tokens are shown once and
//! stored only as a SHA-256 hash (they are 256-bit random, so a plain hash suffices).

pub mod admin_pages;
pub mod api_tokens;
pub mod credentials;
pub mod login;
pub mod org_chart;
pub mod password_queue;
pub mod tenant_choice;
mod token;

use diesel::prelude::*;
use serde::Serialize;

pub use api_tokens::{
    IssuedToken, TokenName, TokenRequest, agent_for_token, issue_api_token, revoke_api_token,
};
pub use token::{ApiToken, TokenError};

use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::agents;
use crate::db::{Conn, DbError};
use crate::tenants::{Department, Tenant};

/// What an agent may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages agents, departments and retention; reads the audit log.
    Admin,
    /// Delivers documents and runs campaigns.
    Agent,
    /// Elected official: aggregated dashboards only.
    Official,
    /// Scans vouchers at a distribution site.
    Distributor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Official => "official",
            Self::Distributor => "distributor",
        }
    }

    pub(crate) fn from_stored(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "agent" => Some(Self::Agent),
            "official" => Some(Self::Official),
            "distributor" => Some(Self::Distributor),
            _ => None,
        }
    }

    /// Whether this role may deliver documents.
    pub fn can_deliver(self) -> bool {
        matches!(self, Self::Admin | Self::Agent)
    }
}

/// A work email, lower-cased, syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEmail(String);

impl AgentEmail {
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        let text = text.trim().to_lowercase();
        if text.len() <= 254 && email_address::EmailAddress::is_valid(&text) {
            Ok(Self(text))
        } else {
            Err(AgentError::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An agent account.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: Role,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = agents)]
pub(crate) struct AgentRow {
    id: String,
    tenant_id: String,
    email: String,
    role: String,
    department_id: Option<String>,
    created_at: chrono::NaiveDateTime,
    disabled_at: Option<chrono::NaiveDateTime>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = DbError;

    fn try_from(row: AgentRow) -> Result<Self, DbError> {
        let role = Role::from_stored(&row.role).ok_or_else(|| {
            DbError::Query(diesel::result::Error::DeserializationError(
                format!("unknown role {:?}", row.role).into(),
            ))
        })?;
        Ok(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            email: row.email,
            role,
        })
    }
}

/// Errors of agent management and authentication.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("not a valid email address")]
    InvalidEmail,
    #[error("an agent with this email already exists in this tenant")]
    Duplicate,
    #[error("no agent with this email in this tenant")]
    Unknown,
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for AgentError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Creates an agent in `tenant`.
pub fn create_agent(
    conn: &mut Conn,
    tenant: &Tenant,
    email: &AgentEmail,
    role: Role,
    department: Option<&Department>,
    actor: Actor,
) -> Result<Agent, AgentError> {
    if find_agent(conn, &tenant.id, email)?.is_some() {
        return Err(AgentError::Duplicate);
    }
    let row = AgentRow {
        id: crate::new_id(),
        tenant_id: tenant.id.clone(),
        email: email.as_str().to_owned(),
        role: role.as_str().to_owned(),
        department_id: None,
        created_at: crate::now(),
        disabled_at: None,
    };
    diesel::insert_into(agents::table)
        .values(&row)
        .execute(conn)?;
    if let Some(department) = department {
        org_chart::add_to_department(conn, &row.id, &department.id)?;
    }
    audit::record(
        conn,
        AuditEvent::new(actor, "agent.created")
            .tenant(&tenant.id)
            .subject("agent", &row.id)
            .details(serde_json::json!({ "role": role.as_str() })),
    )?;
    Ok(Agent::try_from(row)?)
}

/// The active agent with this email in the tenant.
pub fn find_agent(
    conn: &mut Conn,
    tenant_id: &str,
    email: &AgentEmail,
) -> Result<Option<Agent>, DbError> {
    agents::table
        .filter(agents::tenant_id.eq(tenant_id))
        .filter(agents::email.eq(email.as_str()))
        .filter(agents::disabled_at.is_null())
        .select(AgentRow::as_select())
        .first(conn)
        .optional()?
        .map(Agent::try_from)
        .transpose()
}

/// The active (not disabled) agent with this id.
pub fn active_agent(conn: &mut Conn, agent_id: &str) -> Result<Option<Agent>, DbError> {
    agents::table
        .find(agent_id)
        .filter(agents::disabled_at.is_null())
        .select(AgentRow::as_select())
        .first(conn)
        .optional()?
        .map(Agent::try_from)
        .transpose()
}

/// Every active agent with this work email, whatever their tenant.
pub fn active_agents_with_email(
    conn: &mut Conn,
    email: &AgentEmail,
) -> Result<Vec<Agent>, DbError> {
    agents::table
        .filter(agents::email.eq(email.as_str()))
        .filter(agents::disabled_at.is_null())
        .select(AgentRow::as_select())
        .limit(10)
        .load(conn)?
        .into_iter()
        .map(Agent::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        let email = AgentEmail::parse("  Marie.Dupont@Mairie-Exemple.fr ").unwrap();
        assert_eq!(email.as_str(), "marie.dupont@mairie-exemple.fr");
        assert!(AgentEmail::parse("marie").is_err());
        assert!(AgentEmail::parse("").is_err());
    }
}
