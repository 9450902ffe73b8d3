//! Notices, end to end against real servers on loopback: the portal's worker sends
//! through lettre to an SMTP server and through the HTTP adapter to an SMS gateway.
//! Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.

use std::time::Duration;

use crate::common::outbound::{SmsGateway, SmtpServer, closed_port_url};
use crate::common::{Options, TestApp, marie, spawn_app_with};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::citizens::{Channel, NotificationContacts, save_notification_contacts};
use eguichet::db::schema::{documents, notices};
use eguichet::notify::{NoticeKind, NoticeState, NoticeStatus, notices_for_documents};
use serde_json::{Value, json};

const TITLE: &str = "Avis de taxe foncière 2026";
const EMAIL: &str = "marie.dupont@example.org";
const PHONE: &str = "+33612345678";

/// The `[notify]` section of a test: no coalescing (unless `extra` sets it), fast
/// polling, immediate retries.
fn notify_toml(smtp_url: Option<&str>, gateway_url: Option<&str>, extra: &str) -> String {
    let coalesce = if extra.contains("coalesce_seconds") {
        ""
    } else {
        "coalesce_seconds = 0\n"
    };
    let mut toml = format!(
        "[notify]\n{coalesce}poll_interval_ms = 50\nbackoff_base_seconds = 0\n\
         max_attempts = 3\nsend_timeout_seconds = 5\nlease_seconds = 30\n{extra}\n"
    );
    if let Some(url) = smtp_url {
        toml.push_str(&format!(
            "[notify.email]\nsmtp_url = \"{url}\"\n\
             from = \"Commune <ne-pas-repondre@mairie.example>\"\n"
        ));
    }
    if let Some(url) = gateway_url {
        toml.push_str(&format!(
            "[notify.sms]\ngateway_url = \"{url}\"\n\
             auth_header = \"Authorization: Bearer gateway-secret\"\nsender = \"COMMUNE\"\n"
        ));
    }
    toml
}

async fn spawn(smtp_url: Option<&str>, gateway_url: Option<&str>, extra: &str) -> TestApp {
    spawn_app_with(Options {
        extra_toml: notify_toml(smtp_url, gateway_url, extra),
        ..Options::default()
    })
    .await
}

fn metadata_with_contact(title: &str, contact: Value) -> Value {
    json!({"recipient": marie(), "title": title, "category": "impots", "contact": contact})
}

