//! Locking a vault: everything escrowed moves to the key the citizen's page generated,
//! in one transaction, and afterwards nothing the server holds (database, object store,
//! master key, contacts key) opens a document. The passkey ceremonies themselves run in
//! a real browser (e2e/vault-lock.test.mjs); here the lock is driven as the page would
//! after a checked registration, with the keys a browser wrote (tests/fixtures/browser-age).

use crate::common::citizen_browser::CitizenBrowser;
use crate::common::{TestApp, document_bytes, marie, spawn_app};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::citizens::{self, Channel, NotificationContacts};
use eguichet::crypto::{VaultIdentity, VaultRecipient, decrypt_document, unseal};
use eguichet::db::schema::{
    audit_events, citizens as citizens_table, documents, key_material, notices, vault_ceremonies,
    vault_escrow, vault_passkeys, vault_recovery,
};
use eguichet::storage::BlobKey;
use eguichet::vault::lock::{LockError, LockRequest, NewPasskey, lock_vault};
use eguichet::vault::passkeys::{self, PasskeyError, RECOVERY_ATTEMPTS, RemovalError};
use futures::{AsyncReadExt, TryStreamExt};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/browser-age");

/// The vault identity a browser generated, and what it sent to lock with it.
struct BrowserKeys {
    identity: VaultIdentity,
    recipient: VaultRecipient,
    wrapped_identity: Vec<u8>,
    recovery_copy: Vec<u8>,
}

fn browser_keys() -> BrowserKeys {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/fixture.json")).unwrap())
            .unwrap();
    BrowserKeys {
        identity: VaultIdentity::parse(fixture["identity"].as_str().unwrap()).unwrap(),
        recipient: VaultRecipient::parse(fixture["recipient"].as_str().unwrap()).unwrap(),
        wrapped_identity: std::fs::read(format!("{FIXTURE}/identity.wrapped")).unwrap(),
        recovery_copy: std::fs::read(format!("{FIXTURE}/identity.recovery.age")).unwrap(),
    }
}

fn lock_request(keys: &BrowserKeys, credential_id: &str) -> LockRequest {
    LockRequest {
        recipient: keys.recipient.clone(),
        passkey: NewPasskey {
            credential_id: credential_id.to_owned(),
            record: "{}".to_owned(),
            prf_salt: vec![7; 32],
            wrapped_identity: keys.wrapped_identity.clone(),
            label: "Téléphone\u{7}".to_owned(),
        },
        recovery_copy: keys.recovery_copy.clone(),
    }
}

async fn lock(app: &TestApp, citizen: &str, request: LockRequest) -> Result<(), LockError> {
    let (state, citizen) = (app.state.clone(), citizen.to_owned());
    app.state
        .db
        .write(move |conn| lock_vault(conn, state.keys.server_keys(), &citizen, request))
        .await
        .map(|_| ())
}

/// A citizen with two documents, saved contacts and a notice waiting.
async fn citizen_with_documents(app: &TestApp) -> (String, Vec<(String, Vec<u8>)>) {
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    citizen_with_documents_from(app, &token).await
}

async fn citizen_with_documents_from(
    app: &TestApp,
    token: &str,
) -> (String, Vec<(String, Vec<u8>)>) {
    let mut delivered = Vec::new();
    for (title, seed) in [("Avis de taxe foncière", 1), ("Attestation", 2)] {
        let bytes = document_bytes(150_000, seed);
        let id = app.deliver_to(token, marie(), title, bytes.clone()).await;
        delivered.push((id, bytes));
    }
    let citizen = app.citizen_of(&delivered[0].0).await;
    let (contacts_key, id) = (app.state.keys.contacts.recipient(), citizen.clone());
    app.state
        .db
        .write(move |conn| {
            citizens::save_notification_contacts(
                conn,
                &contacts_key,
                &id,
                &NotificationContacts {
                    email: Some("marie@example.org".to_owned()),
                    phone: None,
                    channel: Channel::Email,
                },
            )
        })
        .await
        .unwrap();
    // Delivered after the settings were saved: its notice holds the address, frozen.
    let bytes = document_bytes(1_000, 3);
    let id = app
        .deliver_to(token, marie(), "Rappel", bytes.clone())
        .await;
    delivered.push((id, bytes));
    (citizen, delivered)
}

