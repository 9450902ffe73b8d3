//! What the IT team does from the shell and what the data layer promises: migrations
//! that agree across engines, the command-line tools, key rotation, the audit chain.

use std::collections::BTreeMap;
use std::process::Command;

use crate::common::{metadata, pivot, spawn_app};
use diesel::prelude::*;
use diesel::sql_types::Text;
use eguichet::agents::Role;
use eguichet::audit::{self, ChainCheck};
use eguichet::config::Config;
use eguichet::db::{self, AnyConnection, Database, schema::audit_events};
use eguichet::state::AppState;
use eguichet::vault::{self, DocumentId};
use secrecy::SecretString;
use serde_json::Value;

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// Tables and their column names as the engine reports them.
fn columns(conn: &mut AnyConnection) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<ColumnRow> = match conn {
        AnyConnection::Sqlite(conn) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name
             FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
               AND m.name != '__diesel_schema_migrations'
             ORDER BY m.name, p.name",
        )
        .load(conn)
        .unwrap(),
        AnyConnection::Postgresql(conn) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name != '__diesel_schema_migrations'
             ORDER BY table_name, column_name",
        )
        .load(conn)
        .unwrap(),
    };
    let mut tables = BTreeMap::<String, Vec<String>>::new();
    for row in rows {
        tables
            .entry(row.table_name)
            .or_default()
            .push(row.column_name);
    }
    tables
}

fn sqlite_database(dir: &std::path::Path) -> Database {
    let url = SecretString::from(format!("sqlite://{}/t.db", dir.display()));
    Database::connect(&url, 1).unwrap()
}

#[test]
fn migrations_round_trip_and_both_engines_agree() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_database(dir.path());
    let mut conn = sqlite.get_blocking().unwrap();
    db::run_migrations(&mut conn).unwrap();
    let sqlite_columns = columns(&mut conn);
    assert!(sqlite_columns.contains_key("documents"));
    db::revert_all_migrations(&mut conn).unwrap();
    assert!(columns(&mut conn).is_empty());
    db::run_migrations(&mut conn).unwrap();
    assert_eq!(columns(&mut conn), sqlite_columns);

    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("PostgreSQL half skipped: set TEST_DATABASE_URL (CI does)");
        return;
    };
    let name = format!("eguichet_migrations_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    {
        let postgres = Database::connect(&SecretString::from(url), 1).unwrap();
        let mut conn = postgres.get_blocking().unwrap();
        db::run_migrations(&mut conn).unwrap();
        assert_eq!(
            columns(&mut conn),
            sqlite_columns,
            "the two migration trees differ"
        );
        db::revert_all_migrations(&mut conn).unwrap();
        assert!(columns(&mut conn).is_empty());
        db::run_migrations(&mut conn).unwrap();
    }
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .unwrap();
}

fn eguichet(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eguichet"))
        .args(args)
        .env("EGUICHET_DATA_DIR", data_dir)
        .env_remove("EGUICHET_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn command_line_creates_agents_and_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let created = eguichet(
        dir.path(),
        &[
            "agent",
            "create",
            "--email",
            "Agent@Mairie.example",
            "--role",
            "agent",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let token = eguichet(
        dir.path(),
        &["agent", "token", "--email", "agent@mairie.example"],
    );
    assert!(token.status.success());
    let stdout = String::from_utf8(token.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].starts_with("egt_") && lines[0].len() == 68);
    // The token is stored hashed only.
    let db_bytes = std::fs::read(dir.path().join("eguichet.db")).unwrap();
    let wal = std::fs::read(dir.path().join("eguichet.db-wal")).unwrap_or_default();
    for bytes in [db_bytes, wal] {
        assert!(!bytes.windows(64).any(|w| w == &lines[0].as_bytes()[4..]));
    }

    let duplicate = eguichet(
        dir.path(),
        &[
            "agent",
            "create",
            "--email",
            "agent@mairie.example",
            "--role",
            "admin",
        ],
    );
    assert!(!duplicate.status.success());
    let unknown = eguichet(
        dir.path(),
        &["agent", "token", "--email", "nobody@mairie.example"],
    );
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty());
    let bad_role = eguichet(
        dir.path(),
        &[
            "agent",
            "create",
            "--email",
            "a@b.example",
            "--role",
            "mayor",
        ],
    );
    assert!(!bad_role.status.success());

    let verify = eguichet(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));
}

