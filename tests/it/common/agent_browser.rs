//! A browser signed in as an agent. The session is opened directly in the database:
//! tests of agent pages exercise what a role may reach, not the login (which
//! tests/agent_login.rs covers end to end).

use std::sync::Arc;
use std::time::Duration;

use eguichet::agents::{self, AgentEmail, Role, org_chart};
use eguichet::audit::Actor;
use eguichet::auth::sessions::{self, SessionKind, SessionPolicy};
use eguichet::tenants::{self, Slug};
use reqwest::cookie::Jar;

use super::TestApp;
use super::html::hidden_fields;

pub struct AgentBrowser {
    pub client: reqwest::Client,
    pub base: String,
    pub agent_id: String,
}

impl TestApp {
    /// A browser signed in as a new agent of the default tenant (or of `tenant`,
    /// created on demand) who works for `departments` (existing slugs).
    pub async fn agent_browser(
        &self,
        email: &str,
        role: Role,
        tenant: Option<&str>,
        departments: &[&str],
    ) -> AgentBrowser {
        let email = AgentEmail::parse(email).unwrap();
        let tenant_slug = tenant.map(str::to_owned);
        let default = self.state.default_tenant.clone();
        let slugs: Vec<String> = departments.iter().map(|s| (*s).to_owned()).collect();
        let (agent_id, cookie) = self
            .state
            .db
            .write(move |conn| -> anyhow::Result<(String, String)> {
                let tenant = match tenant_slug {
                    Some(slug) => {
                        tenants::ensure_tenant(conn, &Slug::parse(&slug)?, "Autre commune")?
                    }
                    None => default,
                };
                let agent =
                    agents::create_agent(conn, &tenant, &email, role, None, Actor::Operator)?;
                for slug in slugs {
                    let department = tenants::find_department(conn, &tenant.id, &slug)?.unwrap();
                    org_chart::add_to_department(conn, &agent.id, &department.id)?;
                }
                let policy = SessionPolicy {
                    idle: Duration::from_secs(1800),
                    absolute: Duration::from_secs(12 * 3600),
                };
                let opened = sessions::open_session(
                    conn,
                    policy,
                    SessionKind::Agent,
                    &agent.id,
                    None,
                    None,
                )?;
                Ok((agent.id, opened.cookie_value))
            })
            .await
            .unwrap();
        self.browser_with_cookie("eg_agent_session", &cookie, &agent_id)
    }

    /// A browser that holds the cookie `name=value` (a session opened by the test), for
    /// `agent_id` (empty for a citizen's browser).
    pub fn browser_with_cookie(&self, name: &str, value: &str, agent_id: &str) -> AgentBrowser {
        let jar = Arc::new(Jar::default());
        let url: reqwest::Url = self.address.parse().unwrap();
        jar.add_cookie_str(&format!("{name}={value}; Path=/"), &url);
        AgentBrowser {
            client: reqwest::Client::builder()
                .cookie_provider(jar)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.address.clone(),
            agent_id: agent_id.to_owned(),
        }
    }
}

impl AgentBrowser {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The session's CSRF token, read from the agent home page.
    pub async fn csrf(&self) -> String {
        let html = self.get("/agent").await.text().await.unwrap();
        hidden_fields(&html)
            .into_iter()
            .find(|(name, _)| name == "csrf")
            .unwrap()
            .1
    }
}
