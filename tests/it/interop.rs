//! The relying party against a real, independent OpenID provider: panva's
//! `oidc-provider`, configured like FranceConnect v2 (`e2e/oidc-provider/server.mjs`),
//! started on loopback for each test. Runs when `TEST_OIDC_PROVIDER=1`; it needs `node`
//! and `npm ci --prefix e2e/oidc-provider`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::html::{attribute, form_action, hidden_fields, location, sets_session_cookie};
use crate::common::{Options, TestApp, awa, document_bytes, marie, spawn_app_with};
use eguichet::agents::Role;
use reqwest::{Response, StatusCode};
use url::Url;

const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/oidc-provider");
const CLIENT_ID: &str = "eguichet-interop";
const CLIENT_SECRET: &str = "an-interop-secret-that-is-long-enough-0123456789";

fn enabled() -> bool {
    let on = std::env::var("TEST_OIDC_PROVIDER").is_ok_and(|value| value == "1");
    if !on {
        println!("skipped: set TEST_OIDC_PROVIDER=1 to test against oidc-provider");
    }
    on
}

/// The node provider, killed when dropped (its log is printed if the test failed).
struct OpenIdProvider {
    child: Child,
    issuer: Url,
    log: tempfile::NamedTempFile,
}

impl OpenIdProvider {
    /// Starts `server.mjs` on `port` for the portal at `portal`, and waits until its
    /// discovery document answers.
    async fn start(port: u16, portal: &str) -> Self {
        assert!(
            Path::new(PROVIDER_DIR)
                .join("node_modules/oidc-provider")
                .exists(),
            "run `npm ci --prefix e2e/oidc-provider` first"
        );
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("node")
            .arg(Path::new(PROVIDER_DIR).join("server.mjs"))
            .args(["--port", &port.to_string()])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--portal-url", portal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start node: {error}"));
        let mut provider = Self {
            child,
            issuer: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            log,
        };
        let discovery = provider
            .issuer
            .join(".well-known/openid-configuration")
            .unwrap();
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Some(status) = provider.child.try_wait().unwrap() {
                panic!("the provider exited ({status}):\n{}", provider.log_text());
            }
            if let Ok(answer) = http.get(discovery.clone()).send().await
                && answer.status() == StatusCode::OK
            {
                return provider;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the provider did not answer:\n{}", provider.log_text());
    }

    /// The issuer exactly as the provider publishes it: no trailing slash.
    fn issuer(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_owned()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- oidc-provider log ---\n{}", self.log_text());
        }
    }
}

/// A portal whose provider `interop` is the node provider, asking for `acr_values`.
async fn portal_and_provider(acr_values: &str) -> (TestApp, OpenIdProvider) {
    // The portal's configuration names the issuer before the provider runs (discovery
    // is lazy), and the provider needs the portal's address for its redirect URIs.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra_toml = format!(
        "[[oidc.providers]]\nid = \"interop\"\nkind = \"franceconnect\"\naudience = \"citizen\"\n\
         issuer = \"http://127.0.0.1:{port}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nacr_values = \"{acr_values}\"\n\
         scopes = [\"openid\", \"given_name\", \"family_name\", \"birthdate\", \"birthplace\",\n\
                   \"birthcountry\", \"gender\", \"email\"]\n"
    );
    let app = spawn_app_with(Options {
        extra_toml,
        ..Options::default()
    })
    .await;
    let provider = OpenIdProvider::start(port, &app.address).await;
    (app, provider)
}

/// Where a chain of redirects through the provider ends.
enum Landing {
    /// A page the provider shows (login, logout confirmation).
    Page { url: Url, html: String },
    /// The provider sends the browser back to the portal.
    Portal(Url),
}

impl Landing {
    fn page(self) -> (Url, String) {
        match self {
            Self::Page { url, html } => (url, html),
            Self::Portal(url) => panic!("expected a provider page, went back to {url}"),
        }
    }

    fn portal(self) -> Url {
        match self {
            Self::Portal(url) => url,
            Self::Page { url, html } => {
                panic!("expected a return to the portal, at {url}:\n{html}")
            }
        }
    }
}

/// A browser: keeps cookies, follows redirects one at a time.
struct Browser {
    client: reqwest::Client,
    portal: Url,
    issuer: String,
}

