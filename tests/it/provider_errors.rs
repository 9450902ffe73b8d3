//! A provider that misbehaves on purpose: every bad answer a real identity provider (or
//! an attacker in its place) could send gets a clear page and no session.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Options, TestApp, document_bytes, metadata, spawn_app_with};
use actix_web::{App, HttpResponse, HttpServer, web};
use eguichet::agents::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

const CLIENT_ID: &str = "portal";
const CLIENT_SECRET: &str = "s3cret-for-tests";

/// A signing key and its public JWK.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    encoding: Arc<EncodingKey>,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            encoding: Arc::new(EncodingKey::from_ec_der(der.as_bytes())),
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// How the provider behaves for the next login.
#[derive(Clone)]
struct Behaviour {
    /// Keys published in the JWKS.
    published: Vec<SigningKey>,
    /// Key that signs the ID token.
    id_token_key: SigningKey,
    /// Key that signs userinfo.
    userinfo_key: SigningKey,
    nonce: Option<String>,
    id_token_overrides: Value,
    userinfo_claims: Value,
    userinfo_plain_json: bool,
    token_delay: Duration,
}

struct Provider {
    issuer: String,
    behaviour: Mutex<Behaviour>,
    jwks_fetches: AtomicUsize,
    used_codes: Mutex<Vec<String>>,
}

fn identity_claims() -> Value {
    json!({"given_name": "Marie Claire", "family_name": "DUPONT", "birthdate": "1980-07-30",
           "birthplace": "75056", "birthcountry": "99100", "gender": "female",
           "email": "famille.dupont@example.org"})
}

impl Provider {
    fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = SigningKey::generate("key-1");
        let provider = Arc::new(Self {
            issuer,
            behaviour: Mutex::new(Behaviour {
                published: vec![key.clone()],
                id_token_key: key.clone(),
                userinfo_key: key,
                nonce: None,
                id_token_overrides: json!({}),
                userinfo_claims: identity_claims(),
                userinfo_plain_json: false,
                token_delay: Duration::ZERO,
            }),
            jwks_fetches: AtomicUsize::new(0),
            used_codes: Mutex::new(Vec::new()),
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

    fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }
}

async fn discovery(provider: web::Data<Provider>) -> HttpResponse {
    let issuer = &provider.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "userinfo_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "acr_values_supported": ["eidas1", "eidas2"],
    }))
}

async fn jwks(provider: web::Data<Provider>) -> HttpResponse {
    provider.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = provider
        .behaviour
        .lock()
        .unwrap()
        .published
        .iter()
        .map(|key| key.jwk.clone())
        .collect();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

async fn token(
    provider: web::Data<Provider>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("client_id").as_deref() != Some(CLIENT_ID)
        || field("client_secret").as_deref() != Some(CLIENT_SECRET)
    {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let code = field("code").unwrap_or_default();
    {
        let mut used = provider.used_codes.lock().unwrap();
        if used.contains(&code) {
            return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
        }
        used.push(code);
    }
    let behaviour = provider.behaviour.lock().unwrap().clone();
    tokio::time::sleep(behaviour.token_delay).await;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": provider.issuer, "sub": "subject-1", "aud": CLIENT_ID,
        "iat": now, "exp": now + 60, "auth_time": now,
        "nonce": behaviour.nonce, "acr": "eidas1", "amr": ["pwd"],
    });
    for (name, value) in behaviour.id_token_overrides.as_object().unwrap() {
        claims[name] = value.clone();
    }
    HttpResponse::Ok().json(json!({
        "access_token": "access-1", "token_type": "Bearer", "expires_in": 60,
        "id_token": behaviour.id_token_key.sign(&claims),
    }))
}

async fn userinfo(provider: web::Data<Provider>) -> HttpResponse {
    let behaviour = provider.behaviour.lock().unwrap().clone();
    let mut claims = behaviour.userinfo_claims.clone();
    if claims.get("sub").is_none() {
        claims["sub"] = json!("subject-1");
    }
    claims["iss"] = json!(provider.issuer);
    claims["aud"] = json!(CLIENT_ID);
    if behaviour.userinfo_plain_json {
        return HttpResponse::Ok().json(claims);
    }
    HttpResponse::Ok()
        .content_type("application/jwt")
        .body(behaviour.userinfo_key.sign(&claims))
}

/// The portal configured with the misbehaving provider (as `/login/fc`).
async fn portal(provider: &Provider, kind: &str, acr: &str) -> TestApp {
    portal_with(&[("fc", provider)], kind, acr).await
}