async fn deliver_with_contact(app: &TestApp, token: &str, title: &str, contact: Value) -> String {
    let response = app
        .deliver(token)
        .metadata(metadata_with_contact(title, contact))
        .send()
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn notices_of(app: &TestApp, document_id: &str) -> Vec<NoticeStatus> {
    let ids = vec![document_id.to_owned()];
    app.state
        .db
        .read(move |conn| notices_for_documents(conn, &ids))
        .await
        .unwrap()
        .remove(document_id)
        .unwrap_or_default()
}

/// Waits until every notice of the document is sent or dead (a minute at most).
async fn settled(app: &TestApp, document_id: &str, expected: usize) -> Vec<NoticeStatus> {
    for _ in 0..600 {
        let notices = notices_of(app, document_id).await;
        if notices.len() == expected
            && notices
                .iter()
                .all(|n| matches!(n.state, NoticeState::Sent | NoticeState::Dead))
        {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    notices_of(app, document_id).await
}

async fn notice_rows(app: &TestApp) -> i64 {
    app.state
        .db
        .read(|conn| -> Result<i64, eguichet::db::DbError> {
            Ok(notices::table.count().get_result(conn)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_delivery_sends_one_link_free_email_and_one_sms() {
    let smtp = SmtpServer::start().await;
    let gateway = SmsGateway::start(&[]).await;
    let app = spawn(Some(&smtp.url()), Some(&gateway.url()), "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;

    let id =
        deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL, "phone": PHONE})).await;

    let notices = settled(&app, &id, 2).await;
    assert!(
        notices
            .iter()
            .all(|n| n.state == NoticeState::Sent && n.attempts == 1),
        "{notices:?}"
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "<ne-pas-repondre@mairie.example>");
    assert_eq!(mail.to, vec![format!("<{EMAIL}>")]);
    let (subject, text, html, attachments) = mail.parts();
    assert_eq!(attachments, 0);
    assert!(subject.contains("Commune de démonstration"), "{subject}");
    assert!(text.contains("Commune de démonstration"), "{text}");
    assert!(text.contains("FranceConnect"), "{text}");
    assert!(html.contains("Commune de démonstration"), "{html}");
    for part in [&subject, &text, &html] {
        assert!(!part.contains("taxe foncière"), "title leaked: {part}");
        assert!(!part.contains("http"), "link: {part}");
        assert!(
            !part.contains("<img") && !part.contains("src="),
            "remote: {part}"
        );
        assert!(!part.contains(&app.address), "address: {part}");
    }
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);

    let sms = gateway.received();
    assert_eq!(sms.len(), 1);
    assert_eq!(
        sms[0].authorization.as_deref(),
        Some("Bearer gateway-secret")
    );
    assert_eq!(sms[0].body["from"], "COMMUNE");
    assert_eq!(sms[0].body["to"], PHONE);
    let text = sms[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("Commune de démonstration : "), "{text}");
    assert!(
        text.chars().count() <= 160 && !text.contains("taxe"),
        "{text}"
    );

    let notified = app
        .state
        .db
        .read(
            move |conn| -> Result<Option<chrono::NaiveDateTime>, eguichet::db::DbError> {
                Ok(documents::table
                    .find(id)
                    .select(documents::notified_at)
                    .first(conn)?)
            },
        )
        .await
        .unwrap();
    assert!(notified.is_some());
}

#[tokio::test]
async fn deliveries_within_the_window_share_one_notice() {
    let smtp = SmtpServer::start().await;
    // A long window: the test decides when it closes.
    let app = spawn_app_with(Options {
        extra_toml: notify_toml(Some(&smtp.url()), None, "")
            .replace("coalesce_seconds = 0", "coalesce_seconds = 3600"),
        ..Options::default()
    })
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            deliver_with_contact(
                &app,
                &token,
                &format!("Document {n} du dossier"),
                json!({"email": EMAIL}),
            )
            .await,
        );
    }
    assert_eq!(notice_rows(&app).await, 1);
    // The window closes now.
    app.state
        .db
        .write(|conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(notices::table)
                .set(notices::next_attempt_at.eq(eguichet::now()))
                .execute(conn)?)
        })
        .await
        .unwrap();
    for id in &ids {
        let notices = settled(&app, id, 1).await;
        assert_eq!(notices[0].state, NoticeState::Sent, "{notices:?}");
    }
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(notice_rows(&app).await, 1);
}

#[tokio::test]
async fn a_gateway_error_is_retried_and_a_refusal_is_final() {
    let gateway = SmsGateway::start(&[503, 200]).await;
    let app = spawn(None, Some(&gateway.url()), "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = deliver_with_contact(&app, &token, TITLE, json!({"phone": PHONE})).await;
    let notices = settled(&app, &id, 1).await;
    assert_eq!(notices[0].state, NoticeState::Sent, "{notices:?}");
    assert_eq!(notices[0].attempts, 2);
    assert_eq!(gateway.received().len(), 2);

    let refusing = SmsGateway::start(&[400]).await;
    let app = spawn(None, Some(&refusing.url()), "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = deliver_with_contact(&app, &token, TITLE, json!({"phone": PHONE})).await;
    let notices = settled(&app, &id, 1).await;
    assert_eq!(notices[0].state, NoticeState::Dead, "{notices:?}");
    assert_eq!(notices[0].attempts, 1);
    assert_eq!(notices[0].last_error.as_deref(), Some("sms_rejected"));
    assert_eq!(refusing.received().len(), 1);
}

#[tokio::test]
async fn an_unreachable_relay_is_retried_then_given_up() {
    let app = spawn(Some(&closed_port_url()), None, "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL})).await;
    let notices = settled(&app, &id, 1).await;
    assert_eq!(notices[0].state, NoticeState::Dead, "{notices:?}");
    assert_eq!(notices[0].attempts, 3);
    assert!(
        notices[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("smtp_")
    );
    let dead = app
        .state
        .db
        .read(eguichet::notify::dead_notices_per_tenant)
        .await
        .unwrap();
    assert_eq!(dead.get(&app.state.default_tenant.id), Some(&1));
}

#[tokio::test]
async fn a_citizen_who_chose_no_notice_gets_none_and_saved_contacts_win() {
    let smtp = SmtpServer::start().await;
    let gateway = SmsGateway::start(&[]).await;
    let app = spawn(Some(&smtp.url()), Some(&gateway.url()), "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let first = app
        .deliver_to(
            &token,
            marie(),
            "Premier courrier de la mairie",
            vec![1; 100],
        )
        .await;
    let citizen = app.citizen_of(&first).await;
    let save = |contacts: NotificationContacts| {
        let citizen = citizen.clone();
        let contacts_key = app.state.keys.contacts.recipient();
        app.state
            .db
            .write(move |conn| save_notification_contacts(conn, &contacts_key, &citizen, &contacts))
    };
    save(NotificationContacts {
        email: Some("mine@example.org".to_owned()),
        phone: None,
        channel: Channel::None,
    })
    .await
    .unwrap();
    let quiet =
        deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL, "phone": PHONE})).await;
    assert!(notices_of(&app, &quiet).await.is_empty());
    assert_eq!(notice_rows(&app).await, 0);

    save(NotificationContacts {
        email: Some("mine@example.org".to_owned()),
        phone: None,
        channel: Channel::Email,
    })
    .await
    .unwrap();
    let told =
        deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL, "phone": PHONE})).await;
    let notices = settled(&app, &told, 1).await;
    assert_eq!(notices[0].state, NoticeState::Sent, "{notices:?}");
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["<mine@example.org>".to_owned()]);
    assert!(gateway.received().is_empty());
}

