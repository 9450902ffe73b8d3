//! Test harness: starts the real server on a random loopback port with its own data
//! directory. The database is SQLite unless `TEST_DATABASE_URL` names a PostgreSQL
//! server (each test then gets a fresh database); the object store is the local
//! directory unless `TEST_S3_ENDPOINT` and `TEST_S3_BUCKET` name an S3 server (each
//! test then gets its own key prefix).

pub mod agent_browser;
pub mod citizen_browser;
pub mod html;
pub mod outbound;
pub mod pdf_decode;

use std::time::Duration;

use diesel::prelude::*;
use diesel::{Connection, PgConnection};
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::config::Config;
use eguichet::db::schema::documents;
use eguichet::state::AppState;
use eguichet::tenants::{self, Slug};
use eguichet::web::Application;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// A running portal and what a test needs to look inside it.
pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    postgres: Option<PostgresDatabase>,
}

/// Extra configuration for one test, as TOML appended to the generated file.
#[derive(Default)]
pub struct Options {
    pub extra_toml: String,
    /// Use an S3 endpoint that refuses connections.
    pub storage_down: bool,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    eguichet::telemetry::init();
    let data_dir = tempfile::tempdir().unwrap();
    let postgres = std::env::var("TEST_DATABASE_URL")
        .ok()
        .map(|url| PostgresDatabase::create(&url));
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        data_dir.path().display()
    );
    // The test's own settings come first: top-level keys there would otherwise land
    // in whichever table the database or storage section opened last.
    toml.push_str(&options.extra_toml);
    if let Some(pg) = &postgres {
        toml.push_str(&format!(
            "[database]\nurl = \"{}\"\npool_size = 4\n",
            pg.url
        ));
    }
    toml.push_str(&storage_toml(options.storage_down));
    let config = Config::from_toml(&toml).unwrap();
    let application = Application::build(config).await.unwrap();
    let address = format!("http://{}", application.address());
    let state = application.state().clone();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        state,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        data_dir,
        postgres,
    }
}

fn storage_toml(down: bool) -> String {
    let endpoint = if down {
        // Nothing listens on port 1: every request fails at once.
        Some("http://127.0.0.1:1".to_owned())
    } else {
        std::env::var("TEST_S3_ENDPOINT").ok()
    };
    let Some(endpoint) = endpoint else {
        return String::new();
    };
    let bucket = std::env::var("TEST_S3_BUCKET").unwrap_or_else(|_| "eguichet-test".to_owned());
    format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\n\
         region = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
         path_style = true\nallow_http = true\nprefix = \"test-{}\"\n",
        uuid::Uuid::new_v4().simple()
    )
}