type StoredDocument = (Vec<u8>, Vec<u8>, String);

async fn stored_document(app: &TestApp, id: &str) -> StoredDocument {
    let id = id.to_owned();
    app.state
        .db
        .read(
            move |conn| -> Result<StoredDocument, eguichet::db::DbError> {
                Ok(documents::table
                    .find(&id)
                    .select((
                        documents::age_header,
                        documents::sealed_metadata,
                        documents::blob_key,
                    ))
                    .first(conn)?)
            },
        )
        .await
        .unwrap()
}

/// Decrypts a stored document with `identity`, reading the payload from the store.
async fn open_with(
    app: &TestApp,
    identity: &VaultIdentity,
    document: &StoredDocument,
) -> Option<Vec<u8>> {
    let payload = app
        .state
        .storage
        .read(&BlobKey::from_stored(document.2.clone()))
        .await
        .unwrap()
        .map_err(std::io::Error::other)
        .into_async_read();
    let mut reader = decrypt_document(identity, document.0.clone(), payload)
        .await
        .ok()?;
    let mut plaintext = Vec::new();
    reader.read_to_end(&mut plaintext).await.ok()?;
    Some(plaintext)
}

/// A count query run on the app's database.
async fn count(
    app: &TestApp,
    query: impl FnOnce(&mut eguichet::db::Conn) -> QueryResult<i64> + Send + 'static,
) -> i64 {
    app.state
        .db
        .read(move |conn| -> Result<i64, eguichet::db::DbError> { Ok(query(conn)?) })
        .await
        .unwrap()
}

async fn escrow_rows(app: &TestApp, citizen: &str) -> i64 {
    let citizen = citizen.to_owned();
    count(app, move |conn| {
        vault_escrow::table
            .filter(vault_escrow::citizen_id.eq(&citizen))
            .count()
            .get_result(conn)
    })
    .await
}

async fn passkey_rows(app: &TestApp, citizen: &str) -> i64 {
    let citizen = citizen.to_owned();
    count(app, move |conn| {
        vault_passkeys::table
            .filter(vault_passkeys::citizen_id.eq(&citizen))
            .count()
            .get_result(conn)
    })
    .await
}

async fn escrowed_identity(app: &TestApp, citizen: &str) -> Option<VaultIdentity> {
    let (state, citizen) = (app.state.clone(), citizen.to_owned());
    app.state
        .db
        .read(move |conn| citizens::vault_access(conn, &state.keys.master, &citizen))
        .await
        .map(|access| match access {
            citizens::VaultAccess::Escrowed(identity) => Some(identity),
            citizens::VaultAccess::Locked | citizens::VaultAccess::Unknown => None,
        })
        .unwrap()
}

