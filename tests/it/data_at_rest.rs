//! What the portal leaves on the disk and the wire: no trace of a withdrawn document in
//! the database file, files and directories only the service's user can read, notices
//! that never leave the host in plain text, and cookies a neighbouring host cannot set.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::spawn_app;
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::config::Config;
use eguichet::db::DbError;
use eguichet::db::schema::documents;
use eguichet::state::AppState;
use serde_json::{Value, json};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// How many 24-byte pieces of `secret` appear in `haystack`. The first two are
/// skipped: every age file begins with the same `age-encryption.org/v1` line.
fn traces_of(secret: &[u8], haystack: &[u8]) -> usize {
    const WINDOW: usize = 24;
    secret
        .chunks(WINDOW)
        .skip(2)
        .filter(|chunk| chunk.len() == WINDOW)
        .filter(|chunk| haystack.windows(WINDOW).any(|window| window == *chunk))
        .count()
}

#[tokio::test]
async fn a_withdrawn_documents_header_and_metadata_leave_the_database_file() {
    let app = spawn_app().await;
    if app.is_postgres() {
        // PostgreSQL keeps dead rows until its own VACUUM; this is about the embedded file.
        return;
    }
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let delivered = app.deliver(&token).send().await;
    assert_eq!(delivered.status(), 201);
    let id = delivered.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lookup = id.clone();
    let (header, sealed): (Vec<u8>, Vec<u8>) = app
        .state
        .db
        .read(move |conn| {
            Ok::<_, DbError>(
                documents::table
                    .find(&lookup)
                    .select((documents::age_header, documents::sealed_metadata))
                    .first(conn)?,
            )
        })
        .await
        .unwrap();
    assert!(header.len() >= 48 && sealed.len() >= 48);

    let withdrawn = app
        .client
        .post(format!("{}/api/v1/documents/{id}/withdraw", app.address))
        .bearer_auth(&token)
        .json(&json!({ "reason": "Envoyé par erreur" }))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);

    let dir = app.data_dir.path();
    let mut on_disk = std::fs::read(dir.join("eguichet.db")).unwrap();
    on_disk.extend(std::fs::read(dir.join("eguichet.db-wal")).unwrap_or_default());
    assert_eq!(
        traces_of(&header, &on_disk),
        0,
        "the age header is still on disk"
    );
    assert_eq!(
        traces_of(&sealed, &on_disk),
        0,
        "the sealed metadata is still on disk"
    );
}

#[tokio::test]
async fn data_files_and_directories_are_the_services_alone() {
    let root = tempfile::tempdir().unwrap();
    // A data directory the portal creates itself, two levels deep.
    let data_dir = root.path().join("srv/eguichet");
    let config = Config::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        data_dir.display()
    ))
    .unwrap();
    let application = eguichet::web::Application::build(config).await.unwrap();
    let state = application.state().clone();
    tokio::spawn(application.run_until_stopped());
    // A staged bulk upload and a demonstration notice create their own files too.
    let staged =
        eguichet::bulk::staging::StagedFiles::create(&state.config.data_dir, 1024, 1024).unwrap();

    for dir in [
        root.path().join("srv"),
        data_dir.clone(),
        data_dir.join("blobs"),
        data_dir.join("bulk-staging"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in ["eguichet.db", "master.key"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    drop(staged);
}

fn production_toml(dir: &Path, extra: &str) -> String {
    format!(
        "mode = \"production\"\npublic_url = \"https://guichet.mairie.example\"\n\
         listen = \"127.0.0.1:0\"\ndata_dir = \"{dir}\"\n\
         [database]\nurl = \"sqlite://{dir}/eguichet.db\"\n\
         [keys]\nmaster_key_file = \"{dir}/master.key\"\n\
         [notify.email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"guichet@mairie.example\"\n{extra}",
        dir = dir.display(),
    )
}

fn production_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    eguichet::crypto::MasterKey::generate()
        .write_new_file(&dir.path().join("master.key"))
        .unwrap();
    dir
}

#[tokio::test]
async fn production_refuses_a_data_directory_open_to_others() {
    let dir = production_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = Config::from_toml(&production_toml(dir.path(), "")).unwrap();
    let refused = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap();
    let error = refused.err().unwrap().to_string();
    assert!(error.contains("chmod 700"), "{error}");

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = Config::from_toml(&production_toml(dir.path(), "")).unwrap();
    tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn production_cookies_are_host_only() {
    let dir = production_dir();
    let config = Config::from_toml(&production_toml(dir.path(), "")).unwrap();
    let application = eguichet::web::Application::build(config).await.unwrap();
    let base = format!("http://{}", application.address());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    // The language chosen and the agent login form's cookie.
    for path in ["/?lang=en", "/agent/login"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        assert!(!cookies.is_empty(), "{path}: {:?}", response.headers());
        for cookie in cookies {
            assert!(cookie.starts_with("__Host-eg_"), "{cookie}");
            assert!(cookie.contains("; Secure"), "{cookie}");
            assert!(
                cookie.contains("; Path=/;") || cookie.ends_with("; Path=/"),
                "{cookie}"
            );
            assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
        }
    }

    // A cookie without the prefix could have come from a neighbouring host: ignored.
    let lang_of = |cookie: &'static str| {
        let request = client.get(format!("{base}/")).header("cookie", cookie);
        async move {
            let html = request.send().await.unwrap().text().await.unwrap();
            html.contains("<html lang=\"en\"")
        }
    };
    assert!(lang_of("__Host-eg_lang=en").await);
    assert!(!lang_of("eg_lang=en").await);
}

#[tokio::test]
async fn the_language_cookie_is_secure_wherever_session_cookies_are() {
    let lang_cookie = |app: &crate::common::TestApp| {
        let request = app.client.get(format!("{}/?lang=en", app.address));
        async move {
            let response = request.send().await.unwrap();
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    // A demonstration reached on this machine over plain HTTP: no `Secure`, or the
    // browser would drop it.
    let local = spawn_app().await;
    assert!(!lang_cookie(&local).await.contains("Secure"));
    // Reached under any other name, every cookie is `Secure`, the language's too.
    let remote = crate::common::spawn_app_with(crate::common::Options {
        extra_toml: "public_url = \"http://guichet.mairie.example\"\n".to_owned(),
        ..Default::default()
    })
    .await;
    let cookie = lang_cookie(&remote).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
}