impl Browser {
    fn new(app: &TestApp, provider: &OpenIdProvider) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            portal: Url::parse(&app.address).unwrap(),
            issuer: provider.issuer(),
        }
    }

    async fn get(&self, url: Url) -> Response {
        self.client.get(url).send().await.unwrap()
    }

    async fn portal_get(&self, path: &str) -> Response {
        self.get(self.portal.join(path).unwrap()).await
    }

    /// Follows the provider's redirects from `response` (the answer to `url`).
    async fn follow(&self, mut response: Response, mut url: Url) -> Landing {
        for _ in 0..10 {
            if !response.status().is_redirection() {
                assert_eq!(response.status(), StatusCode::OK, "{url}");
                let html = response.text().await.unwrap();
                return Landing::Page { url, html };
            }
            url = url.join(&location(&response)).unwrap();
            if !url.as_str().starts_with(&self.issuer) {
                return Landing::Portal(url);
            }
            response = self.get(url.clone()).await;
        }
        panic!("too many redirects at the provider");
    }

    /// Submits the first form of a provider page with its hidden fields and `extra`.
    async fn submit(&self, (url, html): (Url, String), extra: &[(&str, &str)]) -> Landing {
        let action = url.join(&form_action(&html)).unwrap();
        let mut fields = hidden_fields(&html);
        fields.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let response = self
            .client
            .post(action.clone())
            .form(&fields)
            .send()
            .await
            .unwrap();
        self.follow(response, action).await
    }

    /// Starts a login at the portal and returns the provider's authorization URL.
    async fn start_login(&self) -> Url {
        let start = self.portal_get("/login/interop").await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        let authorize = Url::parse(&location(&start)).unwrap();
        assert!(authorize.as_str().starts_with(&self.issuer), "{authorize}");
        authorize
    }

    /// The login page the provider shows for a new login.
    async fn provider_login_page(&self) -> (Url, String) {
        let authorize = self.start_login().await;
        let response = self.get(authorize.clone()).await;
        self.follow(response, authorize).await.page()
    }

    /// Logs in at the provider as `login`; returns the portal's answer to the callback.
    async fn log_in_as(&self, login: &str) -> Response {
        let page = self.provider_login_page().await;
        let callback = self.submit(page, &[("login", login)]).await.portal();
        assert_eq!(callback.path(), "/login/interop/callback", "{callback}");
        self.get(callback).await
    }

    /// Logs in and expects to land in the vault.
    async fn logged_in_as(app: &TestApp, provider: &OpenIdProvider, login: &str) -> Self {
        let browser = Self::new(app, provider);
        let callback = browser.log_in_as(login).await;
        assert_eq!(
            callback.status(),
            StatusCode::SEE_OTHER,
            "{}",
            provider.log_text()
        );
        assert_eq!(location(&callback), "/vault");
        browser
    }

    async fn vault(&self) -> String {
        let page = self.portal_get("/vault").await;
        assert_eq!(page.status(), StatusCode::OK);
        page.text().await.unwrap()
    }
}

#[tokio::test]
async fn citizens_log_in_through_a_real_provider_find_their_documents_and_log_out() {
    if !enabled() {
        return;
    }
    let (app, provider) = portal_and_provider("eidas1").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let plaintext = document_bytes(120_000, 21);
    let marie_doc = app
        .deliver_to(
            &token,
            marie(),
            "Avis de taxe foncière 2026",
            plaintext.clone(),
        )
        .await;
    app.deliver_to(&token, awa(), "Facture cantine", document_bytes(5_000, 22))
        .await;

    let browser = Browser::logged_in_as(&app, &provider, "marie.dupont").await;
    let vault = browser.vault().await;
    assert!(vault.contains("Avis de taxe foncière 2026"), "{vault}");
    assert!(!vault.contains("Facture cantine"));
    let download = browser
        .portal_get(&format!("/vault/documents/{marie_doc}"))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.bytes().await.unwrap().as_ref(),
        plaintext.as_slice()
    );

    // Born abroad: the empty birthplace the provider asserts matches the delivery.
    let awa_browser = Browser::logged_in_as(&app, &provider, "awa.diallo").await;
    let vault = awa_browser.vault().await;
    assert!(
        vault.contains("Facture cantine") && !vault.contains("Avis de taxe"),
        "{vault}"
    );

    // Logout: the provider's end-session with our hint, its confirmation, back with state.
    let csrf = hidden_fields(&browser.vault().await)
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .unwrap()
        .1;
    let logout = browser
        .client
        .post(browser.portal.join("/logout").unwrap())
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let end_session = Url::parse(&location(&logout)).unwrap();
    assert!(
        end_session.as_str().starts_with(&provider.issuer()),
        "{end_session}"
    );
    let response = browser.get(end_session.clone()).await;
    let confirmation = browser.follow(response, end_session).await.page();
    let back = browser.submit(confirmation, &[]).await.portal();
    assert_eq!(back.path(), "/logout/callback", "{back}");
    let done = browser.get(back).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        browser.portal_get("/vault").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Awa's session is hers alone.
    awa_browser.vault().await;
}

#[tokio::test]
async fn a_weaker_level_than_required_or_a_cancelled_login_opens_no_session() {
    if !enabled() {
        return;
    }
    let (app, provider) = portal_and_provider("eidas2").await;

    // The provider is asked for eidas2 and grants the eidas1 its test accounts reach.
    let browser = Browser::new(&app, &provider);
    let authorize = browser.start_login().await;
    assert!(
        authorize
            .query_pairs()
            .any(|(name, value)| name == "acr_values" && value == "eidas2"),
        "{authorize}"
    );
    let callback = browser.log_in_as("marie.dupont").await;
    assert_eq!(callback.status(), StatusCode::FORBIDDEN);
    assert!(!sets_session_cookie(&callback));
    let page = callback.text().await.unwrap();
    assert!(page.contains("niveau de vérification"), "{page}");
    assert_eq!(
        browser.portal_get("/vault").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A citizen cancels at the provider: its access_denied comes back as a page.
    let browser = Browser::new(&app, &provider);
    let (url, html) = browser.provider_login_page().await;
    let cancel_form = html.split("<form").nth(2).unwrap();
    let cancel = url
        .join(&attribute(cancel_form, "action").unwrap())
        .unwrap();
    let response = browser.client.post(cancel.clone()).send().await.unwrap();
    let callback = browser.follow(response, cancel).await.portal();
    assert!(
        callback.query().unwrap().contains("error=access_denied"),
        "{callback}"
    );
    let refused = browser.get(callback).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!sets_session_cookie(&refused));
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("refusé la connexion")
    );
}