/// Waits until the terminal of the process whose command line names `marker` no longer
/// echoes (or, if it never stops, for long enough that typing will show the bug).
fn wait_until_echo_is_off(marker: &str) {
    use rustix::termios::{LocalModes, tcgetattr};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let terminal = loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|process| {
                let cmdline = std::fs::read(process.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains(marker)
                    .then_some(())?;
                let input = std::fs::read_link(process.path().join("fd/0")).ok()?;
                input.starts_with("/dev/pts").then_some(input)
            });
        if let Some(path) = found {
            break std::fs::File::open(path).unwrap();
        }
        std::thread::yield_now();
    };
    while tcgetattr(&terminal)
        .unwrap()
        .local_modes
        .contains(LocalModes::ECHO)
        && std::time::Instant::now() < deadline
    {
        std::thread::yield_now();
    }
}

/// `agent password` at a terminal (given by util-linux `script`, as a person typing
/// would see it): the prompt shows, the password typed after it does not.
#[test]
fn a_password_typed_at_a_terminal_is_not_echoed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let email = format!("tty-{}@mairie.example", uuid::Uuid::new_v4().simple());
    let created = eguichet(
        dir.path(),
        &["agent", "create", "--email", &email, "--role", "agent"],
    );
    assert!(created.status.success());
    let command = format!(
        "{} agent password --email {email}",
        env!("CARGO_BIN_EXE_eguichet")
    );
    let mut terminal = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("EGUICHET_DATA_DIR", dir.path())
        .env_remove("EGUICHET_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut screen = terminal.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&shown).contains("new password") {
        let read = screen.read(&mut chunk).unwrap();
        assert!(read > 0, "no prompt: {}", String::from_utf8_lossy(&shown));
        shown.extend_from_slice(&chunk[..read]);
    }
    // A person types after the prompt; a test could type before the echo is off.
    wait_until_echo_is_off(&email);
    let mut keyboard = terminal.stdin.take().unwrap();
    keyboard.write_all(b"une phrase bien secrete\r").unwrap();
    screen.read_to_end(&mut shown).unwrap();
    assert!(terminal.wait().unwrap().success());
    let shown = String::from_utf8_lossy(&shown);
    assert!(shown.contains("password set"), "{shown}");
    assert!(
        !shown.contains("secrete"),
        "the password was echoed: {shown}"
    );
}

#[test]
fn mistyped_database_url_is_refused_without_creating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_eguichet"))
        .arg("migrate")
        .env("EGUICHET_DATA_DIR", dir.path())
        .env(
            "EGUICHET_DATABASE__URL",
            "postgress://user:secret@localhost/db",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sqlite://") && !stderr.contains("secret"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn unknown_configuration_keys_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eguichet.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nstorrage = {}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_eguichet"))
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("storrage"));
}

#[tokio::test]
async fn master_key_rotation_rewraps_without_reencrypting() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let plaintext = crate::common::document_bytes(70_000, 9);
    let response = app
        .deliver(&token)
        .metadata(metadata(pivot("Martin"), "Avis"))
        .file(plaintext.clone())
        .send()
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let citizen = app.citizen_of(&id).await;
    let objects_before = app.stored_objects().await;

    let config = (*app.state.config).clone();
    let db = app.state.db.clone();
    let report =
        tokio::task::spawn_blocking(move || eguichet::keys::rotate_master_key(&config, &db, None))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(report.citizens, 1);
    assert!(report.previous_key_file.unwrap().exists());
    assert_eq!(app.stored_objects().await, objects_before);

    // A new instance on the rotated key reads the old document; the old key is refused.
    let config = (*app.state.config).clone();
    let reopened = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap()
        .unwrap();
    let opened = vault::open_document(&reopened, &citizen, &DocumentId(id))
        .await
        .unwrap();
    assert_eq!(vault::read_to_vec(opened.content).await.unwrap(), plaintext);

    let mut with_old_key = (*app.state.config).clone();
    with_old_key.keys.master_key_file = Some(
        std::fs::read_dir(app.data_dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.to_string_lossy().ends_with(".old"))
            .unwrap(),
    );
    let refused = tokio::task::spawn_blocking(move || AppState::open(with_old_key))
        .await
        .unwrap();
    let error = refused.err().unwrap().to_string();
    assert!(
        error.contains("not the one this database was written with"),
        "{error}"
    );
}

