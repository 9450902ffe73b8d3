//! A citizen's browser: keeps cookies, does not follow redirects (each step is
//! checked), and logs in through the demonstration provider.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};

use super::TestApp;
use super::html::{form_action, hidden_fields, location};

/// A browser: keeps cookies, does not follow redirects (each step is checked).
pub struct CitizenBrowser {
    pub client: reqwest::Client,
    jar: Arc<Jar>,
    pub base: String,
}

impl CitizenBrowser {
    pub fn new(app: &TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        Self {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar,
            base: app.address.clone(),
        }
    }

    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(String, String)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Starts a login and returns the provider's page with its form fields.
    pub async fn open_provider_page(&self) -> (String, Vec<(String, String)>) {
        let start = self.get("/login/demo").await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        let authorize = location(&start);
        let page = self.get(&authorize).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        (form_action(&html), hidden_fields(&html))
    }

    /// Logs in as one of the demonstration citizens; returns the callback answer.
    pub async fn login_as(&self, login: &str) -> reqwest::Response {
        let (action, mut fields) = self.open_provider_page().await;
        fields.push(("citizen".to_owned(), login.to_owned()));
        fields.push(("decision".to_owned(), "accept".to_owned()));
        let chosen = self.post(&action, &fields).await;
        assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
        let callback = location(&chosen);
        assert!(callback.contains("/login/demo/callback?"), "{callback}");
        self.get(&callback).await
    }

    /// Logs in and expects to land in the vault.
    pub async fn logged_in_as(app: &TestApp, login: &str) -> Self {
        let browser = Self::new(app);
        browser.log_in_to_vault(login).await;
        browser
    }

    /// Logs this browser in (again) and expects to land in the vault.
    pub async fn log_in_to_vault(&self, login: &str) {
        let callback = self.login_as(login).await;
        assert_eq!(callback.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&callback), "/vault");
    }

    pub async fn vault(&self) -> String {
        let page = self.get("/vault").await;
        assert_eq!(page.status(), StatusCode::OK);
        page.text().await.unwrap()
    }

    /// The value of the citizen's session cookie.
    pub fn session_cookie(&self) -> String {
        let url: reqwest::Url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url).unwrap();
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|pair| pair.strip_prefix("eg_session="))
            .unwrap()
            .to_owned()
    }
}
