//! Agents log in to the browser: a local account (password, then a TOTP code computed
//! here as an authenticator app would, enrolled on first login, recovery codes), or a
//! provider for agents matched on the work email with its `amr` checked. Failures look
//! alike, repeated ones lock the account, and agent and citizen sessions stay apart.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::html::{form_action, hidden_fields, location};
use crate::common::{Options, TestApp, spawn_app, spawn_app_with};
use actix_web::{App, HttpResponse, HttpServer, web};
use diesel::prelude::*;
use eguichet::agents::credentials::{self, NewPassword};
use eguichet::agents::{self, Agent, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::db::DbError;
use eguichet::db::schema::{agents as agents_table, audit_events, sessions};
use eguichet::tenants::{self, Slug};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "une phrase de passe assez longue";

/// A browser: keeps cookies, does not follow redirects (each step is checked).
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of the form on `path`.
    async fn csrf_of(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        csrf_in(&page.text().await.unwrap())
    }

    /// Submits the email and password form.
    async fn submit_password(&self, email: &str, password: &str) -> reqwest::Response {
        let csrf = self.csrf_of("/agent/login").await;
        self.post(
            "/agent/login",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// Posts the password form (its token fetched beforehand), through a reverse proxy
    /// naming the client when `forwarded_for` is given.
    async fn post_password(
        &self,
        csrf: &str,
        email: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url("/agent/login")).form(&[
            ("csrf", csrf),
            ("email", email),
            ("password", password),
        ]);
        if let Some(client) = forwarded_for {
            request = request.header("X-Forwarded-For", client);
        }
        request.send().await.unwrap()
    }

    /// Submits a code on the code page.
    async fn submit_code(&self, code: &str) -> reqwest::Response {
        let csrf = self.csrf_of("/agent/login/code").await;
        self.post("/agent/login/code", &[("csrf", &csrf), ("code", code)])
            .await
    }

    /// The enrolment page's secret (as typed by hand) and CSRF token.
    async fn enrolment(&self) -> (String, String) {
        let page = self.get("/agent/login/enrol").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("<svg role=\"img\""),
            "the QR code is inline SVG"
        );
        let secret = html
            .split("id=\"secret\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .replace(' ', "");
        (secret, csrf_in(&html))
    }

    /// The CSRF token of a signed-in agent page.
    async fn session_csrf(&self) -> String {
        self.csrf_of("/agent").await
    }
}

fn csrf_in(html: &str) -> String {
    hidden_fields(html)
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .unwrap()
        .1
}

/// The code an authenticator app shows for `secret` now, or `steps_ahead` steps later
/// (the server accepts ±1 step, and each step once).
fn totp_code(secret: &str, steps_ahead: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        "test".to_owned(),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    totp.generate(now + 30 * steps_ahead)
}

/// A six-digit code valid for none of the steps the server would accept.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (0..3).map(|ahead| totp_code(secret, ahead)).collect();
    let previous = {
        let bytes = totp_rs::Secret::Encoded(secret.to_owned())
            .to_bytes()
            .unwrap();
        let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "t".into())
            .unwrap();
        totp.generate(chrono::Utc::now().timestamp() as u64 - 30)
    };
    (0..10)
        .map(|digit| format!("{digit}{digit}{digit}{digit}{digit}{digit}"))
        .find(|code| !valid.contains(code) && *code != previous)
        .unwrap()
}

