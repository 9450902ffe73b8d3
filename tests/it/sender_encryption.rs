//! Documents encrypted before they leave the sender's machine: the recipients lookup,
//! the API storing an age file as it is (and refusing what is not one recipient's age
//! file), and `eguichet deliver` sending no plaintext at all — checked on the wire
//! through a recording proxy and in every file the server wrote.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::{TestApp, document_bytes, error_code, marie, spawn_app};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::bulk::client::{self, ClientOptions};
use eguichet::crypto::base64url;
use eguichet::crypto::{VaultIdentity, VaultRecipient, seal, unseal};
use eguichet::db::schema::documents;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn recipient_of(app: &TestApp, token: &str, recipient: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/recipients", app.address))
        .bearer_auth(token)
        .json(&json!({ "recipient": recipient }))
        .send()
        .await
        .unwrap()
}

async fn vault_key(app: &TestApp, token: &str) -> VaultRecipient {
    let response = recipient_of(app, token, marie()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    VaultRecipient::parse(body["recipient"].as_str().unwrap()).unwrap()
}

/// The escrowed identity of the only citizen (the test plays the citizen's page).
async fn citizen_identity(app: &TestApp, document: &str) -> VaultIdentity {
    let (state, citizen) = (app.state.clone(), app.citizen_of(document).await);
    app.state
        .db
        .read(move |conn| eguichet::citizens::vault_access(conn, &state.keys.master, &citizen))
        .await
        .map(|access| match access {
            eguichet::citizens::VaultAccess::Escrowed(identity) => identity,
            _ => panic!("the vault key is not in escrow"),
        })
        .unwrap()
}

fn sealed_metadata(recipient: &VaultRecipient) -> String {
    let sealed = seal(
        recipient,
        json!({ "title": "Avis d'imposition", "file_name": "avis.pdf" })
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    base64url(&sealed)
}

async fn send_encrypted(
    app: &TestApp,
    token: &str,
    metadata: Value,
    file: Vec<u8>,
) -> reqwest::Response {
    let form = Form::new()
        .part(
            "metadata",
            Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "file",
            Part::bytes(file)
                .file_name("avis.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    app.client
        .post(format!("{}/api/v1/documents", app.address))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_document_its_sender_encrypted_is_stored_as_it_is() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let key = vault_key(&app, &token).await;
    // Asked again, the same person has the same key; an unknown person gets one too,
    // in the same shape.
    assert_eq!(vault_key(&app, &token).await.to_string(), key.to_string());
    let stranger = recipient_of(&app, &token, crate::common::pivot("Inconnu")).await;
    assert_eq!(stranger.status(), 200);

    let plaintext = document_bytes(200_000, 4);
    let file = seal(&key, &plaintext).unwrap();
    let metadata = json!({
        "recipient": marie(),
        "category": "impots",
        "encryption": { "recipient": key.to_string(), "sealed_metadata": sealed_metadata(&key) },
    });
    let response = send_encrypted(&app, &token, metadata.clone(), file.clone()).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let lookup = id.clone();
    let (header, sealed, encrypted_by, size): (Vec<u8>, Vec<u8>, String, i64) = app
        .state
        .db
        .read(move |conn| -> Result<_, eguichet::db::DbError> {
            Ok(documents::table
                .find(&lookup)
                .select((
                    documents::age_header,
                    documents::sealed_metadata,
                    documents::encrypted_by,
                    documents::plaintext_size,
                ))
                .first(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(encrypted_by, "sender");
    assert_eq!(size, plaintext.len() as i64);
    assert_eq!(&file[..header.len()], &header[..], "header kept as sent");
    // The vault's own page (here with the escrowed key) opens it like any other.
    let identity = citizen_identity(&app, &id).await;
    let browser =
        crate::common::citizen_browser::CitizenBrowser::logged_in_as(&app, "marie.dupont").await;
    let downloaded = browser.get(&format!("/vault/documents/{id}")).await;
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), plaintext);
    let title: Value = serde_json::from_slice(&unseal(&identity, &sealed).unwrap()).unwrap();
    assert_eq!(title["title"], "Avis d'imposition");
    let list = browser.vault().await;
    assert!(list.contains("Avis d&#x27;imposition") || list.contains("Avis d'imposition"));
}

#[tokio::test]
async fn what_the_server_cannot_vouch_for_is_refused() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let key = vault_key(&app, &token).await;
    let file = seal(&key, b"contenu").unwrap();
    let encryption =
        json!({ "recipient": key.to_string(), "sealed_metadata": sealed_metadata(&key) });

    // A title in clear beside a sealed one.
    let with_title = json!({ "recipient": marie(), "category": "impots", "title": "Avis",
                             "encryption": encryption });
    let response = send_encrypted(&app, &token, with_title, file.clone()).await;
    assert_eq!(error_code(response, 422).await, "invalid_metadata");

    let metadata = json!({ "recipient": marie(), "category": "impots", "encryption": encryption });
    // Not an age file.
    let response = send_encrypted(
        &app,
        &token,
        metadata.clone(),
        b"%PDF-1.7 en clair".to_vec(),
    )
    .await;
    assert_eq!(error_code(response, 400).await, "invalid_request");
    // Cut before its first chunk's tag.
    let response = send_encrypted(
        &app,
        &token,
        metadata.clone(),
        file[..file.len() - 20].to_vec(),
    )
    .await;
    assert_eq!(error_code(response, 400).await, "invalid_request");
    // For two keys: someone else could open it too.
    let other = VaultIdentity::generate().recipient();
    let two = {
        let keys: Vec<age::x25519::Recipient> = [&key, &other]
            .iter()
            .map(|recipient| recipient.to_string().parse().unwrap())
            .collect();
        let encryptor =
            age::Encryptor::with_recipients(keys.iter().map(|r| r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut writer = encryptor.wrap_output(&mut out).unwrap();
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        writer.finish().unwrap();
        out
    };
    let response = send_encrypted(&app, &token, metadata.clone(), two).await;
    assert_eq!(error_code(response, 400).await, "invalid_request");
    // Encrypted for a key that is not the vault's (a stale key after a lock).
    let stale = json!({ "recipient": marie(), "category": "impots",
        "encryption": { "recipient": other.to_string(), "sealed_metadata": sealed_metadata(&other) } });
    let response = send_encrypted(&app, &token, stale, seal(&other, b"x").unwrap()).await;
    assert_eq!(error_code(response, 409).await, "recipient_changed");
    // Sealed metadata that is not an age file for one key.
    let bad_seal = json!({ "recipient": marie(), "category": "impots",
        "encryption": { "recipient": key.to_string(), "sealed_metadata": base64url(b"titre") } });
    let response = send_encrypted(&app, &token, bad_seal, file.clone()).await;
    assert_eq!(error_code(response, 422).await, "invalid_metadata");
    assert_eq!(app.document_rows().await, 0);
    assert_eq!(app.stored_objects().await, 0);

    // A role that may not deliver may not ask for keys either.
    let viewer = app.agent_token("elu@mairie.example", Role::Official).await;
    assert_eq!(recipient_of(&app, &viewer, marie()).await.status(), 403);
    let response = recipient_of(&app, &token, json!({ "nrn": "123" })).await;
    assert_eq!(error_code(response, 422).await, "invalid_recipient");
}

/// A TCP relay in front of the server that keeps every byte the client sends.
async fn recording_proxy(target: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_owned();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (target, seen) = (target.clone(), seen.clone());
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let upstream = async {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let read = in_read.read(&mut buffer).await.unwrap_or(0);
                        if read == 0 {
                            let _ = out_write.shutdown().await;
                            break;
                        }
                        seen.lock().unwrap().extend_from_slice(&buffer[..read]);
                        if out_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                };
                let downstream = tokio::io::copy(&mut out_read, &mut in_write);
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    (address, recorded)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if contains(&std::fs::read(&path).unwrap_or_default(), needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn eguichet_deliver_sends_no_plaintext_to_a_locked_vault() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let marker = b"MARQUEUR-EN-CLAIR-7f3a9c";
    let dir = tempfile::tempdir().unwrap();
    let mut plaintext = document_bytes(150_000, 5);
    plaintext[70_000..70_000 + marker.len()].copy_from_slice(marker);
    std::fs::write(dir.path().join("avis.pdf"), &plaintext).unwrap();
    std::fs::write(
        dir.path().join("manifest.csv"),
        "file,title,category,family_name,given_names,birthdate,birthplace\n\
         avis.pdf,Avis MARQUEUR-TITRE,impots,Dupont,Marie Claire,1980-07-30,75056\n",
    )
    .unwrap();

    // The citizen locked her vault: only the key her browser made opens it.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/browser-age");
    let fixture_json: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixture}/fixture.json")).unwrap())
            .unwrap();
    let identity = VaultIdentity::parse(fixture_json["identity"].as_str().unwrap()).unwrap();
    let first = app
        .deliver_to(&token, marie(), "Premier", document_bytes(100, 1))
        .await;
    let citizen = app.citizen_of(&first).await;
    let state = app.state.clone();
    let request = eguichet::vault::lock::LockRequest {
        recipient: identity.recipient(),
        passkey: eguichet::vault::lock::NewPasskey {
            credential_id: "credential".to_owned(),
            record: "{}".to_owned(),
            prf_salt: vec![1; 32],
            wrapped_identity: std::fs::read(format!("{fixture}/identity.wrapped")).unwrap(),
            label: String::new(),
        },
        recovery_copy: std::fs::read(format!("{fixture}/identity.recovery.age")).unwrap(),
    };
    app.state
        .db
        .write(move |conn| {
            eguichet::vault::lock::lock_vault(conn, state.keys.server_keys(), &citizen, request)
        })
        .await
        .unwrap();

    let (proxy, seen) = recording_proxy(&app.address).await;
    let run = |encrypt_locally: bool| {
        let manifest = client::load_manifest(&dir.path().join("manifest.csv"), dir.path()).unwrap();
        let options = ClientOptions {
            server: proxy.parse().unwrap(),
            token: token.clone(),
            concurrency: 2,
            encrypt_locally,
        };
        let dir = dir.path().to_owned();
        async move {
            client::deliver_manifest(&options, manifest, &dir, &indicatif::ProgressBar::hidden())
                .await
                .unwrap()
        }
    };
    let report = run(true).await;
    assert!(report.is_complete(), "{report}");
    let wire = seen.lock().unwrap().clone();
    assert!(
        contains(&wire, b"/api/v1/recipients"),
        "the proxy saw the run"
    );
    assert!(!contains(&wire, marker), "plaintext on the wire");
    assert!(!contains(&wire, b"MARQUEUR-TITRE"), "title on the wire");
    assert!(files_containing(app.data_dir.path(), marker).is_empty());

    // The stored document opens with the citizen's key, and only with it.
    let id = report.delivered[0].1.clone();
    let (header, blob_key, encrypted_by): (Vec<u8>, String, String) = app
        .state
        .db
        .read(move |conn| -> Result<_, eguichet::db::DbError> {
            Ok(documents::table
                .find(&id)
                .select((
                    documents::age_header,
                    documents::blob_key,
                    documents::encrypted_by,
                ))
                .first(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(encrypted_by, "sender");
    let payload: Vec<u8> = {
        use futures::TryStreamExt;
        app.state
            .storage
            .read(&eguichet::storage::BlobKey::from_stored(blob_key))
            .await
            .unwrap()
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap()
    };
    let mut reader = eguichet::crypto::decrypt_document(&identity, header, &payload[..])
        .await
        .unwrap();
    let mut opened = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut reader, &mut opened)
        .await
        .unwrap();
    assert_eq!(opened, plaintext);

    // The same proxy does see plaintext when the server is asked to encrypt: the
    // check above looks where plaintext would be.
    std::fs::write(dir.path().join("avis.pdf"), {
        let mut changed = plaintext.clone();
        changed[0] ^= 1;
        changed
    })
    .unwrap();
    let report = run(false).await;
    assert!(report.is_complete(), "{report}");
    assert!(contains(&seen.lock().unwrap(), marker));
}
