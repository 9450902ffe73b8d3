//! The demonstration OpenID provider on its own server, driven as a relying party drives
//! FranceConnect: discovery, the code flow and its rules, userinfo as a signed JWT,
//! logout, and key rotation.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer};
use eguichet::auth::demo_idp::{DemoClient, DemoIdentityProvider, demo_citizens};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Response, StatusCode, header};
use serde_json::Value;
use url::Url;

const CLIENT_ID: &str = "eguichet-demo";
const CLIENT_SECRET: &str = "a-demo-secret-that-is-long-enough-0123456789";

/// A provider serving on loopback, and what a relying party knows about it.
struct TestIdp {
    provider: Arc<DemoIdentityProvider>,
    issuer: String,
    redirect_uri: String,
    logged_out_uri: String,
    http: reqwest::Client,
}

/// What the provider sent back to the callback after a login.
struct Login {
    code: String,
    nonce: String,
}

/// Starts a server with only the provider mounted, under `/demo-idp`.
async fn spawn_idp() -> TestIdp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{origin}/demo-idp");
    let redirect_uri = format!("{origin}/auth/callback");
    let logged_out_uri = format!("{origin}/auth/logged-out");
    let provider = Arc::new(DemoIdentityProvider::new(
        Url::parse(&issuer).unwrap(),
        DemoClient {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            redirect_uris: vec![Url::parse(&redirect_uri).unwrap()],
            post_logout_redirect_uris: vec![Url::parse(&logged_out_uri).unwrap()],
        },
    ));
    let mounted = provider.clone();
    let server =
        HttpServer::new(move || App::new().configure(|cfg| mounted.clone().configure(cfg)))
            .workers(1)
            .listen(listener)
            .unwrap()
            .run();
    tokio::spawn(server);
    TestIdp {
        provider,
        issuer,
        redirect_uri,
        logged_out_uri,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// 32 random bytes, hex: what a careful relying party sends as state and nonce.
fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl TestIdp {
    /// A valid authorization request, as the portal would send it.
    fn authorization_request(&self) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", CLIENT_ID.to_owned()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", "openid identite_pivot email".to_owned()),
            ("state", random_hex()),
            ("nonce", random_hex()),
            ("acr_values", "eidas1".to_owned()),
            ("prompt", "login consent".to_owned()),
        ]
    }

    async fn get(&self, suffix: &str) -> Response {
        self.http
            .get(format!("{}{suffix}", self.issuer))
            .send()
            .await
            .unwrap()
    }

    async fn discovery(&self) -> Value {
        let response = self.get("/.well-known/openid-configuration").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn jwks(&self) -> JwkSet {
        self.get("/jwks").await.json().await.unwrap()
    }

    async fn authorize_page(&self, request: &[(&str, String)]) -> Response {
        self.http
            .get(format!("{}/authorize", self.issuer))
            .query(request)
            .send()
            .await
            .unwrap()
    }

    /// Posts the login page's form: the carried request plus the citizen's choice.
    async fn choose(&self, request: &[(&str, String)], choice: &[(&str, &str)]) -> Response {
        let mut form: Vec<(&str, String)> = request.to_vec();
        form.extend(
            choice
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        self.http
            .post(format!("{}/authorize", self.issuer))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Logs `login` in with `scope` and returns what came back to the callback.
    async fn login_as_with_scope(&self, login: &str, scope: &str) -> Login {
        let mut request = self.authorization_request();
        request.retain(|(name, _)| *name != "scope");
        request.push(("scope", scope.to_owned()));
        let state = param(&request, "state");
        let response = self
            .choose(&request, &[("citizen", login), ("decision", "accept")])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let callback = location(&response);
        assert!(
            callback.as_str().starts_with(&self.redirect_uri),
            "{callback}"
        );
        assert_eq!(query(&callback, "state").as_deref(), Some(state.as_str()));
        Login {
            code: query(&callback, "code").unwrap(),
            nonce: param(&request, "nonce"),
        }
    }

    async fn login_as(&self, login: &str) -> Login {
        self.login_as_with_scope(login, "openid identite_pivot email")
            .await
    }

    async fn redeem_with(&self, code: &str, secret: &str, redirect_uri: &str) -> Response {
        self.http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", CLIENT_ID),
                ("client_secret", secret),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn redeem(&self, code: &str) -> Response {
        self.redeem_with(code, CLIENT_SECRET, &self.redirect_uri)
            .await
    }

    /// The token answer for a successful login of `login`.
    async fn tokens_for(&self, login: &str) -> (Value, Login) {
        let login = self.login_as(login).await;
        let response = self.redeem(&login.code).await;
        assert_eq!(response.status(), StatusCode::OK);
        (response.json().await.unwrap(), login)
    }

    async fn userinfo(&self, access_token: &str) -> Response {
        self.http
            .get(format!("{}/userinfo", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    /// The claims of the userinfo JWT, verified with the published keys.
    async fn verified_userinfo(&self, access_token: &str) -> Value {
        let response = self.userinfo(access_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE].to_str().unwrap(),
            "application/jwt"
        );
        let jwt = response.text().await.unwrap();
        self.verify(&jwt).await
    }

    /// Verifies a JWT as a relying party does: key by `kid` from the JWKS, ES256 only,
    /// exact issuer, audience = client id, not expired.
    async fn verify(&self, jwt: &str) -> Value {
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let jwks = self.jwks().await;
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }

    async fn end_session(&self, params: &[(&str, &str)]) -> Response {
        self.http
            .get(format!("{}/session/end", self.issuer))
            .query(params)
            .send()
            .await
            .unwrap()
    }
}

fn param(request: &[(&str, String)], name: &str) -> String {
    request
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.clone())
        .unwrap()
}

fn with(
    request: &[(&'static str, String)],
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut changed: Vec<_> = request
        .iter()
        .filter(|(key, _)| *key != name)
        .cloned()
        .collect();
    changed.push((name, value.to_owned()));
    changed
}

fn without(request: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    request
        .iter()
        .filter(|(key, _)| *key != name)
        .cloned()
        .collect()
}

fn location(response: &Response) -> Url {
    Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn subject_of(login: &str) -> String {
    demo_citizens()
        .iter()
        .find(|citizen| citizen.login == login)
        .unwrap()
        .subject_for(CLIENT_ID)
}

/// The relying party is sent back an `invalid_request` error with its state.
async fn assert_refused_to_client(idp: &TestIdp, request: &[(&'static str, String)]) {
    let response = idp.authorize_page(request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let callback = location(&response);
    assert!(
        callback.as_str().starts_with(&idp.redirect_uri),
        "{callback}"
    );
    assert_eq!(
        query(&callback, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query(&callback, "error_description").is_some());
    assert_eq!(query(&callback, "state"), Some(param(request, "state")));
    assert!(query(&callback, "code").is_none());
}

/// The browser gets a French error page and goes nowhere.
async fn assert_refused_to_browser(response: Response) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<html lang="fr">"#), "{page}");
}

#[tokio::test]
async fn discovery_advertises_what_franceconnect_v2_offers() {
    let idp = spawn_idp().await;
    let discovery = idp.discovery().await;
    let issuer = &idp.issuer;
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{issuer}/authorize")
    );
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(discovery["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{issuer}/session/end")
    );
    assert_eq!(
        discovery["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        discovery["grant_types_supported"],
        serde_json::json!(["authorization_code"])
    );
    assert_eq!(
        discovery["subject_types_supported"],
        serde_json::json!(["pairwise"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        discovery["userinfo_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_post"])
    );
    assert_eq!(
        discovery["acr_values_supported"],
        serde_json::json!(["eidas1", "eidas2", "eidas3"])
    );
    let scopes = discovery["scopes_supported"].as_array().unwrap();
    for scope in [
        "openid",
        "identite_pivot",
        "profile",
        "email",
        "birthplace",
        "preferred_username",
    ] {
        assert!(scopes.contains(&Value::from(scope)), "{scope}");
    }
    let claims = discovery["claims_supported"].as_array().unwrap();
    for claim in [
        "sub",
        "given_name",
        "family_name",
        "birthdate",
        "birthplace",
        "birthcountry",
    ] {
        assert!(claims.contains(&Value::from(claim)), "{claim}");
    }

    let jwks: Value = idp.get("/jwks").await.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0]["kid"].is_string() && keys[0]["x"].is_string() && keys[0]["y"].is_string());
    assert!(
        keys[0].get("d").is_none(),
        "the private key is never published"
    );
}

#[tokio::test]
async fn login_page_lists_the_test_citizens_without_script() {
    let idp = spawn_idp().await;
    let request = idp.authorization_request();
    let response = idp.authorize_page(&request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<html lang="fr">"#));
    assert!(page.contains("<main>") && page.contains("<h1>"));
    for citizen in demo_citizens() {
        assert!(page.contains(citizen.family_name), "{}", citizen.login);
        assert!(page.contains(&format!(r#"value="{}""#, citizen.login)));
    }
    assert!(page.contains(r#"action="/demo-idp/authorize""#));
    // The request travels in hidden fields, unchanged.
    assert!(page.contains(&format!(
        r#"<input type="hidden" name="nonce" value="{}">"#,
        param(&request, "nonce")
    )));
    assert!(page.contains(r#"value="refuse""#) && page.contains("Refuser"));
    assert!(
        !page.contains("<script") && !page.contains("<style") && !page.contains("style="),
        "{page}"
    );
}

#[tokio::test]
async fn code_flow_gives_verifiable_id_token_and_userinfo() {
    let idp = spawn_idp().await;
    let (tokens, login) = idp.tokens_for("marie.dupont").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 60);
    assert_eq!(tokens["scope"], "openid identite_pivot email");

    let id_token = idp.verify(tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id_token["iss"], idp.issuer.as_str());
    assert_eq!(id_token["aud"], CLIENT_ID);
    assert_eq!(id_token["nonce"], login.nonce.as_str());
    assert_eq!(id_token["acr"], "eidas1");
    assert_eq!(id_token["amr"], serde_json::json!(["pwd"]));
    assert_eq!(id_token["sub"], subject_of("marie.dupont").as_str());
    let iat = id_token["iat"].as_i64().unwrap();
    assert_eq!(id_token["exp"].as_i64().unwrap() - iat, 60);
    assert!(id_token["auth_time"].as_i64().unwrap() <= iat);
    assert!(
        id_token.get("given_name").is_none(),
        "identity claims come from userinfo"
    );

    let userinfo = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(userinfo["sub"], id_token["sub"]);
    assert_eq!(userinfo["given_name"], "Marie Claire");
    assert_eq!(userinfo["family_name"], "DUPONT");
    assert_eq!(userinfo["birthdate"], "1980-07-30");
    assert_eq!(userinfo["birthplace"], "75056");
    assert_eq!(userinfo["birthcountry"], "99100");
    assert_eq!(userinfo["gender"], "female");
    assert_eq!(userinfo["email"], "famille.dupont@example.org");
    assert!(
        userinfo.get("preferred_username").is_none(),
        "not in identite_pivot"
    );
}

#[tokio::test]
async fn userinfo_keeps_franceconnect_edge_cases() {
    let idp = spawn_idp().await;
    let (tokens, _) = idp.tokens_for("awa.diallo").await;
    let abroad = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(abroad["birthplace"], "");
    assert_eq!(abroad["birthcountry"], "99341");

    let (tokens, _) = idp.tokens_for("paul.casanova").await;
    let corsican = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(corsican["birthplace"], "2A004");

    let (tokens, _) = idp.tokens_for("ahmad.rahimi").await;
    let presumed = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert!(presumed["birthdate"].as_str().unwrap().ends_with("-01-01"));

    let (tokens, _) = idp.tokens_for("jean.dupont").await;
    let husband = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(husband["email"], "famille.dupont@example.org");
    assert_ne!(husband["sub"], subject_of("marie.dupont").as_str());
}

#[tokio::test]
async fn userinfo_releases_only_what_the_scope_allows() {
    let idp = spawn_idp().await;
    let login = idp
        .login_as_with_scope("sophie.lefebvre", "openid given_name preferred_username")
        .await;
    let tokens: Value = idp.redeem(&login.code).await.json().await.unwrap();
    let userinfo = idp
        .verified_userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(userinfo["given_name"], "Sophie Anne");
    assert_eq!(userinfo["preferred_username"], "MOREAU");
    for withheld in ["family_name", "birthdate", "birthplace", "email", "gender"] {
        assert!(userinfo.get(withheld).is_none(), "{withheld}");
    }
}

#[tokio::test]
async fn userinfo_refuses_unknown_tokens() {
    let idp = spawn_idp().await;
    let response = idp.userinfo(&random_hex()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap(),
        r#"Bearer error="invalid_token""#
    );
}

#[tokio::test]
async fn a_code_is_redeemed_once() {
    let idp = spawn_idp().await;
    let login = idp.login_as("marie.dupont").await;
    assert_eq!(idp.redeem(&login.code).await.status(), StatusCode::OK);
    let replay = idp.redeem(&login.code).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_and_spends_the_code() {
    let idp = spawn_idp().await;
    let login = idp.login_as("marie.dupont").await;
    let response = idp
        .redeem_with(&login.code, "not-the-secret", &idp.redirect_uri)
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let retry: Value = idp.redeem(&login.code).await.json().await.unwrap();
    assert_eq!(retry["error"], "invalid_grant");
}

#[tokio::test]
async fn a_code_is_bound_to_its_redirect_uri() {
    let idp = spawn_idp().await;
    let login = idp.login_as("marie.dupont").await;
    let response = idp
        .redeem_with(&login.code, CLIENT_SECRET, "http://127.0.0.1:1/elsewhere")
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn authorize_accepts_only_franceconnect_parameters() {
    let idp = spawn_idp().await;
    let request = idp.authorization_request();
    assert_eq!(idp.authorize_page(&request).await.status(), StatusCode::OK);

    let mut unknown = request.clone();
    unknown.push(("code_challenge", random_hex()));
    assert_refused_to_client(&idp, &unknown).await;
    assert_refused_to_client(&idp, &with(&request, "nonce", &"a".repeat(31))).await;
    assert_refused_to_client(&idp, &with(&request, "state", "too-short")).await;
    assert_refused_to_client(&idp, &without(&request, "acr_values")).await;
    assert_refused_to_client(&idp, &with(&request, "acr_values", "loa3")).await;
    assert_refused_to_client(&idp, &with(&request, "response_type", "token")).await;
    assert_refused_to_client(&idp, &with(&request, "scope", "identite_pivot")).await;
    assert_refused_to_client(&idp, &with(&request, "prompt", "none")).await;
    let mut repeated = request.clone();
    repeated.push(("scope", "openid".to_owned()));
    assert_refused_to_client(&idp, &repeated).await;

    // The form is checked again: a tampered carried request gets no code.
    let response = idp
        .choose(
            &with(&request, "nonce", "short"),
            &[("citizen", "marie.dupont"), ("decision", "accept")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        query(&location(&response), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn unknown_client_or_redirect_uri_gets_a_page_not_a_redirect() {
    let idp = spawn_idp().await;
    let request = idp.authorization_request();
    let foreign = with(
        &request,
        "redirect_uri",
        "https://attacker.example/callback",
    );
    assert_refused_to_browser(idp.authorize_page(&foreign).await).await;
    let near_miss = with(&request, "redirect_uri", &format!("{}/", idp.redirect_uri));
    assert_refused_to_browser(idp.authorize_page(&near_miss).await).await;
    let stranger = with(&request, "client_id", "someone-else");
    assert_refused_to_browser(idp.authorize_page(&stranger).await).await;
    // Even an invalid request with a foreign redirect_uri is not sent there.
    let mut both = with(&foreign, "nonce", "short");
    both.push(("extra", "1".to_owned()));
    assert_refused_to_browser(idp.authorize_page(&both).await).await;
}

#[tokio::test]
async fn refusing_sends_access_denied_with_the_state() {
    let idp = spawn_idp().await;
    let request = idp.authorization_request();
    let response = idp.choose(&request, &[("decision", "refuse")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let callback = location(&response);
    assert!(callback.as_str().starts_with(&idp.redirect_uri));
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&callback, "state"), Some(param(&request, "state")));
    assert!(query(&callback, "code").is_none());
}

#[tokio::test]
async fn logout_returns_to_a_registered_uri_with_the_state() {
    let idp = spawn_idp().await;
    let (tokens, _) = idp.tokens_for("marie.dupont").await;
    let hint = tokens["id_token"].as_str().unwrap();
    let state = random_hex();

    let response = idp
        .end_session(&[
            ("id_token_hint", hint),
            ("state", &state),
            ("post_logout_redirect_uri", &idp.logged_out_uri),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let back = location(&response);
    assert!(back.as_str().starts_with(&idp.logged_out_uri));
    assert_eq!(query(&back, "state"), Some(state.clone()));

    let unregistered = idp
        .end_session(&[
            ("id_token_hint", hint),
            ("state", &state),
            ("post_logout_redirect_uri", "https://attacker.example/"),
        ])
        .await;
    assert_refused_to_browser(unregistered).await;
    let no_state = idp
        .end_session(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", &idp.logged_out_uri),
        ])
        .await;
    assert_refused_to_browser(no_state).await;

    // An ID token from another provider is no hint, even with the same client id.
    let other = spawn_idp().await;
    let (foreign, _) = other.tokens_for("marie.dupont").await;
    let forged = idp
        .end_session(&[
            ("id_token_hint", foreign["id_token"].as_str().unwrap()),
            ("state", &state),
            ("post_logout_redirect_uri", &idp.logged_out_uri),
        ])
        .await;
    assert_refused_to_browser(forged).await;
    let garbage = idp
        .end_session(&[
            ("id_token_hint", "not-a-jwt"),
            ("state", &state),
            ("post_logout_redirect_uri", &idp.logged_out_uri),
        ])
        .await;
    assert_refused_to_browser(garbage).await;
}

#[tokio::test]
async fn rotated_key_is_published_and_used() {
    let idp = spawn_idp().await;
    let (before, _) = idp.tokens_for("marie.dupont").await;
    let old_kid = idp.jwks().await.keys[0].common.key_id.clone().unwrap();

    idp.provider.rotate_signing_key();

    let jwks = idp.jwks().await;
    assert_eq!(jwks.keys.len(), 1, "only the new key is served");
    let new_kid = jwks.keys[0].common.key_id.clone().unwrap();
    assert_ne!(new_kid, old_kid);

    let (after, _) = idp.tokens_for("marie.dupont").await;
    let id_token = after["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    idp.verify(id_token).await;
    idp.verified_userinfo(after["access_token"].as_str().unwrap())
        .await;

    // An ID token signed before the rotation is still a valid logout hint.
    let state = random_hex();
    let response = idp
        .end_session(&[
            ("id_token_hint", before["id_token"].as_str().unwrap()),
            ("state", &state),
            ("post_logout_redirect_uri", &idp.logged_out_uri),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
