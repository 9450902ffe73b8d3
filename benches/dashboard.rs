//! The officials' dashboard at the scale of a large syndicate: 1,000,000 documents,
//! their notices and a 100,000-voucher campaign in PostgreSQL, then the page and a CSV
//! export asked for by an official of the release server, with and without filters.
//! Beside them, in the same run and with the same session, the agent home page (the
//! bare baseline: session, layout, no figures) and the plain count of the tenant's
//! documents in SQL (what any page reading the documents themselves would pay).
//! See `benches/README.md`.
//!
//! Environment: `DOCUMENTS` (default 1000000), `VOUCHERS` (default 100000), `REQUESTS`
//! per scenario (default 40), `DASHBOARD_POSTGRES_URL` (the server's maintenance
//! database, where the benchmark creates and drops its own; default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

mod support;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::auth::sessions::{self, SessionKind, SessionPolicy};
use eguichet::config::Config;
use eguichet::dashboard::refill;
use eguichet::state::AppState;
use eguichet::tenants::{self, Slug};
use support::{DEFAULT_POSTGRES_URL, PgDatabase, Server};

/// What the issue asks of the page.
const TARGET: Duration = Duration::from_millis(300);
const DEPARTMENTS: [&str; 5] = ["etat-civil", "finances", "urbanisme", "eau", "ecoles"];
const CATEGORIES: [&str; 4] = ["impots", "etat-civil", "factures", "permis"];
/// Documents are spread over this many days.
const DAYS: i64 = 730;
const CITIZENS: i64 = 20_000;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// An HTTP client for one-at-a-time requests from this thread.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Browser {
    fn new(client: reqwest::Client) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self { runtime, client }
    }

    /// The status and body of `GET url`.
    fn get(&self, url: &str) -> Result<(u16, String), reqwest::Error> {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await?;
            let status = response.status().as_u16();
            Ok((status, response.text().await?))
        })
    }
}

/// What the untimed setup leaves for the scenarios.
struct Setup {
    cookie: String,
    tenant_id: String,
    campaign_id: String,
}

/// The tenant's departments, an official with a session, and a campaign with three
/// sites, through the library as the server does them.
fn set_up_tenant(state: &AppState) -> Setup {
    let tenant = state.default_tenant.clone();
    state
        .db
        .write_blocking(|conn| -> anyhow::Result<Setup> {
            for slug in DEPARTMENTS {
                tenants::create_department(
                    conn,
                    &tenant,
                    &Slug::parse(slug)?,
                    slug,
                    Actor::Operator,
                )?;
            }
            let email = AgentEmail::parse("elu@bench.example")?;
            let official =
                agents::create_agent(conn, &tenant, &email, Role::Official, None, Actor::Operator)?;
            let policy = SessionPolicy {
                idle: Duration::from_secs(3600),
                absolute: Duration::from_secs(12 * 3600),
            };
            let session =
                sessions::open_session(conn, policy, SessionKind::Agent, &official.id, None, None)?;
            let sites = ["Salle des fêtes", "École Jules Ferry", "Mairie annexe"];
            let (_, campaign, _) = support::campaign_with_sites(conn, &tenant, &sites)?;
            Ok(Setup {
                cookie: session.cookie_value,
                tenant_id: tenant.id.clone(),
                campaign_id: campaign.id,
            })
        })
        .unwrap()
}