/// The portal configured with several such providers, each under its id.
async fn portal_with(providers: &[(&str, &Provider)], kind: &str, acr: &str) -> TestApp {
    let mut toml = "[oidc]\ntimeout_seconds = 2\n".to_owned();
    for (id, provider) in providers {
        toml.push_str(&format!(
            "[[oidc.providers]]\nid = \"{id}\"\nkind = \"{kind}\"\naudience = \"citizen\"\n\
             issuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\nacr_values = \"{acr}\"\n",
            provider.issuer
        ));
    }
    spawn_app_with(Options {
        extra_toml: toml,
        ..Options::default()
    })
    .await
}

/// Starts a login, lets the provider "authenticate", and returns the callback's answer.
async fn login(app: &TestApp, provider: &Provider, code: &str) -> reqwest::Response {
    login_through(app, "fc", provider, code).await
}

/// The same, through the provider configured as `id`.
async fn login_through(
    app: &TestApp,
    id: &str,
    provider: &Provider,
    code: &str,
) -> reqwest::Response {
    login_in_browser(app, id, provider, code).await.0
}

/// The same, also returning the browser (holding the session when the login worked).
async fn login_in_browser(
    app: &TestApp,
    id: &str,
    provider: &Provider,
    code: &str,
) -> (reqwest::Response, reqwest::Client) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = browser
        .get(format!("{}/login/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = url::Url::parse(start.headers()[LOCATION].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        authorize
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let nonce = param("nonce");
    provider.behave(|b| {
        if b.nonce.as_deref() != Some("wrong") {
            b.nonce = Some(nonce);
        }
    });
    let answer = browser
        .get(format!(
            "{}/login/{id}/callback?code={code}&state={}",
            app.address,
            param("state")
        ))
        .send()
        .await
        .unwrap();
    (answer, browser)
}

fn fresh_code() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn expect_refused(app: &TestApp, provider: &Provider, status: StatusCode) {
    let answer = login(app, provider, &fresh_code()).await;
    assert_eq!(answer.status(), status);
    let session_set = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("eg_session="));
    assert!(!session_set, "a refused login must not open a session");
    assert!(answer.text().await.unwrap().contains("<h1>"));
}