#[tokio::test]
async fn audit_chain_detects_edits_and_deletions() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    for _ in 0..3 {
        assert_eq!(app.deliver(&token).send().await.status(), 201);
    }
    let verify = |app: &crate::common::TestApp| {
        let db = app.state.db.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let key = db.audit_chain_key().unwrap();
                audit::verify_chain(&mut db.get_blocking().unwrap(), &key, &[]).unwrap()
            })
            .await
            .unwrap()
        }
    };
    let ChainCheck::Intact { events } = verify(&app).await else {
        panic!("chain should be intact");
    };
    assert!(events >= 6, "{events}");

    // Edit one event's details: detected at that event.
    app.state
        .db
        .write(|conn| -> Result<usize, eguichet::db::DbError> {
            Ok(
                diesel::update(audit_events::table.filter(audit_events::seq.eq(3)))
                    .set(audit_events::details.eq("{}"))
                    .execute(conn)?,
            )
        })
        .await
        .unwrap();
    assert!(matches!(
        verify(&app).await,
        ChainCheck::Broken { seq: 3, .. }
    ));
}

#[test]
fn production_configuration_refuses_demo_defaults() {
    let error = Config::from_toml("mode = \"production\"\npublic_url = \"https://g.example\"\n[database]\nurl = \"sqlite://x.db\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("master_key"), "{error}");
}

#[test]
fn example_configuration_is_valid_and_complete() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eguichet.example.toml"
    ))
    .unwrap();
    Config::from_toml(&text).unwrap();
    // Every commented-out example (`# key = value`) parses too, once uncommented.
    let is_setting = |line: &str| {
        line.split_once(" = ")
            .is_some_and(|(key, _)| key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(setting) if is_setting(setting) || setting.starts_with('[') => setting,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let uncommented = uncommented.replace("master_key = \"AGE-SECRET-KEY-1...\"", "");
    let config = Config::from_toml(&uncommented).unwrap();
    assert_eq!(
        config.storage.s3.bucket.as_deref(),
        Some("eguichet-documents")
    );
    assert!(config.keys.master_key_file.is_some());
    assert_eq!(config.oidc.providers.len(), 2);
    assert_eq!(
        config.oidc.providers[1].audience,
        eguichet::config::Audience::Agent
    );
    assert_eq!(config.session.agent_idle_minutes, 30);
    assert!(config.notify.email.is_some() && config.notify.sms.is_some());
}

#[tokio::test]
async fn production_mode_is_strict_and_has_no_demonstration_provider() {
    let dir = tempfile::tempdir().unwrap();
    // Production refuses a data directory other users may enter.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let key = dir.path().join("master.key");
    eguichet::crypto::MasterKey::generate()
        .write_new_file(&key)
        .unwrap();
    let toml = format!(
        "mode = \"production\"\npublic_url = \"https://guichet.mairie.example\"\n\
         listen = \"127.0.0.1:0\"\ndata_dir = \"{dir}\"\n\
         [database]\nurl = \"sqlite://{dir}/eguichet.db\"\n\
         [keys]\nmaster_key_file = \"{key}\"\n\
         [notify.email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"guichet@mairie.example\"\n",
        dir = dir.path().display(),
        key = key.display()
    );
    let application = eguichet::web::Application::build(Config::from_toml(&toml).unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", application.address());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(
        health.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let demo = client
        .get(format!("{base}/demo-idp/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), 404);
    let outbox = client
        .get(format!("{base}/demo-outbox"))
        .send()
        .await
        .unwrap();
    assert_eq!(outbox.status(), 404);
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert!(!home.text().await.unwrap().contains("/login/demo"));
    assert_eq!(
        client
            .get(format!("{base}/login/demo"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
