//! Bulk delivery, told as a commune's IT team lives it: a CSV manifest and a folder
//! (or ZIP) of files, sent by the `eguichet deliver` client or as a server-side job.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::common::{TestApp, document_bytes, spawn_app};
use eguichet::agents::Role;
use eguichet::bulk::client::{self, ClientOptions, DeliveryReport};
use serde_json::Value;

const HEADER: &str = "file,title,category,family_name,given_names,birthdate,birthplace,email,phone";

/// A folder with `count` files and a manifest line for each, all to distinct citizens.
fn folder_with(count: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = format!("{HEADER}\n");
    for n in 0..count {
        std::fs::create_dir_all(dir.path().join("avis")).unwrap();
        std::fs::write(
            dir.path().join(format!("avis/{n}.pdf")),
            document_bytes(2_000 + n, n as u64),
        )
        .unwrap();
        manifest.push_str(&format!(
            "avis/{n}.pdf,Avis {n},impots,Martin{n},Paul,1970-01-{:02},75056,,\n",
            n % 28 + 1
        ));
    }
    (dir, manifest)
}

fn write_manifest(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("manifest.csv");
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn run_client(app: &TestApp, token: &str, dir: &Path, manifest: &[u8]) -> DeliveryReport {
    let path = write_manifest(dir, manifest);
    let manifest = client::load_manifest(&path, dir).unwrap();
    client::deliver_manifest(
        &options(app, token),
        manifest,
        dir,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap()
}

fn options(app: &TestApp, token: &str) -> ClientOptions {
    ClientOptions {
        server: app.address.parse().unwrap(),
        token: token.to_owned(),
        concurrency: 4,
        encrypt_locally: true,
    }
}

#[tokio::test]
async fn fifty_lines_are_delivered_and_a_rerun_sends_nothing_twice() {
    let app = spawn_app().await;
    let token = app.agent_token("mairie@example.org", Role::Agent).await;
    let (dir, manifest) = folder_with(50);

    let first = run_client(&app, &token, dir.path(), manifest.as_bytes()).await;
    assert!(first.is_complete(), "{first}");
    assert_eq!(first.delivered.len(), 50);
    assert_eq!(app.document_rows().await, 50);

    let second = run_client(&app, &token, dir.path(), manifest.as_bytes()).await;
    assert_eq!(second.delivered.len(), 0, "{second}");
    assert_eq!(second.replayed.len(), 50);
    assert_eq!(app.document_rows().await, 50);
    // The same lines give the same documents.
    assert_eq!(first.delivered, second.replayed);
}

/// Every kind of bad line, in a Latin-1 `;` manifest and a UTF-8-with-BOM `,` one.
#[tokio::test]
async fn bad_lines_are_refused_by_number_and_the_others_delivered() {
    let app = spawn_app().await;
    app.department("finances").await;
    let token = app
        .agent_token_for("mairie@example.org", Role::Agent, &["finances"])
        .await;
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a.pdf", "b.pdf", "c.pdf", "d.pdf", "e.pdf", "f.pdf", "g.pdf", "h.pdf", "i.pdf",
    ] {
        std::fs::write(dir.path().join(name), document_bytes(1_000, 7)).unwrap();
    }
    let text = "fichier-ignoré;file;title;category;department;nrn;family_name;given_names;birthdate;birthplace;email;phone\n\
        x;a.pdf;Relevé d'été;impots;finances;;Lefèvre;Zoé;30/07/1980;75056;zoe@example.org;06 12 34 56 78\n\
        x;b.pdf;Avis;impots;;;Lefèvre;Zoé;1980-31-12;75056;;\n\
        x;c.pdf;Avis;impots;;;Lefèvre;Zoé;1980-07-30;75056;;12345\n\
        x;d.pdf;Avis;impots;;;Lefèvre;Zoé;1980-07-30;75056;pas-une-adresse;\n\
        x;e.pdf;Avis;impots;;;;;;;;\n\
        x;f.pdf;Avis;impots;;85073003328;Lefèvre;Zoé;1980-07-30;75056;;\n\
        x;a.pdf;Relevé d'été;impots;;;LEFEVRE;zoe;1980-07-30;75056;;\n\
        x;absent.pdf;Avis;impots;;;Lefèvre;Zoé;1980-07-30;75056;;\n\
        x;g.pdf;Avis;impots;urbanisme;;Lefèvre;Zoé;1980-07-30;75056;;\n\
        x;h.pdf;Avis;impots;;85.07.30-033.28;;;;;;\n";
    let expected_refused = [3, 4, 5, 6, 7, 8, 9, 10];

    let latin1 = encoding_rs::WINDOWS_1252.encode(text).0.into_owned();
    let report = run_client(&app, &token, dir.path(), &latin1).await;
    let lines: Vec<usize> = report.refused.iter().map(|error| error.line).collect();
    assert_eq!(lines, expected_refused, "{report}");
    assert_eq!(report.delivered.len(), 2, "{report}");
    let reason = |line: usize| {
        report
            .refused
            .iter()
            .find(|error| error.line == line)
            .unwrap()
            .reason
            .clone()
    };
    assert!(reason(3).starts_with("birthdate"), "{report}");
    assert!(reason(4).starts_with("phone"), "{report}");
    assert!(reason(5).starts_with("email"), "{report}");
    assert!(reason(6).starts_with("recipient"), "{report}");
    assert!(reason(7).starts_with("recipient"), "{report}");
    assert_eq!(reason(8), "duplicate of line 2");
    assert!(reason(9).starts_with("file"), "{report}");
    assert!(reason(10).contains("department"), "{report}");
    for error in &report.refused {
        for personal in ["Lef", "Zo", "1980", "12345", "pas-une-adresse", "85073"] {
            assert!(!error.reason.contains(personal), "{}", error.reason);
        }
    }

    // The same content as UTF-8 with a BOM and commas: nothing new is delivered.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text.replace(';', ",").as_bytes());
    let again = run_client(&app, &token, dir.path(), &bom).await;
    assert_eq!(again.replayed.len(), 2, "{again}");
    assert_eq!(again.delivered.len(), 0, "{again}");
    assert_eq!(app.document_rows().await, 2);
}

#[tokio::test]
async fn a_run_cut_short_then_rerun_delivers_each_document_once() {
    let app = spawn_app().await;
    let token = app.agent_token("mairie@example.org", Role::Agent).await;
    let (dir, manifest) = folder_with(40);
    let path = write_manifest(dir.path(), manifest.as_bytes());

    let parsed = client::load_manifest(&path, dir.path()).unwrap();
    let (options, files) = (options(&app, &token), dir.path().to_owned());
    let run = tokio::spawn(async move {
        client::deliver_manifest(&options, parsed, &files, &indicatif::ProgressBar::hidden()).await
    });
    while app.document_rows().await < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.abort();
    let _ = run.await;
    let partial = app.document_rows().await;
    assert!(partial < 40, "the run should have been cut short");

    let report = run_client(&app, &token, dir.path(), manifest.as_bytes()).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.delivered.len() + report.replayed.len(), 40);
    assert!(report.replayed.len() >= 10, "{report}");
    assert_eq!(app.document_rows().await, 40);
    let mut ids: Vec<_> = report
        .delivered
        .iter()
        .chain(&report.replayed)
        .map(|(_, id)| id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
}

fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

async fn start_job(
    app: &TestApp,
    token: &str,
    form: reqwest::multipart::Form,
) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/bulk-jobs", app.address))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

fn manifest_part(text: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("envoi.csv")
}

/// Polls the job until it is no longer running.
async fn finished_job(app: &TestApp, token: &str, id: &str) -> Value {
    loop {
        let report: Value = app
            .client
            .get(format!("{}/api/v1/bulk-jobs/{id}", app.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if report["state"] != "running" && report["state"] != "staging" {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn staged_leftovers(app: &TestApp) -> usize {
    let root = app.data_dir.path().join("bulk-staging");
    std::fs::read_dir(root)
        .map(|dirs| {
            dirs.flatten()
                .map(|dir| {
                    std::fs::read_dir(dir.path())
                        .map(|f| f.count())
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_bulk_job_with_a_zip_runs_to_done_and_reports_each_line() {
    let app = spawn_app().await;
    let token = app.agent_token("mairie@example.org", Role::Agent).await;
    let (_, manifest) = folder_with(12);
    let manifest = format!("{manifest}absent.pdf,Avis,impots,Durand,Léa,1990-01-01,,,\n");
    let entries: Vec<(String, Vec<u8>)> = (0..12)
        .map(|n| (format!("avis/{n}.pdf"), document_bytes(2_000 + n, n as u64)))
        .collect();
    let mut borrowed: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.clone()))
        .collect();
    borrowed.push(("avis/", Vec::new()));
    let form = reqwest::multipart::Form::new()
        .part("manifest", manifest_part(&manifest))
        .part(
            "archive",
            reqwest::multipart::Part::bytes(zip_of(&borrowed)).file_name("envoi.zip"),
        );
    let response = start_job(&app, &token, form).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let report = finished_job(&app, &token, &id).await;
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["total"], 13);
    assert_eq!(report["delivered"], 12);
    assert_eq!(report["refused"], 1);
    assert_eq!(report["pending"], 0);
    let lines = report["lines"].as_array().unwrap();
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[0]["outcome"], "delivered");
    assert!(lines[0]["document_id"].is_string());
    assert_eq!(lines[12]["line"], 14);
    assert_eq!(lines[12]["outcome"], "refused");
    assert!(lines[12]["reason"].as_str().unwrap().starts_with("file"));
    assert_eq!(app.document_rows().await, 12);
    assert_eq!(staged_leftovers(&app), 0);

    // Another agent of the tenant does not see it; the CLI rerun replays it all.
    let other = app.agent_token("autre@example.org", Role::Agent).await;
    let hidden = app
        .client
        .get(format!("{}/api/v1/bulk-jobs/{id}", app.address))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    let (dir, manifest) = folder_with(12);
    let rerun = run_client(&app, &token, dir.path(), manifest.as_bytes()).await;
    assert_eq!(rerun.replayed.len(), 12, "{rerun}");
    assert_eq!(app.document_rows().await, 12);
}

#[tokio::test]
async fn a_bulk_job_with_separate_files_reports_missing_ones() {
    let app = spawn_app().await;
    let token = app.agent_token("mairie@example.org", Role::Agent).await;
    let manifest = "file;title;category;nrn\n\
                    un.pdf;Avis 1;impots;85.07.30-033.28\n\
                    deux.pdf;Avis 2;impots;85073003328\n\
                    trois.pdf;Avis 3;impots;85073003328\n";
    let mut form = reqwest::multipart::Form::new().part("manifest", manifest_part(manifest));
    for name in ["un.pdf", "deux.pdf"] {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(document_bytes(3_000, 3)).file_name(name),
        );
    }
    let response = start_job(&app, &token, form).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = finished_job(&app, &token, &id).await;
    assert_eq!(report["state"], "done", "{report}");
    let outcomes: Vec<&str> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "delivered", "refused"], "{report}");
    assert_eq!(app.document_rows().await, 2);
}

#[tokio::test]
async fn unsafe_archives_are_refused_whole() {
    let app = spawn_app().await;
    let token = app.agent_token("mairie@example.org", Role::Agent).await;
    let manifest = "file,title,category,nrn\nun.pdf,Avis,impots,85073003328\n";
    let bomb = vec![0u8; 8 * 1024 * 1024];
    let deflated = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .start_file(
                "un.pdf",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
        writer.write_all(&bomb).unwrap();
        writer.finish().unwrap().into_inner()
    };
    for (archive, code) in [
        (zip_of(&[("../../un.pdf", b"x".to_vec())]), "unsafe_upload"),
        (zip_of(&[("/etc/un.pdf", b"x".to_vec())]), "unsafe_upload"),
        (deflated, "unsafe_upload"),
        (b"not a zip at all".to_vec(), "unsafe_upload"),
    ] {
        let form = reqwest::multipart::Form::new()
            .part("manifest", manifest_part(manifest))
            .part("archive", reqwest::multipart::Part::bytes(archive));
        let response = start_job(&app, &token, form).await;
        assert_eq!(crate::common::error_code(response, 400).await, code);
    }
    // A file part whose name climbs out of the folder.
    let form = reqwest::multipart::Form::new()
        .part("manifest", manifest_part(manifest))
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("../un.pdf"),
        );
    let response = start_job(&app, &token, form).await;
    assert_eq!(
        crate::common::error_code(response, 400).await,
        "unsafe_upload"
    );
    // A manifest without the required columns.
    let form = reqwest::multipart::Form::new().part("manifest", manifest_part("file,nrn\n"));
    let response = start_job(&app, &token, form).await;
    assert_eq!(
        crate::common::error_code(response, 422).await,
        "invalid_manifest"
    );
    assert_eq!(app.document_rows().await, 0);
    assert_eq!(staged_leftovers(&app), 0);
}

#[tokio::test]
async fn the_same_manifest_run_by_two_agents_at_once_delivers_each_line_once() {
    let app = spawn_app().await;
    let browser_agent = app.agent_token("mairie@example.org", Role::Agent).await;
    let cli_agent = app
        .agent_token("informatique@example.org", Role::Agent)
        .await;
    let cli_twin = app.agent_token("stagiaire@example.org", Role::Agent).await;
    let (dir, manifest) = folder_with(12);
    let entries: Vec<(String, Vec<u8>)> = (0..12)
        .map(|n| (format!("avis/{n}.pdf"), document_bytes(2_000 + n, n as u64)))
        .collect();
    let borrowed: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.clone()))
        .collect();
    let form = reqwest::multipart::Form::new()
        .part("manifest", manifest_part(&manifest))
        .part(
            "archive",
            reqwest::multipart::Part::bytes(zip_of(&borrowed)).file_name("envoi.zip"),
        );

    // The browser job, and two command-line runs by other agents, all at once.
    let job = async {
        let response = start_job(&app, &browser_agent, form).await;
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        finished_job(&app, &browser_agent, &id).await
    };
    let (job, cli, twin) = tokio::join!(
        job,
        run_client(&app, &cli_agent, dir.path(), manifest.as_bytes()),
        run_client(&app, &cli_twin, dir.path(), manifest.as_bytes()),
    );

    assert_eq!(app.document_rows().await, 12, "{cli}\n{twin}\n{job}");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["refused"], 0, "{job}");
    assert!(cli.is_complete() && twin.is_complete(), "{cli}\n{twin}");
    let documents_of = |report: &DeliveryReport| {
        let mut ids: Vec<String> = report
            .delivered
            .iter()
            .chain(&report.replayed)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        ids
    };
    let from_cli = documents_of(&cli);
    assert_eq!(from_cli.len(), 12);
    assert_eq!(from_cli, documents_of(&twin));
    let mut from_job: Vec<String> = job["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["document_id"].as_str().unwrap().to_owned())
        .collect();
    from_job.sort();
    assert_eq!(from_cli, from_job);
}

/// Runs one statement of the test's own on the app's database.
async fn execute(app: &TestApp, sql: String) -> usize {
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::RunQueryDsl::execute(diesel::sql_query(sql), conn)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn twins_delivered_before_keys_became_the_communes_keep_working() {
    use diesel::prelude::*;
    use eguichet::db::schema::{agents, documents};

    let app = spawn_app().await;
    let first_agent = app.agent_token("mairie@example.org", Role::Agent).await;
    let second_agent = app
        .agent_token("informatique@example.org", Role::Agent)
        .await;
    let (dir, manifest) = folder_with(3);
    let first = run_client(&app, &first_agent, dir.path(), manifest.as_bytes()).await;
    assert_eq!(first.delivered.len(), 3, "{first}");

    // Back to the keys of each agent, when the second agent's run delivered a twin.
    execute(&app, "DROP INDEX documents_tenant_idempotency".to_owned()).await;
    execute(
        &app,
        "ALTER TABLE documents DROP COLUMN idempotency_scope".to_owned(),
    )
    .await;
    let reverted = execute(
        &app,
        "DELETE FROM __diesel_schema_migrations WHERE version = '20261205000440'".to_owned(),
    )
    .await;
    assert_eq!(reverted, 1);
    let second_id: String = app
        .state
        .db
        .read(|conn| -> Result<String, eguichet::db::DbError> {
            Ok(agents::table
                .filter(agents::email.eq("informatique@example.org"))
                .select(agents::id)
                .first(conn)?)
        })
        .await
        .unwrap();
    let (_, original) = &first.delivered[0];
    let twin = execute(
        &app,
        format!(
            "INSERT INTO documents (id, tenant_id, department_id, agent_id, citizen_id, \
             category, content_type, sealed_metadata, age_header, blob_key, ciphertext_size, \
             ciphertext_sha256, plaintext_size, idempotency_key, request_fingerprint, created_at) \
             SELECT 'twin', tenant_id, department_id, '{second_id}', citizen_id, category, \
             content_type, sealed_metadata, age_header, blob_key || '-twin', ciphertext_size, \
             ciphertext_sha256, plaintext_size, idempotency_key, request_fingerprint, created_at \
             FROM documents WHERE id = '{original}'"
        ),
    )
    .await;
    assert_eq!(twin, 1);

    let applied = app
        .state
        .db
        .write(eguichet::db::run_migrations)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    let scopes: Vec<(String, Option<String>)> = app
        .state
        .db
        .read(|conn| -> Result<_, eguichet::db::DbError> {
            Ok(documents::table
                .select((documents::id, documents::idempotency_scope))
                .order(documents::id)
                .load(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(scopes.len(), 4);
    for (id, scope) in &scopes {
        let expected = if id == "twin" { "agent" } else { "tenant" };
        assert_eq!(scope.as_deref(), Some(expected), "{id}");
    }

    // Either agent running it again finds the first run's documents.
    for token in [&first_agent, &second_agent] {
        let rerun = run_client(&app, token, dir.path(), manifest.as_bytes()).await;
        assert_eq!(rerun.replayed, first.delivered, "{rerun}");
    }
    assert_eq!(app.document_rows().await, 4);
}
