//! API tokens and sessions end when they should, and stay ended: a disabled agent
//! enabled again gets back neither tokens nor sessions, a revoked or expired token is
//! refused, a password change logs the agent out everywhere else, a new login ends the
//! browser's previous session, and one address cannot fill the pending logins.

use std::time::Duration;

use crate::common::agent_browser::AgentBrowser;
use crate::common::citizen_browser::CitizenBrowser;
use crate::common::html::location;
use crate::common::{Options, TestApp, spawn_app, spawn_app_with};
use chrono::TimeDelta;
use diesel::prelude::*;
use eguichet::agents::api_tokens::{self, Revocation, TokenState};
use eguichet::agents::credentials::{self, NewPassword};
use eguichet::agents::{self, Agent, AgentEmail, TokenName, TokenRequest};
use eguichet::audit::Actor;
use eguichet::auth::sessions::{self, SessionKind, SessionPolicy};
use eguichet::db::DbError;
use eguichet::db::schema::{
    api_tokens as api_tokens_table, audit_events, auth_flows, sessions as sessions_table,
};
use reqwest::StatusCode;

const PASSWORD: &str = "une phrase de passe assez longue";

fn policy() -> SessionPolicy {
    SessionPolicy {
        idle: Duration::from_secs(1800),
        absolute: Duration::from_secs(12 * 3600),
    }
}

/// The agent a browser from `agent_browser` is signed in as.
async fn agent_of(app: &TestApp, browser: &AgentBrowser) -> Agent {
    let id = browser.agent_id.clone();
    app.state
        .db
        .read(move |conn| agents::active_agent(conn, &id))
        .await
        .unwrap()
        .unwrap()
}

/// Issues a token for `agent`, named `name`, expiring at `expires_at`.
async fn token_for(
    app: &TestApp,
    agent: &Agent,
    name: &str,
    expires_at: Option<chrono::NaiveDateTime>,
) -> (String, String) {
    let agent = agent.clone();
    let request = TokenRequest {
        name: TokenName::parse(name).unwrap(),
        expires_at,
    };
    app.state
        .db
        .write(move |conn| agents::issue_api_token(conn, &agent, &request, Actor::Operator))
        .await
        .map(|issued| (issued.id, issued.token.reveal().to_owned()))
        .unwrap()
}