#[tokio::test]
async fn an_unopened_document_gets_one_reminder() {
    let smtp = SmtpServer::start().await;
    let app = spawn(
        Some(&smtp.url()),
        None,
        "reminder_days = 7\nreminder_scan_seconds = 1",
    )
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL})).await;
    settled(&app, &id, 1).await;
    assert_eq!(smtp.wait_for(1).await.len(), 1);

    // Eight days pass.
    let moved = id.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(documents::table.find(moved))
                .set(documents::created_at.eq(eguichet::now() - chrono::TimeDelta::days(8)))
                .execute(conn)?)
        })
        .await
        .unwrap();

    let notices = settled(&app, &id, 2).await;
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(notices[1].kind, NoticeKind::Reminder);
    assert_eq!(notices[1].state, NoticeState::Sent);
    let mails = smtp.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    let (subject, text, _, _) = mails[1].parts();
    assert!(subject.starts_with("Rappel"), "{subject}");
    assert!(!text.contains("taxe"), "{text}");
    // Once per document: a later scan finds nothing more.
    let again = app
        .state
        .db
        .write(|conn| eguichet::notify::queue_reminders(conn, 7, 100))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(notices_of(&app, &id).await.len(), 2);
}

#[tokio::test]
async fn demo_mode_keeps_notices_in_the_local_outbox() {
    let app = spawn(None, None, "").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id =
        deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL, "phone": PHONE})).await;
    let notices = settled(&app, &id, 2).await;
    assert!(
        notices.iter().all(|n| n.state == NoticeState::Sent),
        "{notices:?}"
    );
    let response = app.get("/demo-outbox").await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains(EMAIL) && page.contains(PHONE), "{page}");
    assert!(page.contains("Commune de démonstration"), "{page}");
    assert!(!page.contains("taxe foncière"), "{page}");
}

