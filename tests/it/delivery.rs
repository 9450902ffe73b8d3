//! The agent delivery API end to end: a document goes in over HTTP, rests encrypted,
//! and comes back only through the citizen's vault key. Bad input loses nothing.

use std::io::Write;
use std::time::Duration;

use crate::common::{
    Options, document_bytes, error_code, metadata, pivot, spawn_app, spawn_app_with,
};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::db::schema::documents;
use eguichet::storage::{BlobDigest, BlobKey};
use eguichet::vault::{self, DocumentId};
use futures::TryStreamExt;
use serde_json::{Value, json};

#[tokio::test]
async fn delivered_document_rests_encrypted_and_opens_for_its_citizen() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let plaintext = document_bytes(200_000, 7);
    let title = "Mise en demeure — aide sociale";

    let response = app
        .deliver(&token)
        .metadata(metadata(pivot("Dupont"), title))
        .file(plaintext.clone())
        .send()
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["state"], "stored");

    let status: Value = app.status(&token, &id).await.json().await.unwrap();
    assert_eq!(status["state"], "stored");
    assert_eq!(status["size"], 200_000);
    assert!(status.get("title").is_none(), "{status}");

    // The database row holds the header and sealed metadata, never the title or file name.
    let lookup = id.clone();
    let (header, sealed, key, size, sha256): (Vec<u8>, Vec<u8>, String, i64, String) = app
        .state
        .db
        .read(move |conn| -> Result<_, eguichet::db::DbError> {
            Ok(documents::table
                .find(lookup)
                .select((
                    documents::age_header,
                    documents::sealed_metadata,
                    documents::blob_key,
                    documents::ciphertext_size,
                    documents::ciphertext_sha256,
                ))
                .first(conn)?)
        })
        .await
        .unwrap();
    assert!(header.starts_with(b"age-encryption.org/v1\n"));
    for secret in [
        title.as_bytes(),
        b"avis-taxe-fonciere",
        b"DUPONT",
        b"Dupont",
    ] {
        assert!(!contains(&sealed, secret));
        assert!(!contains(&header, secret));
    }
    assert!(key.starts_with("documents/") && key.len() == "documents/".len() + 32);

    // The object store holds only the payload: no header, no plaintext.
    let stored = read_object(&app, &key, size, &sha256).await;
    assert!(!stored.starts_with(b"age-encryption.org"));
    assert!(!contains(&stored, &plaintext[1000..1064]));
    assert_eq!(stored.len() as u64, plaintext.len() as u64 + 16 * 4); // 4 STREAM chunks

    // Header and payload together, with the wrong key (even the master key): unreadable.
    let mut joined = header.clone();
    joined.extend_from_slice(&stored);
    let decryptor = age::Decryptor::new_buffered(&joined[..]).unwrap();
    let stranger = age::x25519::Identity::generate();
    assert!(
        decryptor
            .decrypt(std::iter::once(&stranger as &dyn age::Identity))
            .is_err()
    );
    let master = &app.state.keys.master;
    assert!(master.unwrap(&joined).is_err());

    // Through the citizen's vault key, it opens.
    let citizen = app.citizen_of(&id).await;
    let opened = vault::open_document(&app.state, &citizen, &DocumentId(id.clone()))
        .await
        .unwrap();
    assert_eq!(opened.metadata.title, title);
    assert_eq!(opened.metadata.file_name, "avis-taxe-fonciere.pdf");
    assert_eq!(opened.content_type, "application/pdf");
    assert_eq!(vault::read_to_vec(opened.content).await.unwrap(), plaintext);
    let status: Value = app.status(&token, &id).await.json().await.unwrap();
    assert_eq!(status["state"], "opened");

    // Another citizen cannot open it.
    let other = vault::open_document(
        &app.state,
        &uuid::Uuid::new_v4().to_string(),
        &DocumentId(id),
    )
    .await;
    assert!(matches!(other, Err(vault::DocumentError::NotFound)));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn read_object(app: &crate::common::TestApp, key: &str, size: i64, sha256: &str) -> Vec<u8> {
    let digest = BlobDigest {
        size: size as u64,
        sha256: sha256.to_owned(),
    };
    app.state
        .storage
        .read_verified(&BlobKey::from_stored(key.to_owned()), digest)
        .await
        .unwrap()
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn tampered_payload_is_detected_on_read() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let response = app.deliver(&token).send().await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Record a different digest than what is stored: reading must fail, not serve.
    let lookup = id.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(documents::table.find(lookup))
                .set(documents::ciphertext_sha256.eq("0".repeat(64)))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let citizen = app.citizen_of(&id).await;
    let result = match vault::open_document(&app.state, &citizen, &DocumentId(id)).await {
        Ok(opened) => vault::read_to_vec(opened.content).await.map(|_| ()),
        Err(error) => Err(std::io::Error::other(error.to_string())),
    };
    assert!(result.is_err());
}