/// What the API answers `token` (a document that does not exist: 404 once authenticated).
async fn api_status(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .get(format!(
            "{}/api/v1/documents/{}",
            app.address,
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A browser holding an agent session opened for `agent` (as a login would).
async fn signed_in(app: &TestApp, agent: &Agent) -> (AgentBrowser, String) {
    let who = agent.clone();
    let cookie = app
        .state
        .db
        .write(move |conn| {
            sessions::open_session(conn, policy(), SessionKind::Agent, &who.id, None, None)
        })
        .await
        .unwrap()
        .cookie_value;
    (
        app.browser_with_cookie("eg_agent_session", &cookie, &agent.id),
        cookie,
    )
}

async fn audit_count(app: &TestApp, action: &'static str) -> i64 {
    app.state
        .db
        .read(move |conn| -> Result<i64, DbError> {
            Ok(audit_events::table
                .filter(audit_events::action.eq(action))
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap()
}

async fn session_count(app: &TestApp, kind: &'static str) -> i64 {
    app.state
        .db
        .read(move |conn| -> Result<i64, DbError> {
            Ok(sessions_table::table
                .filter(sessions_table::kind.eq(kind))
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn enabling_a_disabled_agent_again_revives_neither_its_tokens_nor_its_sessions() {
    let app = spawn_app().await;
    let admin = app
        .agent_browser("admin@mairie.example", agents::Role::Admin, None, &[])
        .await;
    let target = app
        .agent_browser("voirie@mairie.example", agents::Role::Agent, None, &[])
        .await;
    let agent = agent_of(&app, &target).await;
    let (_, token) = token_for(&app, &agent, "compta", None).await;
    assert_eq!(api_status(&app, &token).await, StatusCode::NOT_FOUND);
    assert_eq!(target.get("/agent").await.status(), StatusCode::OK);

    // Disabled, then enabled again, without the agent doing anything in between.
    let csrf = admin.csrf().await;
    let page = format!("/agent/admin/agents/{}", agent.id);
    let disabled = admin
        .post(
            &page,
            &[("csrf", &csrf), ("role", "agent"), ("disabled", "on")],
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let enabled = admin
        .post(&page, &[("csrf", &csrf), ("role", "agent")])
        .await;
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    assert!(
        agent_of(&app, &target).await.id == agent.id,
        "enabled again"
    );

    // The old token and the old session stay dead.
    assert_eq!(api_status(&app, &token).await, StatusCode::UNAUTHORIZED);
    let home = target.get("/agent").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/agent/login");
    // The admin page says so.
    let html = admin.get(&page).await.text().await.unwrap();
    assert!(html.contains("compta"), "{html}");
    assert!(
        html.contains("révoqué") || html.contains("revoked"),
        "{html}"
    );
    // A new token works.
    let (_, fresh) = token_for(&app, &agent, "compta 2", None).await;
    assert_eq!(api_status(&app, &fresh).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_revoking_takes_the_admins_form() {
    let app = spawn_app().await;
    let admin = app
        .agent_browser("admin@mairie.example", agents::Role::Admin, None, &[])
        .await;
    let target = app
        .agent_browser("voirie@mairie.example", agents::Role::Agent, None, &[])
        .await;
    let agent = agent_of(&app, &target).await;
    let (kept_id, kept) = token_for(&app, &agent, "logiciel métier", None).await;
    let (revoked_id, revoked) = token_for(&app, &agent, "ancien poste", None).await;
    let page = format!("/agent/admin/agents/{}", agent.id);
    let html = admin.get(&page).await.text().await.unwrap();
    assert!(html.contains("logiciel métier") && html.contains("ancien poste"));
    assert!(!html.contains(&kept[4..]) && !html.contains(&revoked[4..]));

    let action = format!("{page}/tokens/{revoked_id}/revoke");
    // Without the session's CSRF token: refused, nothing revoked.
    let forged = admin
        .post(&action, &[("csrf", "0".repeat(64).as_str())])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_status(&app, &revoked).await, StatusCode::NOT_FOUND);
    // Nor from someone who is not an admin.
    let csrf = target.csrf().await;
    let refused = target.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let csrf = admin.csrf().await;
    let done = admin.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(api_status(&app, &revoked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api_status(&app, &kept).await, StatusCode::NOT_FOUND);
    assert_eq!(audit_count(&app, "api_token.revoked").await, 1);
    // Twice is not found; an admin of another tenant cannot reach it either.
    let again = admin.post(&action, &[("csrf", &csrf)]).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let other = app
        .agent_browser(
            "admin@autre.example",
            agents::Role::Admin,
            Some("autre"),
            &[],
        )
        .await;
    let csrf = other.csrf().await;
    let foreign = other
        .post(
            &format!("{page}/tokens/{kept_id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_status(&app, &kept).await, StatusCode::NOT_FOUND);

    // The service revokes by name too, and refuses a name two tokens share.
    token_for(&app, &agent, "doublon", None).await;
    token_for(&app, &agent, "doublon", None).await;
    let who = agent.clone();
    let (by_name, ambiguous) = app
        .state
        .db
        .write(move |conn| -> Result<_, DbError> {
            Ok((
                agents::revoke_api_token(conn, &who, "logiciel métier", Actor::Operator)?,
                agents::revoke_api_token(conn, &who, "doublon", Actor::Operator)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(by_name, Revocation::Revoked(kept_id));
    assert_eq!(ambiguous, Revocation::Ambiguous);
    assert_eq!(api_status(&app, &kept).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_token_is_refused_and_the_last_use_is_written_once_a_minute() {
    let app = spawn_app().await;
    let agent = agent_of(
        &app,
        &app.agent_browser("voirie@mairie.example", agents::Role::Agent, None, &[])
            .await,
    )
    .await;
    let now = eguichet::now();
    let (_, expired) = token_for(&app, &agent, "hier", Some(now - TimeDelta::seconds(1))).await;
    let (live_id, live) = token_for(&app, &agent, "demain", Some(now + TimeDelta::days(1))).await;
    assert_eq!(api_status(&app, &expired).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api_status(&app, &live).await, StatusCode::NOT_FOUND);

    let last_used = || {
        let id = live_id.clone();
        app.state.db.read(move |conn| -> Result<_, DbError> {
            Ok(api_tokens_table::table
                .find(id)
                .select(api_tokens_table::last_used_at)
                .first::<Option<chrono::NaiveDateTime>>(conn)?)
        })
    };
    let first = last_used().await.unwrap().expect("written at first use");
    assert_eq!(api_status(&app, &live).await, StatusCode::NOT_FOUND);
    assert_eq!(last_used().await.unwrap(), Some(first), "not rewritten");

    let who = agent.id.clone();
    let listed = app
        .state
        .db
        .read(move |conn| api_tokens::list_api_tokens(conn, &who, eguichet::now()))
        .await
        .unwrap();
    let states: Vec<(String, TokenState)> = listed
        .into_iter()
        .map(|token| (token.name, token.state))
        .collect();
    assert!(states.contains(&("hier".to_owned(), TokenState::Expired)));
    assert!(states.contains(&("demain".to_owned(), TokenState::Active)));
}

#[tokio::test]
async fn a_password_change_ends_the_agents_other_sessions_and_keeps_this_one() {
    let app = spawn_app().await;
    let target = app
        .agent_browser("voirie@mairie.example", agents::Role::Agent, None, &[])
        .await;
    let agent = agent_of(&app, &target).await;
    let hash = NewPassword::parse(PASSWORD).unwrap().hash().unwrap();
    let who = agent.clone();
    app.state
        .db
        .write(move |conn| credentials::set_password_hash(conn, &who, &hash, Actor::Operator))
        .await
        .unwrap();
    // The operator's reset logged the agent out everywhere.
    assert_eq!(target.get("/agent").await.status(), StatusCode::SEE_OTHER);

    let (here, _) = signed_in(&app, &agent).await;
    let (elsewhere, _) = signed_in(&app, &agent).await;
    assert_eq!(elsewhere.get("/agent").await.status(), StatusCode::OK);
    let csrf = here.csrf().await;
    let changed = here
        .post(
            "/agent/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new", "une toute nouvelle phrase"),
                ("confirm", "une toute nouvelle phrase"),
            ],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(here.get("/agent").await.status(), StatusCode::OK);
    let gone = elsewhere.get("/agent").await;
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&gone), "/agent/login");
    assert_eq!(session_count(&app, "agent").await, 1);
}

#[tokio::test]
async fn a_second_login_in_the_same_browser_ends_the_first_session() {
    let app = spawn_app().await;
    let browser = CitizenBrowser::new(&app);
    browser.log_in_to_vault("marie.dupont").await;
    let first = browser.session_cookie();
    browser.log_in_to_vault("marie.dupont").await;
    let second = browser.session_cookie();
    assert_ne!(first, second);
    assert_eq!(session_count(&app, "citizen").await, 1);
    let stale = app.browser_with_cookie("eg_session", &first, "");
    assert_eq!(
        stale.get("/vault").await.status(),
        StatusCode::UNAUTHORIZED,
        "the first session is over"
    );
    let current = app.browser_with_cookie("eg_session", &second, "");
    assert_eq!(current.get("/vault").await.status(), StatusCode::OK);

    // Agents too: a login from a browser that holds a session ends that session.
    let agent = agent_of(
        &app,
        &app.agent_browser("voirie@mairie.example", agents::Role::Agent, None, &[])
            .await,
    )
    .await;
    let (old, old_cookie) = signed_in(&app, &agent).await;
    let who = agent.clone();
    app.state
        .db
        .write(move |conn| {
            eguichet::agents::login::open_agent_session(
                conn,
                policy(),
                &who,
                None,
                None,
                "password+totp",
                Some(&old_cookie),
            )
        })
        .await
        .unwrap();
    assert_eq!(old.get("/agent").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_burst_of_logins_from_one_address_stores_at_most_the_cap() {
    let app = spawn_app_with(Options {
        extra_toml: "[session]\npending_logins_per_address = 5\n".to_owned(),
        ..Options::default()
    })
    .await;
    let statuses = futures::future::join_all((0..40).map(|_| async {
        app.client
            .get(format!("{}/login/demo", app.address))
            .send()
            .await
            .unwrap()
    }))
    .await;
    let started = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::SEE_OTHER)
        .count();
    let refused: Vec<&reqwest::Response> = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!((started, refused.len()), (5, 35));
    let flows: i64 = app
        .state
        .db
        .read(|conn| -> Result<i64, DbError> { Ok(auth_flows::table.count().get_result(conn)?) })
        .await
        .unwrap();
    assert_eq!(flows, 5);
    // A real page, in the visitor's language.
    let page = app
        .client
        .get(format!("{}/login/demo", app.address))
        .header("Accept-Language", "fr")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.cookies().next().is_none(), "nothing handed out");
    let html = page.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    assert!(html.contains("Trop de connexions"), "{html}");
}

#[tokio::test]
async fn new_tokens_expire_after_the_configured_days_by_default() {
    let app = spawn_app().await;
    let email = AgentEmail::parse("voirie@mairie.example").unwrap();
    let tenant = app.state.default_tenant.clone();
    let agent = app
        .state
        .db
        .write(move |conn| {
            agents::create_agent(
                conn,
                &tenant,
                &email,
                agents::Role::Agent,
                None,
                Actor::Operator,
            )
        })
        .await
        .unwrap();
    // The default expiry comes from `[session] api_token_days`.
    let request = TokenRequest::lasting(
        TokenName::parse("cli").unwrap(),
        app.state.config.session.api_token_days,
        eguichet::now(),
    );
    assert!(request.expires_at.is_some());
    let who = agent.clone();
    let issued = app
        .state
        .db
        .write(move |conn| agents::issue_api_token(conn, &who, &request, Actor::Operator))
        .await
        .unwrap();
    let who = agent.clone();
    let listed = app
        .state
        .db
        .read(move |conn| api_tokens::list_api_tokens(conn, &who.id, eguichet::now()))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, issued.id);
    assert_eq!(listed[0].state, TokenState::Active);
}
