//! The audit log against someone who can write to the database but does not hold the
//! master key: an edited event with its plain chain recomputed, a cut tail, a head set
//! back; and the chain written before it was keyed, which must keep verifying.

use crate::common::{TestApp, spawn_app};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::audit::anchors::{self, Anchor};
use eguichet::audit::{self, Actor, AuditEvent, ChainCheck};
use eguichet::db::schema::{audit_chain_head, audit_events};
use eguichet::db::{Conn, DbError};
use eguichet::state::AppState;
use sha2::{Digest, Sha256};

type PlainRow = (
    i64,
    chrono::NaiveDateTime,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// What the chain was before it was keyed, and what anyone can compute: a plain
/// SHA-256 of the length-prefixed fields.
fn plain_hash(prev_hash: &str, row: &PlainRow) -> String {
    let (seq, at, tenant, actor, action, subject, citizen, details) = row;
    let mut hasher = Sha256::new();
    let at = at.and_utc().to_rfc3339();
    let parts: [&[u8]; 9] = [
        prev_hash.as_bytes(),
        &seq.to_be_bytes(),
        at.as_bytes(),
        tenant.as_deref().unwrap_or("").as_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        subject.as_deref().unwrap_or("").as_bytes(),
        citizen.as_deref().unwrap_or("").as_bytes(),
        details.as_bytes(),
    ];
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Rewrites the chain from event `from` on with plain SHA-256 hashes, marking each
/// row `version`, and moves the head: the attacker's (or an old release's) chain.
fn recompute_plain_chain(conn: &mut Conn, from: i64, version: i32) -> Result<(), DbError> {
    let rows: Vec<PlainRow> = audit_events::table
        .select((
            audit_events::seq,
            audit_events::occurred_at,
            audit_events::tenant_id,
            audit_events::actor,
            audit_events::action,
            audit_events::subject,
            audit_events::citizen_id,
            audit_events::details,
        ))
        .order(audit_events::seq.asc())
        .load(conn)?;
    let mut prev = "0".repeat(64);
    for row in &rows {
        if row.0 < from {
            prev = audit_events::table
                .find(row.0)
                .select(audit_events::hash)
                .first(conn)?;
            continue;
        }
        let hash = plain_hash(&prev, row);
        diesel::update(audit_events::table.find(row.0))
            .set((
                audit_events::prev_hash.eq(&prev),
                audit_events::hash.eq(&hash),
                audit_events::chain_version.eq(version),
            ))
            .execute(conn)?;
        prev = hash;
    }
    diesel::update(audit_chain_head::table)
        .set(audit_chain_head::hash.eq(&prev))
        .execute(conn)?;
    Ok(())
}

async fn verify(state: &AppState, anchors: Vec<Anchor>) -> ChainCheck {
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || {
        let key = db.audit_chain_key().unwrap();
        audit::verify_chain(&mut db.get_blocking().unwrap(), &key, &anchors).unwrap()
    })
    .await
    .unwrap()
}

/// Anchors the head now, as the server does every minute, and returns the anchors.
async fn anchor(app: &TestApp) -> Vec<Anchor> {
    let db = app.state.db.clone();
    let path = app.state.config.audit_anchors_file();
    tokio::task::spawn_blocking(move || {
        anchors::anchor_head(&db, &path, None).unwrap();
        anchors::read(&path).unwrap()
    })
    .await
    .unwrap()
}

/// Delivers `count` documents, creating the agent on the first call.
async fn deliveries(app: &TestApp, count: usize) {
    static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let known = TOKENS
        .lock()
        .unwrap()
        .iter()
        .find(|(address, _)| *address == app.address)
        .map(|(_, token)| token.clone());
    let token = match known {
        Some(token) => token,
        None => {
            let token = app.agent_token("agent@mairie.example", Role::Agent).await;
            TOKENS
                .lock()
                .unwrap()
                .push((app.address.clone(), token.clone()));
            token
        }
    };
    for _ in 0..count {
        assert_eq!(app.deliver(&token).send().await.status(), 201);
    }
}

async fn write(
    app: &TestApp,
    work: impl FnOnce(&mut Conn) -> Result<(), DbError> + Send + 'static,
) {
    app.state.db.write(work).await.unwrap();
}

#[tokio::test]
async fn an_edited_event_is_caught_even_with_its_plain_chain_recomputed() {
    for version in [1, 2] {
        let app = spawn_app().await;
        deliveries(&app, 3).await;
        assert!(matches!(
            verify(&app.state, Vec::new()).await,
            ChainCheck::Intact { .. }
        ));
        // Edit an event, then recompute every hash after it as the old chain allowed,
        // labelled as the old chain (1) or as the keyed one (2).
        write(&app, move |conn| {
            diesel::update(audit_events::table.find(3))
                .set(audit_events::details.eq("{}"))
                .execute(conn)?;
            recompute_plain_chain(conn, 3, version)
        })
        .await;
        let check = verify(&app.state, Vec::new()).await;
        assert!(
            matches!(check, ChainCheck::Broken { seq: 3, .. }),
            "version {version}: {check:?}"
        );
    }
}

#[tokio::test]
async fn a_cut_tail_or_a_head_set_back_is_caught_with_the_anchors() {
    let app = spawn_app().await;
    deliveries(&app, 2).await;
    anchor(&app).await;
    deliveries(&app, 2).await;
    let anchors = anchor(&app).await;
    let last = anchors.last().unwrap().seq;
    assert!(matches!(
        verify(&app.state, anchors.clone()).await,
        ChainCheck::Intact { events } if events == last
    ));

    // Cut the last three events and set the head back on what remains: the chain
    // alone still links, the anchors do not agree.
    let kept = last - 3;
    write(&app, move |conn| {
        diesel::delete(audit_events::table.filter(audit_events::seq.gt(kept))).execute(conn)?;
        let hash: String = audit_events::table
            .find(kept)
            .select(audit_events::hash)
            .first(conn)?;
        diesel::update(audit_chain_head::table)
            .set((
                audit_chain_head::seq.eq(kept),
                audit_chain_head::hash.eq(hash),
            ))
            .execute(conn)?;
        Ok(())
    })
    .await;
    assert!(matches!(
        verify(&app.state, Vec::new()).await,
        ChainCheck::Intact { .. }
    ));
    let check = verify(&app.state, anchors.clone()).await;
    let ChainCheck::Broken { seq, reason } = check else {
        panic!("a cut tail passed the anchors");
    };
    assert_eq!(seq, kept + 1);
    assert!(reason.contains("cut"), "{reason}");

    // New events written over the cut tail take the anchored numbers back: the
    // anchored event differs from the one now in its place.
    write(&app, |conn| {
        for _ in 0..3 {
            audit::record(conn, AuditEvent::new(Actor::System, "test.refill"))?;
        }
        Ok(())
    })
    .await;
    let check = verify(&app.state, anchors).await;
    assert!(
        matches!(&check, ChainCheck::Broken { seq, reason }
            if *seq > kept && *seq <= last && reason.contains("anchor")),
        "{check:?}"
    );
}

#[tokio::test]
async fn an_intact_log_matches_its_anchors() {
    let app = spawn_app().await;
    let mut anchors = anchor(&app).await;
    deliveries(&app, 1).await;
    anchors = [anchors, anchor(&app).await].concat();
    let check = verify(&app.state, anchors.clone()).await;
    let head = anchors.iter().map(|anchor| anchor.seq).max().unwrap();
    assert_eq!(check, ChainCheck::Intact { events: head });
}

#[tokio::test]
async fn a_log_chained_before_the_key_is_rechained_and_verifies() {
    let app = spawn_app().await;
    deliveries(&app, 2).await;
    // The log as an earlier release left it: plain SHA-256, version 1.
    write(&app, |conn| recompute_plain_chain(conn, 1, 1)).await;
    let check = verify(&app.state, Vec::new()).await;
    assert!(
        matches!(check, ChainCheck::Broken { seq: 1, .. }),
        "{check:?}"
    );
    let events: i64 = app
        .state
        .db
        .read(|conn| Ok::<_, DbError>(audit_events::table.count().get_result(conn)?))
        .await
        .unwrap();

    // The next start re-chains it under the key and says so in the log itself.
    let config = (*app.state.config).clone();
    let reopened = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        verify(&reopened, Vec::new()).await,
        ChainCheck::Intact { events: events + 1 }
    );
    let details: String = reopened
        .db
        .read(|conn| {
            Ok::<_, DbError>(
                audit_events::table
                    .filter(audit_events::action.eq("audit.chain_keyed"))
                    .select(audit_events::details)
                    .first(conn)?,
            )
        })
        .await
        .unwrap();
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["events"], events);
    assert!(details["unkeyed_chain_broken_at"].is_null());
}

#[tokio::test]
async fn the_server_anchors_its_head_when_it_stops() {
    let data_dir = tempfile::tempdir().unwrap();
    let anchors_file = data_dir.path().join("elsewhere/anchors.log");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[audit]\nanchors_file = \"{}\"\n",
        data_dir.path().display(),
        anchors_file.display()
    );
    let config = eguichet::config::Config::from_toml(&toml).unwrap();
    let application = eguichet::web::Application::build(config).await.unwrap();
    let state = application.state().clone();
    let handle = application.server_handle();
    let running = tokio::spawn(application.run_until_stopped());
    state
        .db
        .write(|conn| {
            for _ in 0..2 {
                audit::record(conn, AuditEvent::new(Actor::System, "test.event"))?;
            }
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    let written = anchors::read(&anchors_file).unwrap();
    let (head_seq, head_hash) = state.db.read(audit::chain_head).await.unwrap();
    let last = written.last().unwrap();
    assert_eq!(
        (last.seq, last.hash.as_str()),
        (head_seq, head_hash.as_str())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&anchors_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
