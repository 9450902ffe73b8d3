//! The tenant admin's pages: the agents (role, departments, disabled) and the
//! departments (create, rename, archive). Every change is audited by the services.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::api_tokens::{self, Revocation, TokenListing, TokenState};
use super::org_chart::{self, AgentChanges, AgentListing, OrgChartError};
use super::{AgentEmail, AgentError, Role};
use crate::audit::Actor;
use crate::state::AppState;
use crate::tenants::{self, Department, Slug, TenantError};
use crate::web::agent_session::AgentSession;
use crate::web::page::see_other;
use crate::web::page::{Page, PageError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/admin/agents", web::get().to(agents_page))
        .route("/agent/admin/agents", web::post().to(create_agent))
        .route("/agent/admin/agents/{id}", web::get().to(agent_page))
        .route("/agent/admin/agents/{id}", web::post().to(update_agent))
        .route(
            "/agent/admin/agents/{id}/tokens/{token}/revoke",
            web::post().to(revoke_token),
        )
        .route("/agent/admin/departments", web::get().to(departments_page))
        .route(
            "/agent/admin/departments",
            web::post().to(create_department),
        )
        .route(
            "/agent/admin/departments/{id}",
            web::post().to(update_department),
        );
}

const ADMIN: &[Role] = &[Role::Admin];
const ROLES: [Role; 4] = [Role::Admin, Role::Agent, Role::Official, Role::Distributor];

/// An agent's line, with department names resolved.
#[derive(Serialize)]
struct AgentLine {
    #[serde(flatten)]
    agent: AgentListing,
    departments: Vec<String>,
}

fn agent_line(agent: AgentListing, departments: &[Department]) -> AgentLine {
    let names = agent
        .department_ids
        .iter()
        .filter_map(|id| departments.iter().find(|d| &d.id == id))
        .map(|d| d.name.clone())
        .collect();
    AgentLine {
        agent,
        departments: names,
    }
}

/// Form fields that may repeat (department checkboxes) arrive as a list of pairs.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn all<'a>(pairs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn parse_role(text: &str) -> Option<Role> {
    ROLES.into_iter().find(|role| role.as_str() == text)
}

async fn agents_page(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    render_agents(&agent, &page, &state, StatusCode::OK, None, "", "agent").await
}

async fn render_agents(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    status: StatusCode,
    error: Option<&'static str>,
    email: &str,
    role: &str,
) -> Result<HttpResponse, PageError> {
    let tenant_id = agent.agent.tenant_id.clone();
    let (agents, departments) = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            Ok((
                org_chart::list_agents(conn, &tenant_id)?,
                tenants::list_departments(conn, &tenant_id)?,
            ))
        })
        .await?;
    let lines: Vec<AgentLine> = agents
        .into_iter()
        .map(|listing| agent_line(listing, &departments))
        .collect();
    let mut context = agent.context(page);
    context.insert("agents", &lines);
    context.insert("departments", &departments);
    context.insert("roles", &ROLES.map(Role::as_str));
    context.insert("email", email);
    context.insert("role", role);
    if let Some(error) = error {
        context.insert("error", error);
    }
    Ok(page.render(status, "admin_agents.html", &context))
}

async fn create_agent(
    agent: AgentSession,
    page: Page,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    let pairs = form_pairs(&body);
    agent.check_csrf(field(&pairs, "csrf"))?;
    let email_text = field(&pairs, "email").to_owned();
    let role_text = field(&pairs, "role").to_owned();
    let refuse = |key: &'static str| {
        render_agents(
            &agent,
            &page,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(key),
            &email_text,
            &role_text,
        )
    };
    let Ok(email) = AgentEmail::parse(&email_text) else {
        return refuse("admin-error-email").await;
    };
    let Some(role) = parse_role(&role_text) else {
        return refuse("admin-error-role").await;
    };
    let department_ids: Vec<String> = all(&pairs, "department").map(str::to_owned).collect();
    let admin = agent.agent.clone();
    let created = state
        .db
        .write(move |conn| -> Result<String, AdminWriteError> {
            let tenant = tenants::tenant_by_id(conn, &admin.tenant_id)?
                .ok_or(AdminWriteError::Refused("admin-error-internal"))?;
            let created = super::create_agent(
                conn,
                &tenant,
                &email,
                role,
                None,
                Actor::Agent(admin.id.clone()),
            )
            .map_err(|error| match error {
                AgentError::Database(error) => AdminWriteError::Database(error),
                AgentError::Duplicate => AdminWriteError::Refused("admin-error-duplicate"),
                _ => AdminWriteError::Refused("admin-error-email"),
            })?;
            let changes = AgentChanges {
                role,
                department_ids,
                disabled: false,
            };
            org_chart::update_agent(conn, &admin, &created.id, &changes)?;
            Ok(created.id)
        })
        .await;
    match created {
        Ok(id) => Ok(see_other(&format!("/agent/admin/agents/{id}"))),
        Err(AdminWriteError::Refused(key)) => refuse(key).await,
        Err(AdminWriteError::Database(error)) => Err(PageError::internal(page.lang, error)),
    }
}