#[tokio::test]
async fn locking_moves_every_document_to_the_new_key_and_destroys_the_escrow() {
    let app = spawn_app().await;
    let (citizen, delivered) = citizen_with_documents(&app).await;
    let old = escrowed_identity(&app, &citizen).await.unwrap();
    let before: Vec<StoredDocument> =
        futures::future::join_all(delivered.iter().map(|(id, _)| stored_document(&app, id))).await;
    let keys = browser_keys();

    lock(&app, &citizen, lock_request(&keys, "credential-1"))
        .await
        .unwrap();

    assert_eq!(escrow_rows(&app, &citizen).await, 0, "escrow row deleted");
    assert!(escrowed_identity(&app, &citizen).await.is_none());
    for ((id, bytes), old_row) in delivered.iter().zip(&before) {
        let row = stored_document(&app, id).await;
        assert_eq!(row.2, old_row.2, "the payload was not rewritten");
        assert_eq!(
            open_with(&app, &keys.identity, &row).await.as_ref(),
            Some(bytes)
        );
        assert_eq!(
            open_with(&app, &old, &row).await,
            None,
            "the old key no longer opens it"
        );
        let metadata: Value =
            serde_json::from_slice(&unseal(&keys.identity, &row.1).unwrap()).unwrap();
        assert!(metadata["title"].is_string());
        assert!(unseal(&old, &row.1).is_err());
    }
    // Contacts moved to the server's contacts key: notices can still be sent.
    let (state, id) = (app.state.clone(), citizen.clone());
    let contacts = app
        .state
        .db
        .read(move |conn| citizens::notification_contacts(conn, state.keys.server_keys(), &id))
        .await
        .unwrap();
    assert_eq!(contacts.email.as_deref(), Some("marie@example.org"));
    let id = citizen.clone();
    let (frozen, recipient, label, audit): (Vec<Vec<u8>>, String, String, String) = app
        .state
        .db
        .read(move |conn| -> Result<_, eguichet::db::DbError> {
            let frozen = notices::table
                .filter(notices::citizen_id.eq(&id))
                .select(notices::sealed_contact)
                .load(conn)?;
            let recipient = citizens_table::table
                .find(&id)
                .select(citizens_table::recipient)
                .first(conn)?;
            let label = vault_passkeys::table
                .filter(vault_passkeys::citizen_id.eq(&id))
                .select(vault_passkeys::label)
                .first(conn)?;
            let audit = audit_events::table
                .filter(audit_events::action.eq("vault.locked"))
                .select(audit_events::details)
                .first(conn)?;
            Ok((frozen, recipient, label, audit))
        })
        .await
        .unwrap();
    assert!(!frozen.is_empty());
    for sealed in &frozen {
        assert!(unseal(&app.state.keys.contacts, sealed).is_ok());
    }
    assert_eq!(recipient, keys.recipient.to_string());
    assert_eq!(
        label, "Téléphone",
        "control characters dropped from the label"
    );
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit["documents"], 3);
    assert!(!audit.to_string().contains("AGE-SECRET-KEY"));

    // A new document for the locked vault is sealed to the new key.
    let token = app
        .agent_token("courrier@mairie.example", Role::Agent)
        .await;
    let bytes = document_bytes(2_000, 9);
    let later = app
        .deliver_to(&token, marie(), "Après verrouillage", bytes.clone())
        .await;
    let row = stored_document(&app, &later).await;
    assert_eq!(open_with(&app, &keys.identity, &row).await, Some(bytes));
}

#[tokio::test]
async fn nothing_the_server_holds_opens_a_locked_vault() {
    let app = spawn_app().await;
    let (citizen, delivered) = citizen_with_documents(&app).await;
    let keys = browser_keys();
    lock(&app, &citizen, lock_request(&keys, "credential-1"))
        .await
        .unwrap();

    // Every key the server holds or can unwrap: the master key, the keys wrapped by it
    // in key_material, and whatever escrowed vault identities remain.
    let master_file =
        std::fs::read_to_string(app.state.config.generated_master_key_path()).unwrap();
    let master_identity = VaultIdentity::parse(
        master_file
            .lines()
            .find(|line| line.starts_with("AGE-SECRET-KEY-"))
            .unwrap(),
    )
    .unwrap();
    let mut server_keys = vec![master_identity];
    let wrapped_material: Vec<Vec<u8>> = app
        .state
        .db
        .read(|conn| -> Result<_, eguichet::db::DbError> {
            Ok(key_material::table
                .select(key_material::wrapped)
                .load(conn)?)
        })
        .await
        .unwrap();
    for wrapped in wrapped_material {
        let secret = app.state.keys.master.unwrap(&wrapped).unwrap();
        if let Ok(identity) = VaultIdentity::parse(&String::from_utf8_lossy(&secret)) {
            server_keys.push(identity);
        }
    }
    let escrowed: Vec<Vec<u8>> = app
        .state
        .db
        .read(|conn| -> Result<_, eguichet::db::DbError> {
            Ok(vault_escrow::table
                .select(vault_escrow::wrapped_identity)
                .load(conn)?)
        })
        .await
        .unwrap();
    for wrapped in escrowed {
        server_keys.push(app.state.keys.master.unwrap_identity(&wrapped).unwrap());
    }
    assert!(
        server_keys.len() >= 2,
        "the master key and the contacts key"
    );

    for (id, bytes) in &delivered {
        let row = stored_document(&app, id).await;
        for key in &server_keys {
            assert_eq!(open_with(&app, key, &row).await, None);
            assert!(unseal(key, &row.1).is_err());
        }
        assert_eq!(
            open_with(&app, &keys.identity, &row).await.as_ref(),
            Some(bytes)
        );
    }
    // The page's own route gives back ciphertext only, and the old route has no key.
    let browser = CitizenBrowser::logged_in_as(&app, "marie.dupont").await;
    let response = browser
        .get(&format!("/vault/documents/{}", delivered[0].0))
        .await;
    assert_eq!(response.status(), 404);
    let response = browser
        .get(&format!("/vault/documents/{}/encrypted", delivered[0].0))
        .await;
    assert_eq!(response.status(), 200);
    let header_length: usize = response.headers()["x-age-header-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    let row = stored_document(&app, &delivered[0].0).await;
    assert_eq!(&body[..header_length], &row.0[..]);
    assert!(
        !body
            .windows(1000)
            .any(|w| delivered[0].1.windows(1000).next() == Some(w))
    );
}

#[tokio::test]
async fn two_locks_at_once_give_one_locked_vault() {
    let app = spawn_app().await;
    let (citizen, _) = citizen_with_documents(&app).await;
    let keys = browser_keys();
    let results = futures::future::join_all((0..6).map(|n| {
        lock(
            &app,
            &citizen,
            lock_request(&keys, &format!("credential-{n}")),
        )
    }))
    .await;
    let locked = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(locked, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|result| result.as_ref().err())
            .all(|error| matches!(error, LockError::AlreadyLocked))
    );
    assert_eq!(passkey_rows(&app, &citizen).await, 1);
}