#[tokio::test]
async fn bad_tokens_and_claims_are_refused() {
    let provider = Provider::start();
    let app = portal(&provider, "franceconnect", "eidas1").await;
    // The well-behaved provider logs in (control).
    let ok = login(&app, &provider, &fresh_code()).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/vault");

    // A replayed code: the provider says invalid_grant.
    let code = fresh_code();
    assert_eq!(
        login(&app, &provider, &code).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        login(&app, &provider, &code).await.status(),
        StatusCode::BAD_REQUEST
    );

    provider.behave(|b| b.nonce = Some("wrong".to_owned()));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.nonce = None);

    let past = chrono::Utc::now().timestamp() - 3600;
    provider.behave(|b| b.id_token_overrides = json!({"exp": past, "iat": past - 60}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.id_token_overrides = json!({"aud": "someone-else"}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.id_token_overrides = json!({"iss": "https://impostor.example"}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.id_token_overrides = json!({}));

    // An ID token signed by another key under the published kid.
    let forger = SigningKey::generate("key-1");
    provider.behave(|b| b.id_token_key = forger.clone());
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.id_token_key = b.userinfo_key.clone());

    // Userinfo: badly signed (another key under the published kid), unsigned, about
    // someone else, or without the pivot identity.
    let impostor = SigningKey::generate("key-1");
    provider.behave(|b| b.userinfo_key = impostor.clone());
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.userinfo_key = b.id_token_key.clone());
    provider.behave(|b| b.userinfo_plain_json = true);
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.userinfo_plain_json = false);
    provider.behave(|b| b.userinfo_claims = json!({"sub": "subject-2", "family_name": "X"}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider
        .behave(|b| b.userinfo_claims = json!({"given_name": "Marie", "birthdate": "1980-07-30"}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    provider.behave(|b| b.userinfo_claims = identity_claims());

    // Still fine after all that.
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn unknown_keys_trigger_one_rate_limited_refetch() {
    let provider = Provider::start();
    let app = portal(&provider, "franceconnect", "eidas1").await;
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    let fetches = provider.jwks_fetches.load(Ordering::SeqCst);

    // The provider rotates its key: the next token has a new kid, published now.
    let rotated = SigningKey::generate("key-2");
    provider.behave(|b| {
        b.published.push(rotated.clone());
        b.id_token_key = rotated.clone();
        b.userinfo_key = rotated.clone();
    });
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(provider.jwks_fetches.load(Ordering::SeqCst), fetches + 1);

    // A kid that stays unknown: refused, and no further fetch within the interval.
    let stranger = SigningKey::generate("key-3");
    provider.behave(|b| b.id_token_key = stranger.clone());
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
    assert_eq!(provider.jwks_fetches.load(Ordering::SeqCst), fetches + 1);
}

#[tokio::test]
async fn a_lower_level_than_asked_is_refused() {
    let provider = Provider::start();
    let app = portal(&provider, "franceconnect", "eidas2").await;
    expect_refused(&app, &provider, StatusCode::FORBIDDEN).await;
    provider.behave(|b| b.id_token_overrides = json!({"acr": "eidas3"}));
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn provider_down_or_slow_is_a_clear_page() {
    let provider = Provider::start();
    let app = portal(&provider, "franceconnect", "eidas1").await;
    provider.behave(|b| b.token_delay = Duration::from_secs(4));
    expect_refused(&app, &provider, StatusCode::BAD_GATEWAY).await;

    // A provider that is not there at all: the login cannot even start.
    let nowhere = spawn_app_with(Options {
        extra_toml: "[oidc]\ntimeout_seconds = 2\n[[oidc.providers]]\nid = \"fc\"\n\
                     kind = \"franceconnect\"\naudience = \"citizen\"\n\
                     issuer = \"http://127.0.0.1:1/api/v2\"\nclient_id = \"x\"\n\
                     client_secret = \"y\"\n"
            .to_owned(),
        ..Options::default()
    })
    .await;
    let answer = nowhere.get("/login/fc").await;
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    assert!(answer.text().await.unwrap().contains("<h1>"));
}

#[tokio::test]
async fn belgian_fas_logins_match_on_the_national_register_number() {
    let provider = Provider::start();
    provider.behave(|b| {
        b.userinfo_claims = json!({"egovNRN": "85073003328", "given_name": "Lotte",
                                   "family_name": "Peeters"});
    });
    let app = portal(&provider, "fas", "eidas1").await;
    let token = app.agent_token("agent@gemeente.example", Role::Agent).await;
    let response = app
        .deliver(&token)
        .metadata(metadata(json!({"nrn": "85.07.30-033.28"}), "Aanslagbiljet"))
        .file(document_bytes(3_000, 4))
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let citizen = app.citizen_of(&id).await;

    let answer = login(&app, &provider, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let linked: String = {
        use diesel::prelude::*;
        use eguichet::db::schema::citizen_logins;
        app.state
            .db
            .read(|conn| -> Result<String, eguichet::db::DbError> {
                Ok(citizen_logins::table
                    .select(citizen_logins::citizen_id)
                    .first(conn)?)
            })
            .await
            .unwrap()
    };
    assert_eq!(linked, citizen);

    // Without the number, a FAS login cannot be matched: refused with a page.
    provider.behave(|b| b.userinfo_claims = json!({"given_name": "Lotte"}));
    expect_refused(&app, &provider, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_second_provider_asserting_the_same_identity_is_not_merged_silently() {
    let first = Provider::start();
    let second = Provider::start();
    let app = portal_with(
        &[("fc", &first), ("other", &second)],
        "franceconnect",
        "eidas1",
    )
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis",
            document_bytes(2_000, 5),
        )
        .await;
    let addressed = app.citizen_of(&id).await;

    let linked = |app: &TestApp| {
        use diesel::prelude::*;
        use eguichet::db::schema::citizen_logins;
        let db = app.state.db.clone();
        async move {
            db.read(
                |conn| -> Result<Vec<(String, String)>, eguichet::db::DbError> {
                    Ok(citizen_logins::table
                        .select((citizen_logins::provider_id, citizen_logins::citizen_id))
                        .order(citizen_logins::created_at)
                        .load(conn)?)
                },
            )
            .await
            .unwrap()
        }
    };
    // The first provider's account is matched to the documents addressed before.
    assert_eq!(
        login_through(&app, "fc", &first, &fresh_code())
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // Another issuer asserting the same pivot identity gets a vault of its own.
    assert_eq!(
        login_through(&app, "other", &second, &fresh_code())
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let logins = linked(&app).await;
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0], ("fc".to_owned(), addressed.clone()));
    assert_eq!(logins[1].0, "other");
    assert_ne!(logins[1].1, addressed);

    // Both outcomes are in the audit log.
    let actions: Vec<String> = {
        use diesel::prelude::*;
        use eguichet::db::schema::audit_events;
        app.state
            .db
            .read(|conn| -> Result<Vec<String>, eguichet::db::DbError> {
                Ok(audit_events::table
                    .select(audit_events::action)
                    .load(conn)?)
            })
            .await
            .unwrap()
    };
    for expected in ["citizen.matched", "citizen.match_kept_apart"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
}

/// The portal with providers of different kinds: (id, provider, kind, extra TOML lines).
async fn portal_mixed(providers: &[(&str, &Provider, &str, &str)]) -> TestApp {
    let mut toml = "[oidc]\ntimeout_seconds = 2\n".to_owned();
    for (id, provider, kind, extra) in providers {
        toml.push_str(&format!(
            "[[oidc.providers]]\nid = \"{id}\"\nkind = \"{kind}\"\naudience = \"citizen\"\n\
             issuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\n{extra}\n",
            provider.issuer
        ));
    }
    spawn_app_with(Options {
        extra_toml: toml,
        ..Options::default()
    })
    .await
}

/// Each provider account's vault: (provider id, citizen id), oldest first.
async fn vault_links(app: &TestApp) -> Vec<(String, String)> {
    use diesel::prelude::*;
    use eguichet::db::schema::citizen_logins;
    app.state
        .db
        .read(
            |conn| -> Result<Vec<(String, String)>, eguichet::db::DbError> {
                Ok(citizen_logins::table
                    .select((citizen_logins::provider_id, citizen_logins::citizen_id))
                    .order((citizen_logins::created_at, citizen_logins::provider_id))
                    .load(conn)?)
            },
        )
        .await
        .unwrap()
}

fn vault_of(links: &[(String, String)], provider_id: &str) -> String {
    links
        .iter()
        .find(|(provider, _)| provider == provider_id)
        .map(|(_, citizen)| citizen.clone())
        .unwrap()
}

async fn vault_page(app: &TestApp, browser: &reqwest::Client) -> String {
    let page = browser
        .get(format!("{}/vault", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_weak_provider_logging_in_first_with_someones_identity_takes_nothing() {
    let fc = Provider::start();
    let weak = Provider::start();
    let app = portal_mixed(&[
        ("fc", &fc, "franceconnect", "acr_values = \"eidas1\""),
        ("weak", &weak, "generic", ""),
    ])
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let first = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis de taxe",
            document_bytes(2_000, 5),
        )
        .await;
    let addressed = app.citizen_of(&first).await;

    // The attacker logs in first, through the generic provider, asserting Marie's
    // pivot identity (same claims FranceConnect sends for her).
    let (answer, attacker) = login_in_browser(&app, "weak", &weak, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_ne!(vault_of(&vault_links(&app).await, "weak"), addressed);
    assert!(!vault_page(&app, &attacker).await.contains("Avis de taxe"));

    // The real Marie, through FranceConnect, finds the document addressed to her.
    let (answer, marie) = login_in_browser(&app, "fc", &fc, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(vault_of(&vault_links(&app).await, "fc"), addressed);
    assert!(vault_page(&app, &marie).await.contains("Avis de taxe"));

    // Later deliveries follow the verified identity; the attacker, back again, still
    // sees nothing of them.
    let later = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Facture cantine",
            document_bytes(2_000, 6),
        )
        .await;
    assert_eq!(app.citizen_of(&later).await, addressed);
    let (answer, attacker) = login_in_browser(&app, "weak", &weak, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_ne!(vault_of(&vault_links(&app).await, "weak"), addressed);
    let page = vault_page(&app, &attacker).await;
    assert!(!page.contains("Facture cantine") && !page.contains("Avis de taxe"));
}

#[tokio::test]
async fn a_weak_provider_logging_in_before_any_delivery_captures_no_later_one() {
    let fc = Provider::start();
    let weak = Provider::start();
    let app = portal_mixed(&[
        ("fc", &fc, "franceconnect", "acr_values = \"eidas1\""),
        ("weak", &weak, "generic", ""),
    ])
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    assert_eq!(
        login_through(&app, "weak", &weak, &fresh_code())
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let weak_vault = vault_of(&vault_links(&app).await, "weak");
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis",
            document_bytes(2_000, 7),
        )
        .await;
    assert_ne!(app.citizen_of(&id).await, weak_vault);
    assert_eq!(
        login_through(&app, "fc", &fc, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        vault_of(&vault_links(&app).await, "fc"),
        app.citizen_of(&id).await
    );
}

#[tokio::test]
async fn a_vault_captured_before_assurance_was_checked_returns_to_the_verified_citizen() {
    use diesel::prelude::*;
    use eguichet::db::schema::{citizen_logins, sessions};
    let fc = Provider::start();
    let weak = Provider::start();
    let app = portal_mixed(&[
        ("fc", &fc, "franceconnect", "acr_values = \"eidas1\""),
        ("weak", &weak, "generic", ""),
    ])
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis de taxe",
            document_bytes(2_000, 8),
        )
        .await;
    let addressed = app.citizen_of(&id).await;
    let (answer, attacker) = login_in_browser(&app, "weak", &weak, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    // What an older version recorded: the weak account linked to the addressed vault
    // (assurance unknown), its session open on it.
    let captured = addressed.clone();
    app.state
        .db
        .write(move |conn| -> Result<(), eguichet::db::DbError> {
            diesel::update(citizen_logins::table)
                .set((
                    citizen_logins::citizen_id.eq(&captured),
                    citizen_logins::identity_verified.eq(None::<bool>),
                ))
                .execute(conn)?;
            diesel::update(sessions::table)
                .set(sessions::subject_id.eq(&captured))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    assert!(vault_page(&app, &attacker).await.contains("Avis de taxe"));

    // The verified citizen arrives: the vault is hers, the weak account is moved out
    // and its session ends.
    let (answer, marie) = login_in_browser(&app, "fc", &fc, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let links = vault_links(&app).await;
    assert_eq!(vault_of(&links, "fc"), addressed);
    assert_ne!(vault_of(&links, "weak"), addressed);
    assert!(vault_page(&app, &marie).await.contains("Avis de taxe"));
    let attacker_page = attacker
        .get(format!("{}/vault", app.address))
        .send()
        .await
        .unwrap();
    assert_ne!(attacker_page.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_captured_vault_is_left_at_the_weak_accounts_next_login() {
    use diesel::prelude::*;
    use eguichet::db::schema::citizen_logins;
    let weak = Provider::start();
    let app = portal_mixed(&[("weak", &weak, "generic", "")]).await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis de taxe",
            document_bytes(2_000, 9),
        )
        .await;
    let addressed = app.citizen_of(&id).await;
    login_through(&app, "weak", &weak, &fresh_code()).await;
    let captured = addressed.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(citizen_logins::table)
                .set(citizen_logins::citizen_id.eq(&captured))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let (answer, attacker) = login_in_browser(&app, "weak", &weak, &fresh_code()).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_ne!(vault_of(&vault_links(&app).await, "weak"), addressed);
    assert!(!vault_page(&app, &attacker).await.contains("Avis de taxe"));
    // Deliveries still go to the identity, not to the weak account's vault.
    let later = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Facture",
            document_bytes(2_000, 10),
        )
        .await;
    assert_eq!(app.citizen_of(&later).await, addressed);
}

#[tokio::test]
async fn a_provider_declared_identity_verified_opens_the_addressed_vault() {
    let verified = Provider::start();
    let app = portal_mixed(&[("regional", &verified, "generic", "identity_verified = true")]).await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis",
            document_bytes(2_000, 11),
        )
        .await;
    assert_eq!(
        login_through(&app, "regional", &verified, &fresh_code())
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        vault_of(&vault_links(&app).await, "regional"),
        app.citizen_of(&id).await
    );
}

#[tokio::test]
async fn franceconnect_below_eidas1_does_not_open_the_addressed_vault() {
    let fc = Provider::start();
    // An operator who forgot `acr_values`: the provider answers no level at all.
    let app = portal_mixed(&[("fc", &fc, "franceconnect", "")]).await;
    fc.behave(|b| b.id_token_overrides = json!({"acr": null}));
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(
            &token,
            crate::common::marie(),
            "Avis",
            document_bytes(2_000, 12),
        )
        .await;
    assert_eq!(
        login(&app, &fc, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_ne!(
        vault_of(&vault_links(&app).await, "fc"),
        app.citizen_of(&id).await
    );
}

#[tokio::test]
async fn fas_levels_are_at_least_what_was_asked() {
    let provider = Provider::start();
    provider.behave(|b| {
        b.userinfo_claims = json!({"egovNRN": "85073003328"});
        b.id_token_overrides = json!({"acr": "urn:be:fedict:iam:fas:Level500"});
    });
    let app = portal(&provider, "fas", "urn:be:fedict:iam:fas:Level450").await;
    // The eID card (Level500) answers a request for Level450 (itsme or eID).
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    provider.behave(|b| b.id_token_overrides = json!({"acr": "urn:be:fedict:iam:fas:Level450"}));
    assert_eq!(
        login(&app, &provider, &fresh_code()).await.status(),
        StatusCode::SEE_OTHER
    );
    // Weaker than asked, or on another scale: refused.
    for weaker in ["urn:be:fedict:iam:fas:Level400", "eidas3"] {
        provider.behave(|b| b.id_token_overrides = json!({"acr": weaker}));
        expect_refused(&app, &provider, StatusCode::FORBIDDEN).await;
    }
}