/// Fills the tables in bulk, in SQL: citizens, documents spread over two years, five
/// departments and four categories (60 % opened after delays from seconds to weeks,
/// 1 % withdrawn), one email notice per document and an SMS for one in ten (95 %
/// sent, 3 % failed), and the campaign's vouchers, 60 % collected across the sites.
fn fill(url: &str, setup: &Setup, documents: i64, vouchers: i64) {
    let mut conn = PgConnection::establish(url).unwrap();
    let departments = format!(
        "(SELECT array_agg(id ORDER BY slug) FROM departments WHERE tenant_id = '{}')",
        setup.tenant_id
    );
    let categories = format!("ARRAY['{}']", CATEGORIES.join("','"));
    let statements = [
        format!(
            "INSERT INTO citizens (id, recipient, wrapped_identity, created_at) \
             SELECT 'cit-' || i, 'age1bench' || i, '\\x00'::bytea, now() \
             FROM generate_series(1, {CITIZENS}) i"
        ),
        format!(
            "INSERT INTO documents (id, tenant_id, department_id, agent_id, citizen_id, category, \
             content_type, sealed_metadata, age_header, blob_key, ciphertext_size, \
             ciphertext_sha256, plaintext_size, created_at, notified_at, first_opened_at, \
             withdrawn_at) \
             SELECT 'doc-' || lpad(i::text, 8, '0'), '{tenant}', \
               CASE WHEN i % 10 = 0 THEN NULL ELSE ({departments})[(1 + i % 5)::int] END, \
               (SELECT id FROM agents WHERE role = 'agent' LIMIT 1), \
               'cit-' || (1 + i % {CITIZENS}), ({categories})[(1 + (i / 5) % 4)::int], \
               'application/pdf', '\\x00'::bytea, '\\x00'::bytea, 'bench/' || i, 1000, \
               'sha', 900, created, created, \
               CASE WHEN i % 5 < 3 THEN created + ((i * 7919) % 1200) ^ 2 * interval '1 second' END, \
               CASE WHEN i % 100 = 7 THEN created + interval '1 day' END \
             FROM (SELECT i, timestamp '2025-01-01' + (i % {DAYS}) * interval '1 day' \
                     + ((i * 37) % 86400) * interval '1 second' AS created \
                   FROM generate_series(1::bigint, {documents}) i) numbered",
            tenant = setup.tenant_id,
        ),
        "INSERT INTO notices (id, tenant_id, citizen_id, kind, channel, sealed_contact, state, \
         attempts, next_attempt_at, created_at, sent_at) \
         SELECT 'n-' || d.id, d.tenant_id, d.citizen_id, 'document', 'email', '\\x00'::bytea, \
           CASE WHEN n % 100 < 95 THEN 'sent' WHEN n % 100 < 98 THEN 'dead' ELSE 'pending' END, \
           1, d.created_at, d.created_at, d.created_at \
         FROM (SELECT id, tenant_id, citizen_id, created_at, \
                 row_number() OVER (ORDER BY id) AS n FROM documents) d"
            .to_owned(),
        "INSERT INTO notices (id, tenant_id, citizen_id, kind, channel, sealed_contact, state, \
         attempts, next_attempt_at, created_at, sent_at) \
         SELECT 's-' || id, tenant_id, citizen_id, 'document', 'sms', '\\x00'::bytea, 'sent', \
           1, created_at, created_at, created_at FROM documents WHERE id LIKE '%0'"
            .to_owned(),
        "INSERT INTO notice_documents (notice_id, document_id) \
         SELECT 'n-' || id, id FROM documents \
         UNION ALL SELECT 's-' || id, id FROM documents WHERE id LIKE '%0'"
            .to_owned(),
        format!(
            "INSERT INTO vouchers (id, campaign_id, code_hash, household_hash, allotment, \
             issued_by, issued_at, redeemed_at, redeemed_site_id) \
             SELECT 'v-' || i, '{campaign}', 'code-' || i, 'household-' || i, 2, \
               (SELECT id FROM agents WHERE role = 'agent' LIMIT 1), timestamp '2026-01-01', \
               CASE WHEN i % 5 < 3 THEN timestamp '2026-01-04' + (i % 12) * interval '1 day' \
                 + (i % 600) * interval '1 minute' END, \
               CASE WHEN i % 5 < 3 THEN (SELECT array_agg(id ORDER BY name) FROM voucher_sites \
                 WHERE campaign_id = '{campaign}')[1 + i % 3] END \
             FROM generate_series(1, {vouchers}) i",
            campaign = setup.campaign_id,
        ),
        "ANALYZE".to_owned(),
    ];
    for statement in statements {
        let started = Instant::now();
        let rows = diesel::sql_query(&statement).execute(&mut conn).unwrap();
        let what: String = statement.chars().take(40).collect();
        eprintln!(
            "preparing: {what}… {rows} rows in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    delivered: i64,
    #[diesel(sql_type = BigInt)]
    opened: i64,
}

/// Latencies of one scenario.
struct Timings {
    name: String,
    samples: Vec<Duration>,
}

impl Timings {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[index]
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs `run` once untimed, then `requests` times one after the other, timing each.
fn measure(name: String, requests: i64, mut run: impl FnMut()) -> Timings {
    run();
    let samples = (0..requests)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .collect();
    Timings { name, samples }
}

/// Asks for `path`, which must answer 200 with a body.
fn time_page(browser: &Browser, base: &str, path: &str, requests: i64) -> Timings {
    measure(format!("GET {path}"), requests, || {
        let (status, body) = browser.get(&format!("{base}{path}")).unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty(), "{path}");
    })
}

/// The documents counted one by one, in SQL: what any page reading the documents
/// themselves would pay.
const PLAIN_COUNT: &str = "SELECT COUNT(*) AS delivered, COUNT(first_opened_at) AS opened \
     FROM documents WHERE tenant_id = $1";

fn plain_count(url: &str, tenant_id: &str) -> Counted {
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::sql_query(PLAIN_COUNT)
        .bind::<Text, _>(tenant_id)
        .get_result::<Counted>(&mut conn)
        .unwrap()
}

/// The queries behind the page, unfiltered, each timed alone on the same database:
/// where the page's time goes.
const PAGE_QUERIES: [(&str, &str); 4] = [
    (
        "SQL: documents per day (dashboard_documents)",
        "SELECT day, SUM(delivered), SUM(opened), SUM(withdrawn) FROM dashboard_documents \
         WHERE tenant_id = $1 GROUP BY day",
    ),
    (
        "SQL: delay bands (dashboard_open_delays)",
        "SELECT band, SUM(opened) FROM dashboard_open_delays WHERE tenant_id = $1 GROUP BY band",
    ),
    (
        "SQL: notices (dashboard_notices)",
        "SELECT channel, kind, SUM(pending), SUM(sent), SUM(failed) FROM dashboard_notices \
         WHERE tenant_id = $1 AND department_id = '*' AND category = '*' GROUP BY channel, kind",
    ),
    (
        "SQL: voucher collections by day and site (vouchers)",
        "SELECT CAST(v.redeemed_at AS DATE), v.redeemed_site_id, COUNT(*) \
         FROM vouchers v JOIN voucher_campaigns c ON c.id = v.campaign_id \
         WHERE c.tenant_id = $1 AND v.redeemed_at IS NOT NULL GROUP BY 1, 2",
    ),
];

/// Times `sql`, with the tenant as `$1`.
fn time_query(url: &str, name: &str, sql: &str, tenant_id: &str, requests: i64) -> Timings {
    let mut conn = PgConnection::establish(url).unwrap();
    measure(name.to_owned(), requests, || {
        diesel::sql_query(sql)
            .bind::<Text, _>(tenant_id)
            .execute(&mut conn)
            .unwrap();
    })
}

/// How many rows each counter table holds.
fn counter_rows(url: &str) -> Vec<(&'static str, i64)> {
    let mut conn = PgConnection::establish(url).unwrap();
    [
        "dashboard_documents",
        "dashboard_open_delays",
        "dashboard_notices",
    ]
    .into_iter()
    .map(|table| {
        let rows = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<Rows>(&mut conn)
            .unwrap();
        (table, rows.n)
    })
    .collect()
}

#[derive(QueryableByName)]
struct Rows {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn main() {
    let documents = env_or("DOCUMENTS", 1_000_000);
    let vouchers = env_or("VOUCHERS", 100_000);
    let requests = env_or("REQUESTS", 40);
    let maintenance_url =
        std::env::var("DASHBOARD_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let database = PgDatabase::create(&maintenance_url, "dashboard", "set DASHBOARD_POSTGRES_URL");
    let data_dir = tempfile::tempdir().unwrap();
    let listen = support::free_listen_address();
    let config_file = data_dir.path().join("eguichet.toml");
    let text = support::config_text(data_dir.path(), &listen, Some(&database.url));
    std::fs::write(&config_file, text).unwrap();

    eprintln!("preparing: {documents} documents, {vouchers} vouchers in PostgreSQL");
    let started = Instant::now();
    let state = AppState::open(Config::load(Some(&config_file)).unwrap()).unwrap();
    let setup = set_up_tenant(&state);
    fill(&database.url, &setup, documents, vouchers);
    let filled_in = started.elapsed();
    let started = Instant::now();
    state.db.write_blocking(refill::refill).unwrap();
    let refilled_in = started.elapsed();
    eprintln!(
        "preparing: data written in {:.0} s, dashboard counters filled in {:.1} s",
        filled_in.as_secs_f64(),
        refilled_in.as_secs_f64()
    );
    drop(state);

    let server = Server::start(&config_file, data_dir.path(), &listen);
    let base = format!("http://{listen}");
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("eg_agent_session={}; Path=/", setup.cookie),
        &base.parse().unwrap(),
    );
    let browser = Browser::new(
        reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    );

    let counted = plain_count(&database.url, &setup.tenant_id);
    let plain_count = time_query(
        &database.url,
        "SQL: COUNT(*) of the tenant's documents",
        PLAIN_COUNT,
        &setup.tenant_id,
        requests,
    );
    assert_eq!(counted.delivered, documents);
    let baseline = time_page(&browser, &base, "/agent", requests);
    let campaign = format!("/agent/dashboard?campaign={}", setup.campaign_id);
    let queries: Vec<Timings> = PAGE_QUERIES
        .iter()
        .map(|(name, sql)| time_query(&database.url, name, sql, &setup.tenant_id, requests))
        .collect();
    let scenarios: Vec<Timings> = [
        "/agent/dashboard",
        "/agent/dashboard?department=finances",
        "/agent/dashboard?category=impots&from=2025-03-01&to=2025-08-31",
        "/agent/dashboard?department=eau&category=permis&from=2026-01-01&to=2026-01-31",
        campaign.as_str(),
        "/agent/dashboard/documents-per-month.csv",
    ]
    .iter()
    .map(|path| time_page(&browser, &base, path, requests))
    .collect();

    // The page shows what the database holds.
    let (_, page) = browser.get(&format!("{base}/agent/dashboard")).unwrap();
    let delivered = format!("<td>{}</td>", counted.delivered);
    let opened = format!("<td>{}</td>", counted.opened);
    assert!(
        page.contains(&delivered) && page.contains(&opened),
        "the page does not show {} delivered and {} opened",
        counted.delivered,
        counted.opened
    );
    drop(server);

    println!(
        "\n{documents} documents ({} opened), {} notices, {vouchers} vouchers; {requests} \
         requests per row, one at a time\n",
        counted.opened,
        documents + documents / 10
    );
    println!("| scenario | median ms | p95 ms | median / baseline | under 300 ms (p95) |");
    println!("|---|---:|---:|---:|---|");
    let baseline_median = baseline.quantile(0.5);
    for timings in std::iter::once(&baseline)
        .chain(std::iter::once(&plain_count))
        .chain(queries.iter())
        .chain(scenarios.iter())
    {
        let (median, p95) = (timings.quantile(0.5), timings.quantile(0.95));
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {} |",
            timings.name.replace('|', "\\|"),
            ms(median),
            ms(p95),
            median.as_secs_f64() / baseline_median.as_secs_f64(),
            if p95 < TARGET { "yes" } else { "no" }
        );
    }
    println!(
        "\nbaseline: GET /agent (session, layout, no figures). Refill of the counters from \
         the stored data: {:.1} s. Counter rows: {}.",
        refilled_in.as_secs_f64(),
        counter_rows(&database.url)
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