#[tokio::test]
async fn a_refused_or_interrupted_lock_leaves_the_vault_as_it_was() {
    let app = spawn_app().await;
    let (citizen, delivered) = citizen_with_documents(&app).await;
    let keys = browser_keys();
    let before = stored_document(&app, &delivered[0].0).await;

    // A "recovery copy" sealed to a key, not to a passphrase, would hand the vault to
    // that key's holder.
    let mut request = lock_request(&keys, "credential-1");
    request.recovery_copy = std::fs::read(format!("{FIXTURE}/title.age")).unwrap();
    assert!(matches!(
        lock(&app, &citizen, request).await,
        Err(LockError::InvalidRecoveryCopy)
    ));
    let mut request = lock_request(&keys, "credential-1");
    request.passkey.wrapped_identity.truncate(20);
    assert!(matches!(
        lock(&app, &citizen, request).await,
        Err(LockError::InvalidWrappedIdentity)
    ));

    // A document whose header no longer opens stops the lock half-way: the whole
    // transaction is undone, the first documents' new headers included.
    let broken = delivered[1].0.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(documents::table.find(&broken))
                .set(documents::age_header.eq(b"age-encryption.org/v1\n--- broken\n".to_vec()))
                .execute(conn)?)
        })
        .await
        .unwrap();
    assert!(matches!(
        lock(&app, &citizen, lock_request(&keys, "credential-1")).await,
        Err(LockError::Key(_))
    ));
    assert_eq!(escrow_rows(&app, &citizen).await, 1);
    assert_eq!(stored_document(&app, &delivered[0].0).await, before);
    let old = escrowed_identity(&app, &citizen).await.unwrap();
    assert_eq!(
        open_with(&app, &old, &before).await.as_ref(),
        Some(&delivered[0].1)
    );
}