/// Why an admin change was not made: a message key for the form, or a failure. Either
/// way the transaction is rolled back.
#[derive(Debug)]
enum AdminWriteError {
    Refused(&'static str),
    Database(crate::db::DbError),
}

impl From<crate::db::DbError> for AdminWriteError {
    fn from(error: crate::db::DbError) -> Self {
        Self::Database(error)
    }
}

impl From<diesel::result::Error> for AdminWriteError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<OrgChartError> for AdminWriteError {
    fn from(error: OrgChartError) -> Self {
        match error {
            OrgChartError::Database(error) => Self::Database(error),
            OrgChartError::UnknownAgent => Self::Refused("not-found-message"),
            OrgChartError::UnknownDepartment => Self::Refused("admin-error-department"),
            OrgChartError::OwnAccount => Self::Refused("admin-error-own-account"),
        }
    }
}

impl From<TenantError> for AdminWriteError {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::Database(error) => Self::Database(error),
            TenantError::DuplicateDepartment(_) => {
                Self::Refused("admin-error-duplicate-department")
            }
            TenantError::InvalidDepartmentName => Self::Refused("admin-error-department-name"),
            TenantError::UnknownDepartment | TenantError::UnknownTenant(_) => {
                Self::Refused("not-found-message")
            }
        }
    }
}

async fn agent_page(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    render_agent(&agent, &page, &state, &path, StatusCode::OK, None).await
}

async fn render_agent(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    agent_id: &str,
    status: StatusCode,
    error: Option<&'static str>,
) -> Result<HttpResponse, PageError> {
    let (tenant_id, agent_id) = (agent.agent.tenant_id.clone(), agent_id.to_owned());
    let now = crate::now();
    let (listing, departments, tokens) = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let listing = org_chart::find_listing(conn, &tenant_id, &agent_id)?;
            // Only once the agent is known to be of this tenant.
            let tokens = match &listing {
                Some(listing) => api_tokens::list_api_tokens(conn, &listing.id, now)?,
                None => Vec::new(),
            };
            Ok((
                listing,
                tenants::list_departments(conn, &tenant_id)?,
                tokens,
            ))
        })
        .await?;
    let listing = listing.ok_or_else(|| PageError::not_found(page.lang))?;
    let tokens: Vec<TokenLine> = tokens.into_iter().map(TokenLine::from).collect();
    let is_self = listing.id == agent.agent.id;
    let mut context = agent.context(page);
    context.insert("member", &agent_line(listing, &departments));
    context.insert("departments", &departments);
    context.insert("roles", &ROLES.map(Role::as_str));
    context.insert("is_self", &is_self);
    context.insert("tokens", &tokens);
    if let Some(error) = error {
        context.insert("error", error);
    }
    Ok(page.render(status, "admin_agent.html", &context))
}

/// An API token as the admin page shows it (dates in UTC, never the secret).
#[derive(Serialize)]
struct TokenLine {
    id: String,
    name: String,
    created: String,
    expires: Option<String>,
    last_used: Option<String>,
    state: TokenState,
}