#[tokio::test]
async fn same_person_named_twice_gets_one_vault() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let first = app
        .deliver(&token)
        .metadata(metadata(pivot("Lefèvre-D'Ornée"), "Facture cantine"))
        .send()
        .await;
    let spelled_differently = json!({"pivot": {"family_name": "LEFEVRE D ORNEE",
        "given_names": "marie-claire", "birthdate": "1980-07-30", "birthplace": "75056"}});
    let second = app
        .deliver(&token)
        .metadata(metadata(spelled_differently, "Facture cantine"))
        .send()
        .await;
    let first_id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_id = second.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.citizen_of(&first_id).await,
        app.citizen_of(&second_id).await
    );

    // By national register number, and then by citizen id.
    let by_nrn = app
        .deliver(&token)
        .metadata(metadata(json!({"nrn": "85.07.30-033.28"}), "Attestation"))
        .send()
        .await;
    assert_eq!(by_nrn.status(), 201);
    let citizen = app.citizen_of(&first_id).await;
    let by_id = app
        .deliver(&token)
        .metadata(metadata(json!({"citizen_id": citizen}), "Attestation"))
        .send()
        .await;
    let by_id = by_id.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.citizen_of(&by_id).await, citizen);
}

#[tokio::test]
async fn concurrent_deliveries_to_a_new_person_create_one_vault() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let requests = (0..8).map(|_| {
        app.deliver(&token)
            .metadata(metadata(pivot("Nouveau"), "Avis"))
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut citizens = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        citizens.insert(app.citizen_of(&id).await);
    }
    assert_eq!(citizens.len(), 1);
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let app = spawn_app().await;
    let agent = app.agent_token("agent@mairie.example", Role::Agent).await;
    let official = app.agent_token("elu@mairie.example", Role::Official).await;
    let distributor = app
        .agent_token("distrib@mairie.example", Role::Distributor)
        .await;

    let missing = app
        .client
        .post(format!("{}/api/v1/documents", app.address))
        .multipart(app.deliver(&agent).form())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(missing, 401).await, "unauthorized");
    let forged = format!("egt_{}", "0".repeat(64));
    assert_eq!(
        error_code(app.deliver(&forged).send().await, 401).await,
        "unauthorized"
    );
    assert_eq!(
        error_code(app.deliver("garbage").send().await, 401).await,
        "unauthorized"
    );
    assert_eq!(
        error_code(app.deliver(&official).send().await, 403).await,
        "forbidden"
    );
    assert_eq!(
        error_code(app.deliver(&distributor).send().await, 403).await,
        "forbidden"
    );

    // A document of one tenant is invisible to another tenant's agent.
    let id = app
        .deliver(&agent)
        .send()
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let elsewhere = app
        .agent_token_in(Some("autre-commune"), "agent@autre.example", Role::Agent)
        .await;
    assert_eq!(
        error_code(app.status(&elsewhere, &id).await, 404).await,
        "not_found"
    );
    assert_eq!(app.status(&agent, &id).await.status(), 200);
    assert_eq!(
        error_code(app.status(&agent, "not-a-uuid").await, 404).await,
        "not_found"
    );
    // Following a delivery takes the roles of the deliveries pages.
    for token in [&official, &distributor] {
        assert_eq!(
            error_code(app.status(token, &id).await, 403).await,
            "forbidden"
        );
    }
    assert_eq!(app.document_rows().await, 1);
}