#[tokio::test]
async fn recovery_copies_are_rationed_even_in_a_burst() {
    let app = spawn_app().await;
    let (citizen, _) = citizen_with_documents(&app).await;
    let keys = browser_keys();
    lock(&app, &citizen, lock_request(&keys, "credential-1"))
        .await
        .unwrap();
    let attempts = futures::future::join_all((0..12).map(|_| {
        let citizen = citizen.clone();
        app.state
            .db
            .write(move |conn| passkeys::recovery_copy(conn, &citizen))
    }))
    .await;
    let handed_out: Vec<&String> = attempts.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(handed_out.len() as i64, RECOVERY_ATTEMPTS);
    assert!(
        attempts
            .iter()
            .filter_map(|attempt| attempt.as_ref().err())
            .all(|error| matches!(error, PasskeyError::TooManyAttempts))
    );
    let copy = eguichet::crypto::from_base64url(handed_out[0]).unwrap();
    assert_eq!(copy, keys.recovery_copy);
    let id = citizen.clone();
    let kept: Vec<u8> = app
        .state
        .db
        .read(move |conn| -> Result<Vec<u8>, eguichet::db::DbError> {
            Ok(vault_recovery::table
                .find(&id)
                .select(vault_recovery::sealed_identity)
                .first(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(kept, keys.recovery_copy);
}

#[tokio::test]
async fn the_last_passkey_stays() {
    let app = spawn_app().await;
    let (citizen, _) = citizen_with_documents(&app).await;
    let keys = browser_keys();
    lock(&app, &citizen, lock_request(&keys, "credential-1"))
        .await
        .unwrap();
    let second = NewPasskey {
        credential_id: "credential-2".to_owned(),
        ..lock_request(&keys, "unused").passkey
    };
    let id = citizen.clone();
    app.state
        .db
        .write(move |conn| eguichet::vault::lock::insert_passkey(conn, &id, &second))
        .await
        .unwrap();
    let reused = lock_request(&keys, "credential-2").passkey;
    let id = citizen.clone();
    assert!(matches!(
        app.state
            .db
            .write(move |conn| eguichet::vault::lock::insert_passkey(conn, &id, &reused))
            .await,
        Err(LockError::PasskeyInUse)
    ));

    let id = citizen.clone();
    let stored: Vec<String> = app
        .state
        .db
        .read(move |conn| -> Result<Vec<String>, eguichet::db::DbError> {
            Ok(vault_passkeys::table
                .filter(vault_passkeys::citizen_id.eq(&id))
                .select(vault_passkeys::id)
                .load(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    // Two removals at once on a vault of two: one goes, the other is refused.
    let removals = futures::future::join_all(stored.iter().map(|passkey| {
        let (id, passkey) = (citizen.clone(), passkey.clone());
        app.state
            .db
            .write(move |conn| passkeys::remove_passkey(conn, &id, &passkey))
    }))
    .await;
    assert_eq!(removals.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        removals
            .iter()
            .any(|r| matches!(r, Err(RemovalError::LastPasskey)))
    );
}

#[tokio::test]
async fn the_security_calls_need_the_session_and_its_csrf_token() {
    let app = spawn_app().await;
    let (citizen, _) = citizen_with_documents(&app).await;
    let browser = CitizenBrowser::logged_in_as(&app, "marie.dupont").await;
    let page = browser.get("/vault/security").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = crate::common::html::hidden_fields(&html)
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .unwrap()
        .1;
    let keys = browser_keys();
    let call = |path: &'static str, token: Option<String>, body: Value| {
        let mut request = browser.client.post(browser.url(path)).json(&body);
        if let Some(token) = token {
            request = request.header("X-CSRF-Token", token);
        }
        request.send()
    };
    let body = serde_json::json!({ "recipient": keys.recipient.to_string() });
    let refused = call("/vault/security/lock/start", None, body.clone())
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "csrf");
    let anonymous = reqwest::Client::new()
        .post(browser.url("/vault/security/lock/start"))
        .header("X-CSRF-Token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let started = call("/vault/security/lock/start", Some(csrf.clone()), body)
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    assert!(started["options"]["publicKey"]["challenge"].is_string());
    assert_eq!(started["options"]["publicKey"]["rp"]["id"], "localhost");
    // The proof opens only with the new identity.
    let proof = eguichet::crypto::from_base64url(started["proof"].as_str().unwrap()).unwrap();
    let opened = String::from_utf8(unseal(&keys.identity, &proof).unwrap()).unwrap();
    assert_eq!(opened.len(), 64);

    // A forged registration is refused, and the ceremony is spent with it.
    let finish = serde_json::json!({
        "ceremony": started["ceremony"],
        "credential": {
            "id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": { "clientDataJSON": "e30", "attestationObject": "oA" },
            "clientExtensionResults": { "prf": { "enabled": true } },
        },
        "prfSalt": eguichet::crypto::base64url(&[1; 32]),
        "wrappedIdentity": eguichet::crypto::base64url(&keys.wrapped_identity),
        "recoveryCopy": eguichet::crypto::base64url(&keys.recovery_copy),
        "proof": opened,
    });
    let forged = call(
        "/vault/security/lock/finish",
        Some(csrf.clone()),
        finish.clone(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(
        forged.json::<Value>().await.unwrap()["error"],
        "invalid_credential"
    );
    let replayed = call("/vault/security/lock/finish", Some(csrf.clone()), finish)
        .await
        .unwrap();
    assert_eq!(replayed.status(), 410);
    assert_eq!(escrow_rows(&app, &citizen).await, 1);

    // An unlocked vault has nothing to unlock or recover.
    let unlock = call(
        "/vault/unlock/start",
        Some(csrf.clone()),
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(unlock.status(), 409);
    let recovery = call("/vault/recovery", Some(csrf.clone()), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(recovery.status(), 409);

    // Starting over needs the box ticked, and a locked vault.
    let form = |confirm: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("confirm".to_owned(), confirm.to_owned()),
        ]
    };
    let unconfirmed = browser.post("/vault/security/start-over", &form("")).await;
    assert_eq!(unconfirmed.status(), 422);
    let not_locked = browser
        .post("/vault/security/start-over", &form("yes"))
        .await;
    assert_eq!(not_locked.status(), 409);
    assert_eq!(escrow_rows(&app, &citizen).await, 1);

    // Ceremonies left unfinished go with the cleanup.
    let body = serde_json::json!({ "recipient": keys.recipient.to_string() });
    let abandoned = call("/vault/security/lock/start", Some(csrf), body)
        .await
        .unwrap();
    assert_eq!(abandoned.status(), 200);
    let later = eguichet::now() + chrono::TimeDelta::hours(1);
    let purged = app
        .state
        .db
        .write(move |conn| passkeys::purge_expired(conn, later))
        .await
        .unwrap();
    assert!(purged >= 1);
    let left = count(&app, |conn| {
        vault_ceremonies::table.count().get_result(conn)
    })
    .await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_citizen_who_lost_every_key_starts_over_and_the_commune_sees_what_to_resend() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let (citizen, delivered) = citizen_with_documents_from(&app, &token).await;
    let keys = browser_keys();
    lock(&app, &citizen, lock_request(&keys, "credential-1"))
        .await
        .unwrap();

    let start_over = || {
        let (state, citizen) = (app.state.clone(), citizen.clone());
        let db = app.state.db.clone();
        async move {
            db.write(move |conn| {
                eguichet::vault::lock::start_over(conn, state.keys.server_keys(), &citizen)
            })
            .await
        }
    };
    let (first, second) = futures::join!(start_over(), start_over());
    let report = first.as_ref().or(second.as_ref()).unwrap();
    assert_eq!(report.unrecoverable, delivered.len());
    assert!(
        matches!(first, Err(LockError::NotLocked)) || matches!(second, Err(LockError::NotLocked)),
        "one of two start-overs at once"
    );
    assert_eq!(escrow_rows(&app, &citizen).await, 1, "a new escrowed key");
    assert_eq!(passkey_rows(&app, &citizen).await, 0);

    // The commune sees which documents to deliver again, and nothing else.
    let status: Value = app
        .status(&token, &delivered[0].0)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["unrecoverable"], true, "{status}");
    let admin = app
        .agent_browser("admin@mairie.example", Role::Admin, None, &[])
        .await;
    let tag = "Illisible : le destinataire a dû repartir d&#x27;un coffre neuf";
    let detail = admin
        .get(&format!("/agent/deliveries/{}", delivered[0].0))
        .await;
    assert_eq!(detail.status(), 200);
    assert!(detail.text().await.unwrap().contains(tag));
    let list = admin.get("/agent/deliveries").await.text().await.unwrap();
    assert_eq!(
        list.matches(tag).count(),
        delivered.len(),
        "one tag per document"
    );
    // The citizen's list says so; the documents no longer download.
    let browser = CitizenBrowser::logged_in_as(&app, "marie.dupont").await;
    assert_eq!(browser.get("/vault").await.status(), 200);
    let gone = browser
        .get(&format!("/vault/documents/{}", delivered[0].0))
        .await;
    assert_eq!(gone.status(), 404);
    // A document delivered again opens, and the new vault can be locked in its turn
    // (the unrecoverable ones are left as they are).
    let bytes = document_bytes(3_000, 11);
    let again = app
        .deliver_to(&token, marie(), "Avis renvoyé", bytes.clone())
        .await;
    let opened = browser.get(&format!("/vault/documents/{again}")).await;
    assert_eq!(opened.bytes().await.unwrap().to_vec(), bytes);
    lock(&app, &citizen, lock_request(&keys, "credential-2"))
        .await
        .unwrap();
    let row = stored_document(&app, &again).await;
    assert_eq!(open_with(&app, &keys.identity, &row).await, Some(bytes));
}