#[tokio::test]
async fn workers_side_by_side_send_each_notice_once() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(Options {
        extra_toml: notify_toml(Some(&smtp.url()), None, "batch_size = 4\nconcurrency = 2")
            .replace("coalesce_seconds = 0", "coalesce_seconds = 3600"),
        ..Options::default()
    })
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let count = 24;
    for n in 0..count {
        let metadata = json!({"recipient": crate::common::pivot(&format!("Martin{n}")), "title": TITLE,
                              "category": "impots", "contact": {"email": format!("c{n}@example.org")}});
        let response = app.deliver(&token).metadata(metadata).send().await;
        assert_eq!(response.status(), 201);
    }
    assert_eq!(notice_rows(&app).await, count);
    app.state
        .db
        .write(|conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(notices::table)
                .set(notices::next_attempt_at.eq(eguichet::now()))
                .execute(conn)?)
        })
        .await
        .unwrap();
    // Two more workers on the same database race the server's own.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let worker = eguichet::notify::Worker::new(app.state.clone()).unwrap();
            tokio::spawn(async move {
                for _ in 0..200 {
                    worker.send_due_batch().await.unwrap();
                }
            })
        })
        .collect();
    for racer in racers {
        racer.await.unwrap();
    }
    let mails = smtp.wait_for(count as usize).await;
    let sent = app
        .state
        .db
        .read(|conn| -> Result<i64, eguichet::db::DbError> {
            Ok(notices::table
                .filter(notices::state.eq("sent"))
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(sent, count);
    let mut recipients: Vec<_> = mails.iter().map(|mail| mail.to[0].clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(
        (mails.len(), recipients.len()),
        (count as usize, count as usize)
    );
}

/// Makes every queued notice due now (the coalescing window has passed).
async fn window_passes(app: &TestApp) {
    app.state
        .db
        .write(|conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(notices::table)
                .set(notices::next_attempt_at.eq(eguichet::now()))
                .execute(conn)?)
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_queued_notice_follows_the_settings_the_citizen_saved_after_the_delivery() {
    let smtp = SmtpServer::start().await;
    let gateway = SmsGateway::start(&[]).await;
    let app = spawn(
        Some(&smtp.url()),
        Some(&gateway.url()),
        "coalesce_seconds = 3600",
    )
    .await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let save = |citizen: String, contacts: NotificationContacts| {
        let contacts_key = app.state.keys.contacts.recipient();
        app.state
            .db
            .write(move |conn| save_notification_contacts(conn, &contacts_key, &citizen, &contacts))
    };

    // A new address: the queued notice goes there, not to the one given at delivery.
    let first = deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL})).await;
    let citizen = app.citizen_of(&first).await;
    let mine = NotificationContacts {
        email: Some("nouvelle@example.org".to_owned()),
        phone: Some(PHONE.to_owned()),
        channel: Channel::Email,
    };
    save(citizen.clone(), mine.clone()).await.unwrap();
    window_passes(&app).await;
    let notices = settled(&app, &first, 1).await;
    assert_eq!(notices[0].state, NoticeState::Sent, "{notices:?}");
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, vec!["<nouvelle@example.org>".to_owned()]);

    // Email turned off for SMS: the queued email notice leaves as an SMS.
    let second = deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL})).await;
    let sms = NotificationContacts {
        channel: Channel::Sms,
        ..mine.clone()
    };
    save(citizen.clone(), sms).await.unwrap();
    window_passes(&app).await;
    let notices = settled(&app, &second, 1).await;
    assert_eq!(notices[0].state, NoticeState::Sent, "{notices:?}");
    assert_eq!(notices[0].channel, eguichet::notify::NoticeChannel::Sms);
    assert_eq!(gateway.wait_for(1).await.len(), 1);

    // Notices turned off: the queued one is never sent.
    let third =
        deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL, "phone": PHONE})).await;
    let off = NotificationContacts {
        channel: Channel::None,
        ..mine
    };
    save(citizen, off).await.unwrap();
    window_passes(&app).await;
    for _ in 0..600 {
        if notice_rows(&app).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(notices_of(&app, &third).await.is_empty());
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(gateway.received().len(), 1);
}

#[tokio::test]
async fn a_notice_whose_worker_died_is_not_sent_once_its_only_document_was_withdrawn() {
    let smtp = SmtpServer::start().await;
    let app = spawn(Some(&smtp.url()), None, "coalesce_seconds = 3600").await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = deliver_with_contact(&app, &token, TITLE, json!({"email": EMAIL})).await;
    // A worker claimed the notice and died before sending it. The claim is fresh
    // while the document is withdrawn (a live worker could otherwise take the notice
    // over in between and send it before the withdrawal), then made an hour old.
    let claim = |claimed_at: chrono::NaiveDateTime| {
        app.state
            .db
            .write(move |conn| -> Result<usize, eguichet::db::DbError> {
                Ok(diesel::update(notices::table)
                    .set((
                        notices::state.eq("sending"),
                        notices::attempts.eq(1),
                        notices::claim_token.eq("gone"),
                        notices::claimed_at.eq(claimed_at),
                    ))
                    .execute(conn)?)
            })
    };
    claim(eguichet::now()).await.unwrap();
    let answer = app
        .client
        .post(format!("{}/api/v1/documents/{id}/withdraw", app.address))
        .bearer_auth(&token)
        .json(&json!({"reason": "Adressé par erreur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    claim(eguichet::now() - chrono::TimeDelta::hours(1))
        .await
        .unwrap();

    for _ in 0..600 {
        if notice_rows(&app).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(notice_rows(&app).await, 0);
    assert!(smtp.received().is_empty());
}