/// A database of its own on the PostgreSQL server, dropped with the test.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub fn create(admin_url: &str) -> Self {
        let name = format!("eguichet_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(admin_url).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0;
        Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// A valid pivot identity for tests.
pub fn pivot(family_name: &str) -> Value {
    json!({"pivot": {"family_name": family_name, "given_names": "Marie Claire",
                     "birthdate": "1980-07-30", "birthplace": "75056"}})
}

/// Marie Claire DUPONT, born in Paris, as an agent addresses her (a demonstration
/// citizen: she can log in).
pub fn marie() -> Value {
    json!({"pivot": {"family_name": "Dupont", "given_names": "Marie Claire",
                     "birthdate": "1980-07-30", "birthplace": "75056"}})
}

/// Awa Fatou DIALLO, born abroad: no birthplace (a demonstration citizen too).
pub fn awa() -> Value {
    json!({"pivot": {"family_name": "Diallo", "given_names": "Awa Fatou",
                     "birthdate": "1992-11-05", "birthplace": ""}})
}

/// Metadata for a delivery to `recipient`.
pub fn metadata(recipient: Value, title: &str) -> Value {
    json!({"recipient": recipient, "title": title, "category": "impots"})
}

/// Deterministic, incompressible-looking bytes.
pub fn document_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

impl TestApp {
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub fn postgres_admin(&self) -> Option<(String, String)> {
        self.postgres
            .as_ref()
            .map(|pg| (pg.admin_url.clone(), pg.name.clone()))
    }

    /// Creates an agent in the default tenant and returns a fresh API token.
    pub async fn agent_token(&self, email: &str, role: Role) -> String {
        self.agent_token_in(None, email, role).await
    }

    /// The same, in another tenant (created on demand).
    pub async fn agent_token_in(&self, tenant: Option<&str>, email: &str, role: Role) -> String {
        let email = AgentEmail::parse(email).unwrap();
        let tenant_slug = tenant.map(str::to_owned);
        let default = self.state.default_tenant.clone();
        self.state
            .db
            .write(move |conn| -> anyhow::Result<String> {
                let tenant = match tenant_slug {
                    Some(slug) => {
                        tenants::ensure_tenant(conn, &Slug::parse(&slug)?, "Autre commune")?
                    }
                    None => default,
                };
                let agent =
                    agents::create_agent(conn, &tenant, &email, role, None, Actor::Operator)?;
                let request = agents::TokenRequest::lasting(
                    agents::TokenName::parse("tests")?,
                    0,
                    eguichet::now(),
                );
                Ok(
                    agents::issue_api_token(conn, &agent, &request, Actor::Operator)?
                        .token
                        .reveal()
                        .to_owned(),
                )
            })
            .await
            .unwrap()
    }

    /// Creates an agent of the default tenant who works for `departments` (existing
    /// slugs) and returns a fresh API token.
    pub async fn agent_token_for(&self, email: &str, role: Role, departments: &[&str]) -> String {
        let token = self.agent_token(email, role).await;
        let email = AgentEmail::parse(email).unwrap();
        let slugs: Vec<String> = departments.iter().map(|slug| (*slug).to_owned()).collect();
        let tenant = self.state.default_tenant.clone();
        self.state
            .db
            .write(move |conn| -> anyhow::Result<()> {
                let agent = agents::find_agent(conn, &tenant.id, &email)?.unwrap();
                for slug in slugs {
                    let department = tenants::find_department(conn, &tenant.id, &slug)?.unwrap();
                    agents::org_chart::add_to_department(conn, &agent.id, &department.id)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        token
    }

    /// Adds a department to the default tenant.
    pub async fn department(&self, slug: &str) {
        let tenant = self.state.default_tenant.clone();
        let slug = Slug::parse(slug).unwrap();
        self.state
            .db
            .write(move |conn| {
                tenants::create_department(conn, &tenant, &slug, "Service", Actor::Operator)
            })
            .await
            .unwrap();
    }

    /// Delivers `bytes` titled `title` to `recipient`; returns the document id.
    pub async fn deliver_to(
        &self,
        token: &str,
        recipient: Value,
        title: &str,
        bytes: Vec<u8>,
    ) -> String {
        let response = self
            .deliver(token)
            .metadata(metadata(recipient, title))
            .file(bytes)
            .send()
            .await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Starts a delivery request.
    pub fn deliver(&self, token: &str) -> Delivery<'_> {
        Delivery {
            app: self,
            token: token.to_owned(),
            metadata: Some(metadata(pivot("Dupont"), "Avis de taxe foncière").to_string()),
            file: Some(document_bytes(10_000, 1)),
            idempotency_key: None,
        }
    }

    pub async fn status(&self, token: &str, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/documents/{id}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// How many document rows exist.
    pub async fn document_rows(&self) -> i64 {
        self.state
            .db
            .read(|conn| -> Result<i64, eguichet::db::DbError> {
                Ok(documents::table.count().get_result(conn)?)
            })
            .await
            .unwrap()
    }

    /// How many payloads are in the object store.
    pub async fn stored_objects(&self) -> usize {
        use futures::TryStreamExt;
        let listed: Vec<_> = self
            .state
            .storage
            .list_documents()
            .try_collect()
            .await
            .unwrap();
        listed.len()
    }

    /// Waits (briefly) until the object store holds `expected` payloads.
    pub async fn wait_for_stored_objects(&self, expected: usize) -> usize {
        let mut count = self.stored_objects().await;
        for _ in 0..50 {
            if count == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            count = self.stored_objects().await;
        }
        count
    }

    /// The citizen a document went to.
    pub async fn citizen_of(&self, document_id: &str) -> String {
        let id = document_id.to_owned();
        self.state
            .db
            .read(move |conn| -> Result<String, eguichet::db::DbError> {
                Ok(documents::table
                    .find(id)
                    .select(documents::citizen_id)
                    .first(conn)?)
            })
            .await
            .unwrap()
    }
}

/// A delivery being built: `app.deliver(&token).file(bytes).send()`.
pub struct Delivery<'a> {
    app: &'a TestApp,
    token: String,
    metadata: Option<String>,
    file: Option<Vec<u8>>,
    idempotency_key: Option<String>,
}

impl Delivery<'_> {
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata.to_string());
        self
    }

    pub fn raw_metadata(mut self, text: &str) -> Self {
        self.metadata = Some(text.to_owned());
        self
    }

    pub fn without_metadata(mut self) -> Self {
        self.metadata = None;
        self
    }

    pub fn file(mut self, bytes: Vec<u8>) -> Self {
        self.file = Some(bytes);
        self
    }

    pub fn without_file(mut self) -> Self {
        self.file = None;
        self
    }

    pub fn idempotency_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }

    pub fn form(&self) -> Form {
        let mut form = Form::new();
        if let Some(metadata) = &self.metadata {
            form = form.part(
                "metadata",
                Part::text(metadata.clone())
                    .mime_str("application/json")
                    .unwrap(),
            );
        }
        if let Some(file) = &self.file {
            form = form.part(
                "file",
                Part::bytes(file.clone())
                    .file_name("avis-taxe-fonciere.pdf")
                    .mime_str("application/pdf")
                    .unwrap(),
            );
        }
        form
    }

    pub async fn send(self) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(format!("{}/api/v1/documents", self.app.address))
            .bearer_auth(&self.token)
            .multipart(self.form());
        if let Some(key) = &self.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }
}

/// Asserts an error answer and returns its code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].is_string(), "{body}");
    body["error"].as_str().unwrap().to_owned()
}