#[tokio::test]
async fn bad_metadata_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    let token = app
        .agent_token_for("agent@mairie.example", Role::Agent, &["etat-civil"])
        .await;

    let cases: Vec<(crate::common::Delivery<'_>, u16, &str)> = vec![
        (
            app.deliver(&token).without_metadata(),
            400,
            "unexpected_part",
        ),
        (app.deliver(&token).without_file(), 400, "missing_file"),
        (
            app.deliver(&token).raw_metadata("{not json"),
            422,
            "invalid_metadata",
        ),
        (
            app.deliver(&token)
                .metadata(json!({"recipient": pivot("X"), "category": "impots"})),
            422,
            "invalid_metadata",
        ),
        (
            app.deliver(&token)
                .metadata(metadata(json!({"email": "a@b.example"}), "Avis")),
            422,
            "invalid_recipient",
        ),
        (
            app.deliver(&token).metadata(metadata(
                json!({"pivot": {"family_name": "X", "given_names": "Y",
                                 "birthdate": "30/07/1980", "birthplace": ""}}),
                "Avis",
            )),
            422,
            "invalid_recipient",
        ),
        (
            app.deliver(&token)
                .metadata(metadata(json!({"nrn": "85.07.30-033.29"}), "Avis")),
            422,
            "invalid_recipient",
        ),
        (
            app.deliver(&token).metadata(metadata(
                json!({"citizen_id": uuid::Uuid::new_v4().to_string()}),
                "Avis",
            )),
            422,
            "unknown_recipient",
        ),
        (
            app.deliver(&token)
                .metadata(json!({"recipient": pivot("X"), "title": "Avis",
                "category": "impots", "department": "urbanisme"})),
            422,
            "unknown_department",
        ),
        (
            app.deliver(&token)
                .metadata(json!({"recipient": pivot("X"), "title": "Avis",
                "category": "impots", "contact": {"phone": "123"}})),
            422,
            "invalid_metadata",
        ),
        (app.deliver(&token).file(Vec::new()), 422, "empty_document"),
    ];
    for (delivery, status, code) in cases {
        assert_eq!(error_code(delivery.send().await, status).await, code);
    }
    assert_eq!(app.document_rows().await, 0);
    assert_eq!(app.wait_for_stored_objects(0).await, 0);

    // A known department is accepted.
    let ok = app
        .deliver(&token)
        .metadata(
            json!({"recipient": pivot("X"), "title": "Avis", "category": "impots",
                         "department": "etat-civil"}),
        )
        .send()
        .await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn oversized_documents_are_refused_while_streaming() {
    let app = spawn_app_with(Options {
        extra_toml: "[limits]\nmax_document_bytes = 100000\n".to_owned(),
        ..Options::default()
    })
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let at_limit = app
        .deliver(&token)
        .file(document_bytes(100_000, 2))
        .send()
        .await;
    assert_eq!(at_limit.status(), 201);

    // Declared length over the limit: answered before the body is read. (Sent on a raw
    // socket: an HTTP client still writing a body it was refused may report the
    // closed connection instead of the answer.)
    let boundary = "XyZzY";
    let head = raw_upload_head(&app, &token, boundary, 10_000_000);
    let address = app.address.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        socket.write_all(&multipart_start(boundary)).unwrap();
        let mut answer = vec![0; 4096];
        let read = socket.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("document_too_large"), "{answer}");

    // No declared length (chunked): refused once the counter passes the limit; the
    // rest of the body is read and discarded so the client gets the answer.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..15).map(|i| Ok(document_bytes(10_000, i))).collect();
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(metadata(pivot("Dupont"), "Avis").to_string()),
        )
        .part(
            "file",
            reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(
                chunks,
            )))
            .file_name("big.pdf"),
        );
    let response = app
        .client
        .post(format!("{}/api/v1/documents", app.address))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response, 413).await, "document_too_large");
    assert_eq!(app.document_rows().await, 1);
    assert_eq!(app.wait_for_stored_objects(1).await, 1);
}

/// A raw HTTP request, so the test controls exactly what reaches the server.
fn raw_upload_head(
    app: &crate::common::TestApp,
    token: &str,
    boundary: &str,
    length: usize,
) -> String {
    let host = app.address.trim_start_matches("http://");
    format!(
        "POST /api/v1/documents HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn multipart_start(boundary: &str) -> Vec<u8> {
    let metadata = metadata(pivot("Dupont"), "Avis").to_string();
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{metadata}\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"avis.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn truncated_upload_stores_nothing() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let boundary = "XyZzY";
    // The body ends without its closing boundary, and the length says so.
    let mut body = multipart_start(boundary);
    body.extend_from_slice(&document_bytes(300_000, 4));
    let response = app
        .client
        .post(format!("{}/api/v1/documents", app.address))
        .bearer_auth(&token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response, 400).await, "incomplete_upload");
    assert_eq!(app.document_rows().await, 0);
    assert_eq!(app.wait_for_stored_objects(0).await, 0);
}

#[tokio::test]
async fn client_disconnecting_mid_upload_leaves_nothing_behind() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let boundary = "XyZzY";
    let start = multipart_start(boundary);
    // Announce 20 MB, send 8 MB (past the first multipart part), then hang up.
    let head = raw_upload_head(&app, &token, boundary, 20_000_000);
    let address = app.address.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        socket.write_all(&start).unwrap();
        for i in 0..8 {
            socket.write_all(&document_bytes(1_000_000, i)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        socket.shutdown(std::net::Shutdown::Both).unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.document_rows().await, 0);
    assert_eq!(app.wait_for_stored_objects(0).await, 0);
    // The server is still healthy and accepts the next upload.
    assert_eq!(app.deliver(&token).send().await.status(), 201);
}

