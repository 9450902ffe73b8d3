//! Notice dispatch throughput: N pending email notices (default 10,000;
//! `NOTIFY_BENCH_NOTICES`) sent by the real outbox worker — claim, unseal contact and
//! titles, render, link-free check, SMTP, record — to an SMTP server on loopback,
//! beside a bare baseline: lettre sending the same number of messages over the same
//! pooled transport with the same parallelism, without the outbox.
//!
//! `cargo bench --bench notify`; `BENCH_DATABASE_URL=postgres://…` runs it on
//! PostgreSQL instead of SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

#[path = "../tests/it/common/outbound.rs"]
#[allow(dead_code, reason = "the benchmark uses the SMTP server only")]
mod outbound;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::citizens::{self, RecipientIndex};
use eguichet::config::Config;
use eguichet::crypto::seal;
use eguichet::db::schema::documents;
use eguichet::notify::{NoticeChannel, NoticeKind, NoticeTargets, Worker};
use eguichet::state::AppState;
use futures::StreamExt;
use lettre::AsyncTransport;

fn main() {
    let notices: usize = std::env::var("NOTIFY_BENCH_NOTICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(notices));
}

async fn run(count: usize) {
    let smtp = outbound::SmtpServer::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let database = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => format!("[database]\nurl = \"{url}\"\n"),
        Err(_) => String::new(),
    };
    let toml = format!(
        "data_dir = \"{}\"\n{database}[notify]\ncoalesce_seconds = 0\n\
         [notify.email]\nsmtp_url = \"{}\"\nfrom = \"ne-pas-repondre@mairie.example\"\n",
        data_dir.path().display(),
        smtp.url()
    );
    let config = Config::from_toml(&toml).unwrap();
    let (batch, concurrency) = (config.notify.batch_size, config.notify.concurrency);
    let state = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .unwrap()
        .unwrap();
    eprintln!("preparing: {count} citizens, documents and pending email notices");
    prepare(&state, count).await;

    let worker = Worker::new(state.clone()).unwrap();
    let started = Instant::now();
    let mut handled = 0;
    while handled < count {
        handled += worker.send_due_batch().await.unwrap().total();
    }
    let outbox = started.elapsed();
    assert_eq!(smtp.received().len(), count, "every notice arrived once");

    // The baseline: the same transport and parallelism, messages built in advance.
    let email = worker.channels().email().unwrap().clone();
    let texts = eguichet::notify::texts::email_texts(
        NoticeKind::Document,
        "Commune de démonstration",
        eguichet::web::page::Lang::Fr,
    )
    .unwrap();
    let messages: Vec<_> = (0..count)
        .map(|i| email.message(&format!("c{i}@example.org"), &texts).unwrap())
        .collect();
    let started = Instant::now();
    let concurrency_usize = usize::try_from(concurrency).unwrap();
    futures::stream::iter(messages)
        .map(|message| {
            let transport = email.transport().clone();
            async move { transport.send(message).await.unwrap() }
        })
        .buffer_unordered(concurrency_usize)
        .collect::<Vec<_>>()
        .await;
    let bare = started.elapsed();
    assert_eq!(smtp.received().len(), 2 * count);

    let rate = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!(
        "| scenario ({count} notices, batch {batch}, concurrency {concurrency}) | seconds | notices/s |"
    );
    println!("|---|---:|---:|");
    println!(
        "| bare lettre, pooled SMTP | {:.2} | {:.0} |",
        bare.as_secs_f64(),
        rate(bare)
    );
    println!(
        "| outbox worker | {:.2} | {:.0} |",
        outbox.as_secs_f64(),
        rate(outbox)
    );
    println!(
        "\noutbox / bare = {:.2}; database: {}",
        rate(outbox) / rate(bare),
        if database.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
}

/// One citizen per notice (a pending notice gathers every document of its citizen),
/// each with one document whose sealed title the worker must unseal and check.
async fn prepare(state: &AppState, count: usize) {
    let (keys, tenant) = (state.keys.clone(), state.default_tenant.clone());
    state
        .db
        .write(move |conn| -> anyhow::Result<()> {
            let agent = agents::create_agent(
                conn,
                &tenant,
                &AgentEmail::parse("bench@mairie.example")?,
                Role::Agent,
                None,
                Actor::Operator,
            )?;
            for i in 0..count {
                let citizen = citizens::find_or_create_citizen(
                    conn,
                    &keys.master,
                    &RecipientIndex::Pivot(format!("bench-{i}")),
                )?;
                let metadata = serde_json::json!({
                    "title": format!("Avis de taxe foncière 2026 numéro {i}"),
                    "file_name": "avis.pdf", "addressed_to": format!("bench:{i}"),
                });
                let document_id = eguichet::new_id();
                diesel::insert_into(documents::table)
                    .values((
                        documents::id.eq(&document_id),
                        documents::tenant_id.eq(&tenant.id),
                        documents::agent_id.eq(&agent.id),
                        documents::citizen_id.eq(&citizen.id),
                        documents::category.eq("impots"),
                        documents::content_type.eq("application/pdf"),
                        documents::sealed_metadata
                            .eq(seal(&citizen.recipient, metadata.to_string().as_bytes())?),
                        documents::age_header.eq(vec![0u8; 200]),
                        documents::blob_key.eq(format!("bench/{document_id}")),
                        documents::ciphertext_size.eq(1000i64),
                        documents::ciphertext_sha256.eq("00"),
                        documents::plaintext_size.eq(1000i64),
                        documents::created_at.eq(eguichet::now()),
                    ))
                    .execute(conn)?;
                let contact = seal(&citizen.recipient, format!("c{i}@example.org").as_bytes())?;
                eguichet::notify::enqueue_document_notices(
                    conn,
                    &tenant.id,
                    &citizen.id,
                    &document_id,
                    &NoticeTargets::from_sealed(vec![(NoticeChannel::Email, contact)]),
                    Duration::ZERO,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
}