impl From<TokenListing> for TokenLine {
    fn from(token: TokenListing) -> Self {
        let date = |at: chrono::NaiveDateTime| at.format("%Y-%m-%d %H:%M").to_string();
        Self {
            id: token.id,
            name: token.name,
            created: date(token.created_at),
            expires: token.expires_at.map(date),
            last_used: token.last_used_at.map(date),
            state: token.state,
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /agent/admin/agents/{id}/tokens/{token}/revoke`: revokes one of the agent's
/// tokens (audited by the service).
async fn revoke_token(
    agent: AgentSession,
    page: Page,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    agent.check_csrf(&form.csrf)?;
    let (agent_id, token_id) = path.into_inner();
    let admin = agent.agent.clone();
    let target = agent_id.clone();
    let revoked = state
        .db
        .write(move |conn| -> Result<_, crate::db::DbError> {
            let Some(listing) = org_chart::find_listing(conn, &admin.tenant_id, &target)? else {
                return Ok(None);
            };
            let owner = super::Agent {
                id: listing.id,
                tenant_id: admin.tenant_id.clone(),
                email: listing.email,
                role: listing.role,
            };
            api_tokens::revoke_api_token(conn, &owner, &token_id, Actor::Agent(admin.id.clone()))
                .map(Some)
        })
        .await?;
    match revoked {
        None | Some(Revocation::NotFound | Revocation::Ambiguous) => {
            Err(PageError::not_found(page.lang))
        }
        Some(Revocation::Revoked(_)) => Ok(see_other(&format!("/agent/admin/agents/{agent_id}"))),
    }
}

async fn update_agent(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    let pairs = form_pairs(&body);
    agent.check_csrf(field(&pairs, "csrf"))?;
    let Some(role) = parse_role(field(&pairs, "role")) else {
        return render_agent(
            &agent,
            &page,
            &state,
            &path,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("admin-error-role"),
        )
        .await;
    };
    let changes = AgentChanges {
        role,
        department_ids: all(&pairs, "department").map(str::to_owned).collect(),
        disabled: field(&pairs, "disabled") == "on",
    };
    let (admin, agent_id) = (agent.agent.clone(), path.clone());
    let outcome = state
        .db
        .write(move |conn| -> Result<(), AdminWriteError> {
            Ok(org_chart::update_agent(conn, &admin, &agent_id, &changes)?)
        })
        .await;
    let error = match outcome {
        Ok(()) => return Ok(see_other(&format!("/agent/admin/agents/{path}"))),
        Err(AdminWriteError::Refused("not-found-message")) => {
            return Err(PageError::not_found(page.lang));
        }
        Err(AdminWriteError::Refused(key)) => key,
        Err(AdminWriteError::Database(error)) => return Err(PageError::internal(page.lang, error)),
    };
    render_agent(
        &agent,
        &page,
        &state,
        &path,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(error),
    )
    .await
}

async fn departments_page(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    render_departments(&agent, &page, &state, StatusCode::OK, None).await
}

async fn render_departments(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    status: StatusCode,
    error: Option<&'static str>,
) -> Result<HttpResponse, PageError> {
    let tenant_id = agent.agent.tenant_id.clone();
    let departments = state
        .db
        .read(move |conn| tenants::list_departments(conn, &tenant_id))
        .await?;
    let mut context = agent.context(page);
    context.insert("departments", &departments);
    if let Some(error) = error {
        context.insert("error", error);
    }
    Ok(page.render(status, "admin_departments.html", &context))
}

#[derive(Deserialize)]
struct NewDepartmentForm {
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
}

async fn create_department(
    agent: AgentSession,
    page: Page,
    form: web::Form<NewDepartmentForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    agent.check_csrf(&form.csrf)?;
    let Ok(slug) = Slug::parse(form.slug.trim()) else {
        return render_departments(
            &agent,
            &page,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("admin-error-slug"),
        )
        .await;
    };
    let (admin, name) = (agent.agent.clone(), form.name.clone());
    let outcome = state
        .db
        .write(move |conn| -> Result<(), AdminWriteError> {
            let tenant = tenants::tenant_by_id(conn, &admin.tenant_id)?
                .ok_or(AdminWriteError::Refused("not-found-message"))?;
            tenants::create_department(conn, &tenant, &slug, &name, Actor::Agent(admin.id))?;
            Ok(())
        })
        .await;
    department_outcome(&agent, &page, &state, outcome).await
}

async fn department_outcome(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    outcome: Result<(), AdminWriteError>,
) -> Result<HttpResponse, PageError> {
    let error = match outcome {
        Ok(()) => return Ok(see_other("/agent/admin/departments")),
        Err(AdminWriteError::Refused("not-found-message")) => {
            return Err(PageError::not_found(page.lang));
        }
        Err(AdminWriteError::Refused(key)) => key,
        Err(AdminWriteError::Database(error)) => return Err(PageError::internal(page.lang, error)),
    };
    render_departments(
        agent,
        page,
        state,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(error),
    )
    .await
}

#[derive(Deserialize)]
struct DepartmentForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    archived: String,
}

async fn update_department(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<DepartmentForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(ADMIN)?;
    agent.check_csrf(&form.csrf)?;
    let (admin, id) = (agent.agent.clone(), path.into_inner());
    let (name, archived) = (form.name.clone(), form.archived == "on");
    let outcome = state
        .db
        .write(move |conn| -> Result<(), AdminWriteError> {
            tenants::update_department(
                conn,
                &admin.tenant_id,
                &id,
                &name,
                archived,
                Actor::Agent(admin.id),
            )?;
            Ok(())
        })
        .await;
    department_outcome(&agent, &page, &state, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_checkboxes_are_all_kept() {
        let pairs = form_pairs(b"csrf=x&department=a&department=b&role=agent");
        assert_eq!(all(&pairs, "department").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(field(&pairs, "role"), "agent");
        assert_eq!(parse_role("official"), Some(Role::Official));
        assert_eq!(parse_role("root"), None);
    }
}