#[tokio::test]
async fn idempotent_retries_give_the_same_document() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let bytes = document_bytes(150_000, 5);
    let first = app
        .deliver(&token)
        .file(bytes.clone())
        .idempotency_key("manifest-2026-11:line-42")
        .send()
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_id = first.json::<Value>().await.unwrap()["id"].clone();

    let retry = app
        .deliver(&token)
        .file(bytes.clone())
        .idempotency_key("manifest-2026-11:line-42")
        .send()
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first_id);

    let different = app
        .deliver(&token)
        .file(document_bytes(150_000, 6))
        .idempotency_key("manifest-2026-11:line-42")
        .send()
        .await;
    assert_eq!(error_code(different, 409).await, "idempotency_key_reused");
    let other_title = app
        .deliver(&token)
        .metadata(metadata(pivot("Dupont"), "Autre titre"))
        .file(bytes)
        .idempotency_key("manifest-2026-11:line-42")
        .send()
        .await;
    assert_eq!(error_code(other_title, 409).await, "idempotency_key_reused");
    assert_eq!(app.document_rows().await, 1);
    assert_eq!(app.wait_for_stored_objects(1).await, 1);
}

#[tokio::test]
async fn object_store_down_is_a_clear_error() {
    let app = spawn_app_with(Options {
        storage_down: true,
        ..Options::default()
    })
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    // Large enough to start a multipart upload, which needs the store.
    let response = app
        .deliver(&token)
        .file(document_bytes(6_000_000, 8))
        .send()
        .await;
    assert_eq!(error_code(response, 503).await, "storage_unavailable");
    // Small documents are buffered, then fail at completion: same answer.
    let response = app.deliver(&token).send().await;
    assert_eq!(error_code(response, 503).await, "storage_unavailable");
    assert_eq!(app.document_rows().await, 0);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["storage"],
        "unavailable"
    );
}

#[tokio::test]
async fn database_down_is_a_clear_error_and_leaves_no_object() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let Some((admin_url, name)) = app.postgres_admin() else {
        eprintln!("skipped: needs TEST_DATABASE_URL (an embedded SQLite file cannot go down)");
        return;
    };
    // Cut the database off: connections are refused and the pooled ones killed.
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .unwrap();
    let response = app.deliver(&token).send().await;
    assert_eq!(error_code(response, 503).await, "database_unavailable");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(app.wait_for_stored_objects(0).await, 0);
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn health_openapi_and_security_headers() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["database"], "ok");

    let openapi = app.get("/api/v1/openapi.json").await;
    assert_eq!(openapi.headers()["x-content-type-options"], "nosniff");
    assert_eq!(openapi.headers()["cache-control"], "no-store");
    let openapi: Value = openapi.json().await.unwrap();
    assert!(openapi["paths"]["/api/v1/documents"]["post"].is_object());
    assert!(openapi["paths"]["/api/v1/documents/{id}"]["get"].is_object());

    let unknown = app.get("/api/v1/nothing-here").await;
    assert_eq!(error_code(unknown, 404).await, "not_found");
    let wrong_body = app
        .client
        .post(format!("{}/api/v1/documents", app.address))
        .bearer_auth(app.agent_token("agent@mairie.example", Role::Agent).await)
        .json(&json!({"title": "not multipart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong_body, 400).await, "malformed_upload");

    let home = app.get("/").await;
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("lang=\"fr\""));
}

#[tokio::test]
async fn orphan_payloads_are_swept_and_referenced_ones_kept() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    assert_eq!(app.deliver(&token).send().await.status(), 201);
    // An upload that completed but whose row never committed (a crash in between).
    let mut orphan = app.state.storage.start_upload(BlobKey::new_document());
    orphan
        .write(bytes::Bytes::from_static(b"ciphertext"))
        .await
        .unwrap();
    orphan.complete().await.unwrap();
    orphan.keep();
    assert_eq!(app.stored_objects().await, 2);

    // Young orphans are left alone: their upload may still be committing.
    let removed = vault::sweep_orphan_payloads(&app.state, vault::ORPHAN_GRACE)
        .await
        .unwrap();
    assert_eq!(removed, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let removed = vault::sweep_orphan_payloads(&app.state, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(app.stored_objects().await, 1);
}