/// The text of the page's alert.
async fn alert_of(response: reqwest::Response) -> String {
    let html = response.text().await.unwrap();
    html.split("role=\"alert\"")
        .nth(1)
        .unwrap()
        .split('>')
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

async fn create_agent(app: &TestApp, email: &str, role: Role) -> Agent {
    create_agent_in(app, None, email, role).await
}

async fn create_agent_in(app: &TestApp, tenant: Option<&str>, email: &str, role: Role) -> Agent {
    let email = AgentEmail::parse(email).unwrap();
    let default = app.state.default_tenant.clone();
    let tenant = tenant.map(str::to_owned);
    app.state
        .db
        .write(move |conn| -> anyhow::Result<Agent> {
            let tenant = match tenant {
                Some(slug) => tenants::ensure_tenant(conn, &Slug::parse(&slug)?, "Autre")?,
                None => default,
            };
            Ok(agents::create_agent(
                conn,
                &tenant,
                &email,
                role,
                None,
                Actor::Operator,
            )?)
        })
        .await
        .unwrap()
}

/// An agent with a password, as `eguichet agent password` sets it.
async fn agent_with_password(app: &TestApp, email: &str, role: Role) -> Agent {
    let agent = create_agent(app, email, role).await;
    let hash = NewPassword::parse(PASSWORD).unwrap().hash().unwrap();
    let who = agent.clone();
    app.state
        .db
        .write(move |conn| credentials::set_password_hash(conn, &who, &hash, Actor::Operator))
        .await
        .unwrap();
    agent
}

/// Enrols the agent's second factor through the pages; returns the secret and the
/// recovery codes shown once.
async fn enrol(app: &TestApp, browser: &Browser, email: &str) -> (String, Vec<String>) {
    let answer = browser.submit_password(email, PASSWORD).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/agent/login/enrol");
    let (secret, csrf) = browser.enrolment().await;
    // Reloading the page shows the same secret (the app may already hold it).
    assert_eq!(browser.enrolment().await.0, secret);
    // Nothing in the database holds the secret in clear.
    assert!(!stored_bytes_contain(app, secret.as_bytes()).await);

    let wrong = browser
        .post(
            "/agent/login/enrol",
            &[("csrf", &csrf), ("code", &wrong_code(&secret))],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let csrf = browser.enrolment().await.1;
    let done = browser
        .post(
            "/agent/login/enrol",
            &[("csrf", &csrf), ("code", &totp_code(&secret, 0))],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.unwrap();
    let codes: Vec<String> = html
        .split("<li><code>")
        .skip(1)
        .map(|rest| rest.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{html}");
    (secret, codes)
}

async fn stored_bytes_contain(app: &TestApp, needle: &[u8]) -> bool {
    let needle = needle.to_vec();
    app.state
        .db
        .read(move |conn| -> Result<bool, DbError> {
            use eguichet::db::schema::agent_credentials;
            let sealed: Vec<Option<Vec<u8>>> = agent_credentials::table
                .select(agent_credentials::totp_sealed)
                .load(conn)?;
            Ok(sealed
                .into_iter()
                .flatten()
                .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
        })
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.state
        .db
        .read(|conn| -> Result<Vec<String>, DbError> {
            Ok(audit_events::table
                .order(audit_events::seq)
                .select(audit_events::action)
                .load(conn)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agent_enrols_a_second_factor_then_logs_in_with_codes_used_once() {
    let app = spawn_app().await;
    agent_with_password(&app, "secretariat@mairie.example", Role::Agent).await;
    let browser = Browser::new(&app);

    // Not logged in: the agent pages send the browser to the login form.
    let home = browser.get("/agent").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/agent/login");

    let (secret, recovery) = enrol(&app, &browser, "Secretariat@Mairie.example").await;
    let home = browser.get("/agent").await;
    assert_eq!(home.status(), StatusCode::OK);
    let html = home.text().await.unwrap();
    assert!(html.contains("secretariat@mairie.example"));
    assert!(html.contains("Commune de démonstration"));
    assert!(html.contains("action=\"/agent/logout\""));

    // A second login: the code of the next step is accepted, once.
    let second = Browser::new(&app);
    let answer = second
        .submit_password("secretariat@mairie.example", PASSWORD)
        .await;
    assert_eq!(location(&answer), "/agent/login/code");
    let code = totp_code(&secret, 1);
    let answer = second.submit_code(&code).await;
    assert_eq!(location(&answer), "/agent");
    assert!(second.get("/agent").await.status() == StatusCode::OK);

    let third = Browser::new(&app);
    third
        .submit_password("secretariat@mairie.example", PASSWORD)
        .await;
    let replayed = third.submit_code(&code).await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "a code is accepted once"
    );
    let wrong = third.submit_code(&wrong_code(&secret)).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // A recovery code works, once.
    let answer = third.submit_code(&recovery[0].to_uppercase()).await;
    assert_eq!(location(&answer), "/agent");
    let fourth = Browser::new(&app);
    fourth
        .submit_password("secretariat@mairie.example", PASSWORD)
        .await;
    assert_eq!(
        fourth.submit_code(&recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The account page tells the second factor is on and how many codes remain.
    let account = third.get("/agent/account").await;
    assert_eq!(account.status(), StatusCode::OK);
    let html = account.text().await.unwrap();
    assert!(html.contains("id=\"recovery-codes-left\""));
    assert!(html.contains(" 9 "), "nine recovery codes left");

    // Changing the password: the old one stops working.
    let csrf = third.csrf_of("/agent/account").await;
    let new_password = "une autre phrase de passe";
    let changed = third
        .post(
            "/agent/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    // The agent's other sessions ended with it; this one goes on.
    assert_eq!(browser.get("/agent").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.get("/agent").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(third.get("/agent").await.status(), StatusCode::OK);
    let refused = Browser::new(&app)
        .submit_password("secretariat@mairie.example", PASSWORD)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let accepted = Browser::new(&app)
        .submit_password("secretariat@mairie.example", new_password)
        .await;
    assert_eq!(location(&accepted), "/agent/login/code");

    // Regenerating recovery codes shows ten new ones; the old ones stop working.
    let csrf = third.csrf_of("/agent/account").await;
    let regenerated = third
        .post("/agent/account/recovery-codes", &[("csrf", &csrf)])
        .await;
    assert_eq!(regenerated.status(), StatusCode::OK);
    let html = regenerated.text().await.unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10);
    assert!(!html.contains(&recovery[1]));

    // Logging out ends the session.
    let csrf = third.session_csrf().await;
    let out = third.post("/agent/logout", &[("csrf", &csrf)]).await;
    assert_eq!(location(&out), "/agent/logout/done");
    assert_eq!(third.get("/agent").await.status(), StatusCode::SEE_OTHER);

    let actions = audit_actions(&app).await;
    for action in [
        "agent.password_set",
        "agent.second_factor_enrolled",
        "agent.recovery_codes_issued",
        "agent.logged_in",
        "agent.login_failed",
        "agent.logged_out",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
}

#[tokio::test]
async fn failures_look_alike_and_lock_the_account() {
    let app = spawn_app().await;
    agent_with_password(&app, "accueil@mairie.example", Role::Agent).await;
    let browser = Browser::new(&app);

    let unknown = browser
        .submit_password("personne@mairie.example", PASSWORD)
        .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_message = alert_of(unknown).await;
    let wrong = browser
        .submit_password("accueil@mairie.example", "pas le bon mot de passe")
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(alert_of(wrong).await, unknown_message);

    for _ in 0..4 {
        browser
            .submit_password("accueil@mairie.example", "pas le bon mot de passe")
            .await;
    }
    // Five failures: locked, so even the right password is refused, with the same words.
    let locked = browser
        .submit_password("accueil@mairie.example", PASSWORD)
        .await;
    assert_eq!(locked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(alert_of(locked).await, unknown_message);
    assert!(
        audit_actions(&app)
            .await
            .iter()
            .any(|a| a == "agent.locked_out")
    );

    // The operator's `agent password` lifts the lock.
    let tenant_id = app.state.default_tenant.id.clone();
    let agent = app
        .state
        .db
        .read(move |conn| {
            agents::find_agent(
                conn,
                &tenant_id,
                &AgentEmail::parse("accueil@mairie.example").unwrap(),
            )
        })
        .await
        .unwrap()
        .unwrap();
    let hash = NewPassword::parse(PASSWORD).unwrap().hash().unwrap();
    app.state
        .db
        .write(move |conn| credentials::set_password_hash(conn, &agent, &hash, Actor::Operator))
        .await
        .unwrap();
    let accepted = browser
        .submit_password("accueil@mairie.example", PASSWORD)
        .await;
    assert_eq!(location(&accepted), "/agent/login/enrol");
}

#[tokio::test]
async fn a_disabled_agent_cannot_log_in_and_is_logged_out() {
    let app = spawn_app().await;
    let agent = agent_with_password(&app, "ancien@mairie.example", Role::Agent).await;
    let browser = Browser::new(&app);
    enrol(&app, &browser, "ancien@mairie.example").await;
    assert_eq!(browser.get("/agent").await.status(), StatusCode::OK);

    let id = agent.id.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, DbError> {
            Ok(diesel::update(agents_table::table.find(id))
                .set(agents_table::disabled_at.eq(chrono::Utc::now().naive_utc()))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let home = browser.get("/agent").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/agent/login");

    let again = Browser::new(&app);
    let refused = again
        .submit_password("ancien@mairie.example", PASSWORD)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Nor with a code: the password step already stops a disabled agent.
    assert_eq!(
        again.get("/agent/login/code").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn an_idle_agent_session_expires_and_forms_need_their_token() {
    let app = spawn_app_with(Options {
        extra_toml: "[session]\nagent_idle_minutes = 1\n".to_owned(),
        ..Options::default()
    })
    .await;
    agent_with_password(&app, "urbanisme@mairie.example", Role::Admin).await;
    let browser = Browser::new(&app);
    enrol(&app, &browser, "urbanisme@mairie.example").await;

    // A form without the session's token is refused.
    let forged = browser.post("/agent/logout", &[("csrf", "0000")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = browser
        .post(
            "/agent/account/password",
            &[
                ("csrf", "0000"),
                ("current", PASSWORD),
                ("new", "nouvelle phrase secrète"),
                ("confirm", "nouvelle phrase secrète"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // The login form needs the token its page set, too.
    let stranger = Browser::new(&app);
    let forged = stranger
        .post(
            "/agent/login",
            &[
                ("csrf", "0000"),
                ("email", "urbanisme@mairie.example"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/agent").await.status(), StatusCode::OK);

    // Two minutes without a request (the clock is moved in the database).
    app.state
        .db
        .write(|conn| -> Result<usize, DbError> {
            let earlier = chrono::Utc::now().naive_utc() - chrono::TimeDelta::minutes(2);
            Ok(diesel::update(sessions::table)
                .set(sessions::last_seen_at.eq(earlier))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let home = browser.get("/agent").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/agent/login");
    let post = browser.post("/agent/logout", &[("csrf", "x")]).await;
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
}

/// Logs a demonstration citizen in; returns the browser.
async fn citizen_browser(app: &TestApp) -> Browser {
    let browser = Browser::new(app);
    let start = browser.get("/login/demo").await;
    let page = browser.get(&location(&start)).await;
    let html = page.text().await.unwrap();
    let mut fields: Vec<(String, String)> = hidden_fields(&html);
    fields.push(("citizen".to_owned(), "marie.dupont".to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let chosen = browser
        .client
        .post(browser.url(&form_action(&html)))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let callback = browser.get(&location(&chosen)).await;
    assert_eq!(location(&callback), "/vault");
    browser
}

/// The value of cookie `name` the server set on `response`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn citizen_and_agent_sessions_open_nothing_of_the_other() {
    let app = spawn_app().await;
    agent_with_password(&app, "etat-civil@mairie.example", Role::Agent).await;

    // The agent's session cookie, read from the enrolment answer.
    let agent_browser = Browser::new(&app);
    agent_browser
        .submit_password("etat-civil@mairie.example", PASSWORD)
        .await;
    let (secret, csrf) = agent_browser.enrolment().await;
    let done = agent_browser
        .post(
            "/agent/login/enrol",
            &[("csrf", &csrf), ("code", &totp_code(&secret, 0))],
        )
        .await;
    let agent_cookie = set_cookie(&done, "eg_agent_session").unwrap();
    assert!(set_cookie(&done, "eg_session").is_none());

    // A kiosk browser holding a citizen session.
    let citizen = citizen_browser(&app).await;
    assert_eq!(citizen.get("/vault").await.status(), StatusCode::OK);
    assert_eq!(citizen.get("/agent").await.status(), StatusCode::SEE_OTHER);
    let citizen_cookie = citizen_browser_cookie(&app).await;

    // Each cookie value presented under the other name opens nothing.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let as_agent = plain
        .get(format!("{}/agent", app.address))
        .header("cookie", format!("eg_agent_session={citizen_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_agent.status(), StatusCode::SEE_OTHER);
    let as_citizen = plain
        .get(format!("{}/vault", app.address))
        .header("cookie", format!("eg_session={agent_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_citizen.status(), StatusCode::UNAUTHORIZED);
    // And each works under its own name.
    let own = plain
        .get(format!("{}/agent", app.address))
        .header("cookie", format!("eg_agent_session={agent_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
}

/// A citizen session cookie value, read from the login callback.
async fn citizen_browser_cookie(app: &TestApp) -> String {
    let browser = Browser::new(app);
    let start = browser.get("/login/demo").await;
    let page = browser.get(&location(&start)).await;
    let html = page.text().await.unwrap();
    let mut fields: Vec<(String, String)> = hidden_fields(&html);
    fields.push(("citizen".to_owned(), "marie.dupont".to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let chosen = browser
        .client
        .post(browser.url(&form_action(&html)))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let callback = browser.get(&location(&chosen)).await;
    set_cookie(&callback, "eg_session").unwrap()
}

// --- A provider for agents (ProConnect-like), run in the test ---------------------

const CLIENT_ID: &str = "portal-agents";
const CLIENT_SECRET: &str = "s3cret-for-agent-tests";

/// What the provider asserts at the next login.
#[derive(Clone)]
struct Assertion {
    email: String,
    amr: Vec<&'static str>,
    nonce: String,
    /// The `email_verified` claim; `null` leaves it out.
    email_verified: Value,
}

struct AgentProvider {
    issuer: String,
    key: EncodingKey,
    jwk: Value,
    next: Mutex<Assertion>,
}

impl AgentProvider {
    fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!("agents-1");
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        let provider = Arc::new(Self {
            issuer,
            key: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
            next: Mutex::new(Assertion {
                email: String::new(),
                amr: vec![],
                nonce: String::new(),
                email_verified: Value::Null,
            }),
        });
        let data = web::Data::from(provider.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
                .route("/token", web::post().to(token))
                .route("/userinfo", web::get().to(userinfo))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        provider
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("agents-1".to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn toml(&self) -> String {
        format!(
            "[oidc]\ntimeout_seconds = 2\n[[oidc.providers]]\nid = \"proconnect\"\n\
             kind = \"generic\"\naudience = \"agent\"\nissuer = \"{}\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"email\"]\nlabel = \"ProConnect\"\n",
            self.issuer
        )
    }
}

async fn discovery(provider: web::Data<AgentProvider>) -> HttpResponse {
    let issuer = &provider.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "userinfo_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
}

async fn jwks(provider: web::Data<AgentProvider>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "keys": [provider.jwk.clone()] }))
}

async fn token(
    provider: web::Data<AgentProvider>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("client_secret").as_deref() != Some(CLIENT_SECRET) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let next = provider.next.lock().unwrap().clone();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": provider.issuer, "sub": "agent-subject", "aud": CLIENT_ID,
        "iat": now, "exp": now + 60, "nonce": next.nonce, "amr": next.amr,
    });
    HttpResponse::Ok().json(json!({
        "access_token": "access-1", "token_type": "Bearer", "expires_in": 60,
        "id_token": provider.sign(&claims),
    }))
}

async fn userinfo(provider: web::Data<AgentProvider>) -> HttpResponse {
    let next = provider.next.lock().unwrap().clone();
    let mut claims = json!({
        "sub": "agent-subject", "iss": provider.issuer, "aud": CLIENT_ID,
        "email": next.email, "given_name": "Camille", "usual_name": "Martin",
    });
    if !next.email_verified.is_null() {
        claims["email_verified"] = next.email_verified;
    }
    HttpResponse::Ok()
        .content_type("application/jwt")
        .body(provider.sign(&claims))
}

/// Goes through `/agent/login/oidc/proconnect` as `email` with `amr`; returns the
/// browser and the callback's answer.
async fn provider_login(
    app: &TestApp,
    provider: &AgentProvider,
    email: &str,
    amr: &[&'static str],
) -> (Browser, reqwest::Response) {
    let browser = Browser::new(app);
    let login_page = browser.get("/agent/login").await.text().await.unwrap();
    assert!(login_page.contains("href=\"/agent/login/oidc/proconnect\""));
    let start = browser.get("/agent/login/oidc/proconnect").await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = url::Url::parse(&location(&start)).unwrap();
    let param = |name: &str| {
        authorize
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    assert_eq!(
        param("redirect_uri"),
        format!("{}/agent/login/oidc/proconnect/callback", app.address)
    );
    {
        let mut next = provider.next.lock().unwrap();
        next.email = email.to_owned();
        next.amr = amr.to_vec();
        next.nonce = param("nonce");
    }
    let callback = browser
        .get(&format!(
            "/agent/login/oidc/proconnect/callback?code=c-{}&state={}",
            uuid::Uuid::new_v4().simple(),
            param("state")
        ))
        .await;
    (browser, callback)
}

#[tokio::test]
async fn agents_log_in_through_their_provider_by_work_email_with_a_second_factor() {
    let provider = AgentProvider::start();
    let app = spawn_app_with(Options {
        extra_toml: provider.toml(),
        ..Options::default()
    })
    .await;
    create_agent(&app, "camille.martin@mairie.example", Role::Official).await;

    // Known email (any case, spaces around), second factor used: logged in.
    let (browser, answer) = provider_login(
        &app,
        &provider,
        " Camille.Martin@Mairie.example ",
        &["pwd", "otp"],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/agent");
    assert!(set_cookie(&answer, "eg_session").is_none());
    let home = browser.get("/agent").await;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(
        home.text()
            .await
            .unwrap()
            .contains("camille.martin@mairie.example")
    );

    // Logging out goes on to the provider's end-session endpoint.
    let csrf = browser.session_csrf().await;
    let out = browser.post("/agent/logout", &[("csrf", &csrf)]).await;
    let end = url::Url::parse(&location(&out)).unwrap();
    assert_eq!(end.path(), "/session/end");
    let redirect = end
        .query_pairs()
        .find(|(k, _)| k == "post_logout_redirect_uri")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(redirect, format!("{}/agent/logout/callback", app.address));
    let state = end
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let back = browser
        .get(&format!("/agent/logout/callback?state={state}"))
        .await;
    assert_eq!(back.status(), StatusCode::OK);
    assert_eq!(browser.get("/agent").await.status(), StatusCode::SEE_OTHER);

    // An unknown email: a clear page, no session.
    let (_, answer) =
        provider_login(&app, &provider, "inconnu@mairie.example", &["pwd", "otp"]).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&answer, "eg_agent_session").is_none());
    assert!(answer.text().await.unwrap().contains("<h1>"));

    // A password alone is not enough where the tenant requires a second factor.
    let (_, answer) =
        provider_login(&app, &provider, "camille.martin@mairie.example", &["pwd"]).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&answer, "eg_agent_session").is_none());

    // A provider for agents is no way into citizen pages.
    let citizen_start = browser.get("/login/proconnect").await;
    assert_eq!(citizen_start.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tenant_may_accept_provider_logins_without_a_second_factor() {
    let provider = AgentProvider::start();
    let app = spawn_app_with(Options {
        extra_toml: format!(
            "[tenant]\nagent_second_factor = \"optional\"\n{}",
            provider.toml()
        ),
        ..Options::default()
    })
    .await;
    create_agent(&app, "distribution@mairie.example", Role::Distributor).await;
    let (browser, answer) =
        provider_login(&app, &provider, "distribution@mairie.example", &["pwd"]).await;
    assert_eq!(location(&answer), "/agent");
    assert_eq!(browser.get("/agent").await.status(), StatusCode::OK);
}

/// How many failed agent logins the audit log has, per step (`password`, `locked`, …).
async fn failed_login_steps(app: &TestApp) -> std::collections::BTreeMap<String, usize> {
    let details: Vec<String> = app
        .state
        .db
        .read(|conn| -> Result<Vec<String>, DbError> {
            Ok(audit_events::table
                .filter(audit_events::action.eq("agent.login_failed"))
                .select(audit_events::details)
                .load(conn)?)
        })
        .await
        .unwrap();
    let mut steps = std::collections::BTreeMap::new();
    for text in details {
        let step = serde_json::from_str::<Value>(&text).unwrap()["step"]
            .as_str()
            .unwrap()
            .to_owned();
        *steps.entry(step).or_default() += 1;
    }
    steps
}

async fn failed_attempts_of(app: &TestApp, agent: &Agent) -> i32 {
    let agent_id = agent.id.clone();
    app.state
        .db
        .read(move |conn| -> Result<i32, DbError> {
            use eguichet::db::schema::agent_credentials;
            Ok(agent_credentials::table
                .find(agent_id)
                .select(agent_credentials::failed_attempts)
                .first(conn)?)
        })
        .await
        .unwrap()
}

/// Waits without a deadline: the bursts below must not meet the queue's timeout.
const PATIENT_QUEUE: &str = "[limits]\npassword_check_wait_ms = 600000\n";

/// Forty browsers with their form ready, so that their posts leave together.
async fn ready_browsers(app: &TestApp, count: usize) -> Vec<(Browser, String)> {
    let mut browsers = Vec::new();
    for _ in 0..count {
        let browser = Browser::new(app);
        let csrf = browser.csrf_of("/agent/login").await;
        browsers.push((browser, csrf));
    }
    browsers
}

#[tokio::test]
async fn forty_concurrent_guesses_count_as_exactly_the_limits() {
    let app = spawn_app_with(Options {
        extra_toml: PATIENT_QUEUE.to_owned(),
        ..Options::default()
    })
    .await;
    let agent = agent_with_password(&app, "guichet@mairie.example", Role::Agent).await;
    let browsers = ready_browsers(&app, 40).await;

    let answers = futures::future::join_all(browsers.iter().map(|(browser, csrf)| {
        browser.post_password(csrf, "guichet@mairie.example", "pas le bon mot", None)
    }))
    .await;

    // Every guess gets the same answer…
    assert!(
        answers
            .iter()
            .all(|answer| answer.status() == StatusCode::UNAUTHORIZED)
    );
    // …but of the 30 the address may make, exactly 5 were checked as wrong before the
    // account locked; the other 25 found it locked, and the last 10 were not counted.
    let steps = failed_login_steps(&app).await;
    assert_eq!(steps.get("password"), Some(&5), "{steps:?}");
    assert_eq!(steps.get("locked"), Some(&25), "{steps:?}");
    assert_eq!(failed_attempts_of(&app, &agent).await, 5);
    let locks = audit_actions(&app)
        .await
        .into_iter()
        .filter(|action| action == "agent.locked_out")
        .count();
    assert_eq!(locks, 1);

    // This address has used up its failures: another account's right password is
    // refused from it, without touching that account's counter.
    let other = agent_with_password(&app, "etat-civil@mairie.example", Role::Agent).await;
    let refused = Browser::new(&app)
        .submit_password("etat-civil@mairie.example", PASSWORD)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failed_attempts_of(&app, &other).await, 0);
}

#[tokio::test]
async fn a_right_password_gives_its_reservation_back() {
    let app = spawn_app().await;
    let agent = agent_with_password(&app, "urbanisme@mairie.example", Role::Agent).await;
    let browser = Browser::new(&app);
    for _ in 0..4 {
        browser
            .submit_password("urbanisme@mairie.example", "pas le bon mot de passe")
            .await;
    }
    // The fifth attempt is counted (and locks) while it is checked; right, it does not.
    let accepted = browser
        .submit_password("urbanisme@mairie.example", PASSWORD)
        .await;
    assert_eq!(location(&accepted), "/agent/login/enrol");
    assert_eq!(failed_attempts_of(&app, &agent).await, 4);
    let again = Browser::new(&app)
        .submit_password("urbanisme@mairie.example", PASSWORD)
        .await;
    assert_eq!(location(&again), "/agent/login/enrol");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    let app = spawn_app_with(Options {
        extra_toml: format!("{PATIENT_QUEUE}[http]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"),
        ..Options::default()
    })
    .await;
    agent_with_password(&app, "police@mairie.example", Role::Agent).await;
    let browsers = ready_browsers(&app, 30).await;
    // One client behind the proxy tries thirty unknown accounts (its own address is
    // the rightmost one the proxy did not add; the first one it wrote itself).
    futures::future::join_all(browsers.iter().enumerate().map(|(i, (browser, csrf))| {
        let email = format!("personne{i}@mairie.example");
        async move {
            let answer = browser
                .post_password(csrf, &email, PASSWORD, Some("10.9.9.9, 198.51.100.7"))
                .await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        }
    }))
    .await;

    let browser = Browser::new(&app);
    let csrf = browser.csrf_of("/agent/login").await;
    let blocked = browser
        .post_password(
            &csrf,
            "police@mairie.example",
            PASSWORD,
            Some("198.51.100.7"),
        )
        .await;
    assert_eq!(
        blocked.status(),
        StatusCode::UNAUTHORIZED,
        "that client is limited"
    );

    // Another client of the same proxy logs in.
    let csrf = browser.csrf_of("/agent/login").await;
    let accepted = browser
        .post_password(
            &csrf,
            "police@mairie.example",
            PASSWORD,
            Some("203.0.113.9"),
        )
        .await;
    assert_eq!(location(&accepted), "/agent/login/enrol");
}

#[tokio::test]
async fn a_client_address_header_from_an_untrusted_peer_is_ignored() {
    // No trusted proxy: whatever X-Forwarded-For says, the socket's address counts.
    let app = spawn_app_with(Options {
        extra_toml: PATIENT_QUEUE.to_owned(),
        ..Options::default()
    })
    .await;
    agent_with_password(&app, "cantine@mairie.example", Role::Agent).await;
    let browsers = ready_browsers(&app, 30).await;
    futures::future::join_all(browsers.iter().enumerate().map(|(i, (browser, csrf))| {
        let email = format!("personne{i}@mairie.example");
        let spoofed = format!("198.51.100.{i}");
        async move {
            browser
                .post_password(csrf, &email, PASSWORD, Some(&spoofed))
                .await
        }
    }))
    .await;
    let browser = Browser::new(&app);
    let csrf = browser.csrf_of("/agent/login").await;
    let refused = browser
        .post_password(
            &csrf,
            "cantine@mairie.example",
            PASSWORD,
            Some("203.0.113.9"),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_login_that_finds_every_check_taken_is_asked_to_try_again() {
    let app = spawn_app_with(Options {
        extra_toml: "[limits]\npassword_checks_at_once = 1\npassword_check_wait_ms = 50\n"
            .to_owned(),
        ..Options::default()
    })
    .await;
    let agent = agent_with_password(&app, "sports@mairie.example", Role::Agent).await;
    // Someone else's check holds the only turn.
    let turn = app.state.password_queue.wait_for_turn().await.unwrap();
    let browser = Browser::new(&app);
    let busy = browser
        .submit_password("sports@mairie.example", PASSWORD)
        .await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()["retry-after"], "5");
    let message = alert_of(busy).await;
    assert!(message.contains("réessayez"), "{message}");
    assert_eq!(failed_attempts_of(&app, &agent).await, 0, "nothing counted");

    drop(turn);
    let accepted = browser
        .submit_password("sports@mairie.example", PASSWORD)
        .await;
    assert_eq!(location(&accepted), "/agent/login/enrol");
}

#[tokio::test]
async fn guessing_the_current_password_from_a_session_counts_like_a_login() {
    let app = spawn_app_with(Options {
        extra_toml: PATIENT_QUEUE.to_owned(),
        ..Options::default()
    })
    .await;
    let agent = agent_with_password(&app, "voirie@mairie.example", Role::Agent).await;
    let browser = Browser::new(&app);
    enrol(&app, &browser, "voirie@mairie.example").await;
    assert_eq!(failed_attempts_of(&app, &agent).await, 0);

    // A borrowed session guesses the current password, ten at once.
    let csrf = browser.session_csrf().await;
    let guesses = futures::future::join_all((0..10).map(|i| {
        let guess = format!("devinette numéro {i}");
        let browser = &browser;
        let csrf = &csrf;
        async move {
            browser
                .post(
                    "/agent/account/password",
                    &[
                        ("csrf", csrf.as_str()),
                        ("current", &guess),
                        ("new", "nouvelle phrase secrète"),
                        ("confirm", "nouvelle phrase secrète"),
                    ],
                )
                .await
                .status()
        }
    }))
    .await;
    assert!(
        guesses
            .iter()
            .all(|status| *status == StatusCode::UNPROCESSABLE_ENTITY)
    );
    let steps = failed_login_steps(&app).await;
    assert_eq!(steps.get("password_change"), Some(&5), "{steps:?}");
    assert_eq!(failed_attempts_of(&app, &agent).await, 5);
    // The account is locked: the right password no longer logs in.
    let locked = Browser::new(&app)
        .submit_password("voirie@mairie.example", PASSWORD)
        .await;
    assert_eq!(locked.status(), StatusCode::UNAUTHORIZED);
}

/// The agent a session belongs to, by the session's agent.
async fn session_agents(app: &TestApp) -> Vec<String> {
    app.state
        .db
        .read(|conn| -> Result<Vec<String>, DbError> {
            Ok(sessions::table
                .filter(sessions::kind.eq("agent"))
                .select(sessions::subject_id)
                .load(conn)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_work_email_in_another_tenant_adds_a_choice_and_locks_nobody_out() {
    let provider = AgentProvider::start();
    let app = spawn_app_with(Options {
        extra_toml: provider.toml(),
        ..Options::default()
    })
    .await;
    let email = "camille.martin@mairie.example";
    let own = create_agent(&app, email, Role::Official).await;
    // An admin of another tenant creates an account with the same work email.
    let other = create_agent_in(&app, Some("syndicat"), email, Role::Agent).await;
    // A third tenant's agent, for a forged choice.
    let stranger =
        create_agent_in(&app, Some("voisine"), "autre@voisine.example", Role::Admin).await;

    let (browser, answer) = provider_login(&app, &provider, email, &["pwd", "otp"]).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/agent/login/tenant");
    // The choice comes back on the redirect from the provider's site: not `Strict`.
    let cookie = answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("eg_agent_choice="))
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("SameSite=Lax") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(session_agents(&app).await.is_empty());
    let page = browser.get("/agent/login/tenant").await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains(&format!("value=\"{}\"", own.id)));
    assert!(body.contains(&format!("value=\"{}\"", other.id)));
    assert!(!body.contains(&stranger.id));
    let csrf = csrf_in(&body);

    // An account the choice did not offer is refused, and spends the choice.
    let forged = browser
        .post(
            "/agent/login/tenant",
            &[("csrf", &csrf), ("agent", &stranger.id)],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(forged.text().await.unwrap().contains("<h1>"));
    assert!(session_agents(&app).await.is_empty());

    // Choosing the commune's own tenant opens that account, once.
    let (browser, _) = provider_login(&app, &provider, email, &["pwd", "otp"]).await;
    let csrf = browser.csrf_of("/agent/login/tenant").await;
    let chosen = browser
        .post(
            "/agent/login/tenant",
            &[("csrf", &csrf), ("agent", &own.id)],
        )
        .await;
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&chosen), "/agent");
    assert_eq!(browser.get("/agent").await.status(), StatusCode::OK);
    assert_eq!(session_agents(&app).await, vec![own.id.clone()]);
    let again = browser
        .post(
            "/agent/login/tenant",
            &[("csrf", &csrf), ("agent", &other.id)],
        )
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(session_agents(&app).await, vec![own.id.clone()]);

    // The second factor is still required before any choice.
    let (_, answer) = provider_login(&app, &provider, email, &["pwd"]).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);

    // Once the other tenant disables its account, the login opens the remaining one.
    let other_id = other.id.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, DbError> {
            Ok(diesel::update(agents_table::table.find(other_id))
                .set(agents_table::disabled_at.eq(Some(chrono::Utc::now().naive_utc())))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let (_, answer) = provider_login(&app, &provider, email, &["pwd", "otp"]).await;
    assert_eq!(location(&answer), "/agent");
}

#[tokio::test]
async fn a_work_email_the_provider_has_not_verified_opens_nothing() {
    let provider = AgentProvider::start();
    let app = spawn_app_with(Options {
        extra_toml: provider.toml(),
        ..Options::default()
    })
    .await;
    let email = "camille.martin@mairie.example";
    create_agent(&app, email, Role::Admin).await;
    for unverified in [json!(false), json!("false")] {
        provider.next.lock().unwrap().email_verified = unverified;
        let (_, answer) = provider_login(&app, &provider, email, &["pwd", "otp"]).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&answer, "eg_agent_session").is_none());
        let body = answer.text().await.unwrap();
        assert!(body.contains("<h1>") && body.contains("vérifiée"), "{body}");
    }
    assert!(session_agents(&app).await.is_empty());
    // Verified, or not said at all (many providers only send verified addresses).
    for verified in [json!(true), Value::Null] {
        provider.next.lock().unwrap().email_verified = verified;
        let (_, answer) = provider_login(&app, &provider, email, &["pwd", "otp"]).await;
        assert_eq!(location(&answer), "/agent");
    }
}
