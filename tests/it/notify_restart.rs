//! A worker killed (SIGKILL) after claiming a notice and before the relay took it: the
//! next start claims it again once the lease has run out, and exactly one email leaves.
//! Real processes (the `eguichet` binary) on a shared SQLite file or PostgreSQL database.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::PostgresDatabase;
use crate::common::outbound::SmtpServer;
use diesel::prelude::*;
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::config::Config;
use eguichet::db::schema::notices;
use eguichet::state::AppState;

/// Kills the server when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(config: &Path, log: &Path, env: &[(&str, String)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eguichet"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EGUICHET_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Server(child)
}

async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (state, attempts) of the only notice.
async fn the_notice(state: &AppState) -> Option<(String, i32)> {
    state
        .db
        .read(|conn| -> Result<_, eguichet::db::DbError> {
            Ok(notices::table
                .select((notices::state, notices::attempts))
                .first::<(String, i32)>(conn)
                .optional()?)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_between_claim_and_send_sends_the_notice_once_after_restart() {
    let stalling = SmtpServer::start_stalling().await;
    let working = SmtpServer::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let postgres = std::env::var("TEST_DATABASE_URL")
        .ok()
        .map(|url| PostgresDatabase::create(&url));
    let database_url = match &postgres {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}/eguichet.db", data_dir.path().display()),
    };
    let port = free_port();
    let config_path = data_dir.path().join("eguichet.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             [database]\nurl = \"{database_url}\"\npool_size = 4\n\
             [notify]\ncoalesce_seconds = 0\npoll_interval_ms = 50\n\
             send_timeout_seconds = 120\nlease_seconds = 300\n\
             [notify.email]\nsmtp_url = \"{}\"\nfrom = \"ne-pas-repondre@mairie.example\"\n",
            data_dir.path().display(),
            stalling.url()
        ),
    )
    .unwrap();

    // The test opens the same database first: migrations, the generated master key
    // (in the data dir, where the server finds it) and an agent with a token.
    let config = Config::load(Some(&config_path)).unwrap();
    let state = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap()
        .unwrap();
    let tenant = state.default_tenant.clone();
    let token = state
        .db
        .write(move |conn| -> anyhow::Result<String> {
            let email = AgentEmail::parse("agent@mairie.example")?;
            let agent =
                agents::create_agent(conn, &tenant, &email, Role::Agent, None, Actor::Operator)?;
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
        .unwrap();

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let first = start_server(&config_path, &data_dir.path().join("first.log"), &[]);
    wait_until_healthy(&client, &base).await;
    let metadata = serde_json::json!({
        "recipient": crate::common::marie(), "title": "Avis de taxe foncière 2026",
        "category": "impots", "contact": {"email": "marie.dupont@example.org"}
    });
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7; 1000])
                .file_name("avis.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let response = client
        .post(format!("{base}/api/v1/documents"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The worker claimed the notice and is stuck talking to the silent relay.
    for _ in 0..600 {
        if stalling.connections() > 0
            && the_notice(&state)
                .await
                .is_some_and(|(s, _)| s == "sending")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(the_notice(&state).await, Some(("sending".to_owned(), 1)));
    assert!(stalling.connections() > 0);
    drop(first); // SIGKILL

    let _second = start_server(
        &config_path,
        &data_dir.path().join("second.log"),
        &[
            ("EGUICHET_NOTIFY__EMAIL__SMTP_URL", working.url()),
            ("EGUICHET_NOTIFY__LEASE_SECONDS", "2".to_owned()),
            ("EGUICHET_NOTIFY__SEND_TIMEOUT_SECONDS", "1".to_owned()),
        ],
    );
    wait_until_healthy(&client, &base).await;
    for _ in 0..600 {
        if the_notice(&state).await.is_some_and(|(s, _)| s == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(the_notice(&state).await, Some(("sent".to_owned(), 2)));
    let mails = working.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["<marie.dupont@example.org>".to_owned()]);
    assert!(stalling.received().is_empty());
}
