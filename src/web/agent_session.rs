//! The signed-in agent at the HTTP edge: the agent session cookie (separate from the
//! citizen's, so a kiosk may hold both), the [`AgentSession`] extractor every agent page
//! is built on, and the navigation of the agent pages.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::Serialize;

use super::page::{Lang, Page, PageError};
use super::session::AuthState;
use crate::agents::{self, Agent, Role};
use crate::auth::sessions::{self, Session, SessionKind};
use crate::state::AppState;

/// The agent session cookie.
pub const AGENT_SESSION_COOKIE: &str = "eg_agent_session";

/// One entry of the agent navigation: add a line here when a new agent page exists.
struct NavEntry {
    href: &'static str,
    /// Locale key of the label.
    key: &'static str,
    /// Who sees it.
    roles: &'static [Role],
}

const EVERYONE: &[Role] = &[Role::Admin, Role::Agent, Role::Official, Role::Distributor];

const AGENT_NAV: &[NavEntry] = &[
    NavEntry {
        href: "/agent",
        key: "agent-nav-home",
        roles: EVERYONE,
    },
    NavEntry {
        href: "/agent/deliveries",
        key: "agent-nav-deliveries",
        roles: &[Role::Admin, Role::Agent],
    },
    NavEntry {
        href: "/agent/bulk",
        key: "agent-nav-bulk",
        roles: &[Role::Admin, Role::Agent],
    },
    NavEntry {
        href: "/agent/dashboard",
        key: "agent-nav-dashboard",
        roles: &[Role::Admin, Role::Official],
    },
    NavEntry {
        href: "/agent/vouchers",
        key: "agent-nav-vouchers",
        roles: &[Role::Admin, Role::Agent],
    },
    NavEntry {
        href: "/agent/scan",
        key: "agent-nav-scan",
        roles: &[Role::Admin, Role::Agent, Role::Distributor],
    },
    NavEntry {
        href: "/agent/admin/agents",
        key: "agent-nav-agents",
        roles: &[Role::Admin],
    },
    NavEntry {
        href: "/agent/admin/departments",
        key: "agent-nav-departments",
        roles: &[Role::Admin],
    },
    NavEntry {
        href: "/agent/account",
        key: "agent-nav-account",
        roles: EVERYONE,
    },
];

/// A navigation entry as templates see it.
#[derive(Serialize)]
struct NavLink {
    href: &'static str,
    key: &'static str,
    current: bool,
}

/// A logged-in agent, reloaded at each request (a disabled agent is logged out).
pub struct AgentSession {
    pub session: Session,
    pub agent: Agent,
    pub lang: Lang,
    path: String,
}

impl AgentSession {
    /// A template context for an agent page: the agent navigation, who is signed in,
    /// and the CSRF token every form carries.
    pub fn context(&self, page: &Page) -> tera::Context {
        let mut context = page.context();
        let nav: Vec<NavLink> = AGENT_NAV
            .iter()
            .filter(|entry| entry.roles.contains(&self.agent.role))
            .map(|entry| NavLink {
                href: entry.href,
                key: entry.key,
                current: entry.href == self.path,
            })
            .collect();
        context.insert("agent_signed_in", &true);
        context.insert("agent_nav", &nav);
        context.insert("agent_email", &self.agent.email);
        context.insert("agent_role", self.agent.role.as_str());
        context.insert("csrf", &self.session.csrf_token);
        context
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        if sessions::secrets_match(submitted, &self.session.csrf_token) {
            Ok(())
        } else {
            Err(PageError::csrf(self.lang))
        }
    }

    /// Lets the request through only for the given roles (a 403 page otherwise).
    pub fn require(&self, allowed: &[Role]) -> Result<(), PageError> {
        if allowed.contains(&self.agent.role) {
            Ok(())
        } else {
            Err(PageError::forbidden(self.lang))
        }
    }
}

impl FromRequest for AgentSession {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let lang = Page::of(request).lang;
        // A page one can reload goes to the login form; a form post gets the
        // "session expired" page (its data cannot be carried over).
        let not_logged_in = if request.method() == Method::GET {
            PageError::redirect(lang, "/agent/login")
        } else {
            PageError::session_expired(lang).with_next("/agent/login", "login-again")
        };
        let cookie = request
            .cookie(AGENT_SESSION_COOKIE)
            .map(|c| c.value().to_owned());
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let auth = request.app_data::<web::Data<AuthState>>().cloned();
        let path = request.path().to_owned();
        Box::pin(async move {
            let (Some(cookie), Some(state), Some(auth)) = (cookie, state, auth) else {
                return Err(not_logged_in);
            };
            let policy = auth.agent_policy;
            let lookup = cookie.clone();
            let found = state
                .db
                .read(move |conn| -> Result<_, crate::db::DbError> {
                    let Some(session) =
                        sessions::find_session(conn, policy, SessionKind::Agent, &lookup)?
                    else {
                        return Ok(None);
                    };
                    let agent = agents::active_agent(conn, &session.subject_id)?;
                    Ok(Some((session, agent)))
                })
                .await
                .map_err(|error| PageError::internal(lang, error))?;
            match found {
                Some((session, Some(agent))) => Ok(AgentSession {
                    session,
                    agent,
                    lang,
                    path,
                }),
                Some((_, None)) => {
                    // Disabled since login: the session ends now.
                    state
                        .db
                        .write(move |conn| sessions::end_session(conn, &cookie))
                        .await
                        .map_err(|error| PageError::internal(lang, error))?;
                    Err(not_logged_in)
                }
                None => Err(not_logged_in),
            }
        })
    }
}
