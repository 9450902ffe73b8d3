//! Voucher redemptions per second: concurrent distributors (32 by default) redeem every
//! code of a 100,000-voucher campaign through `POST /api/v1/voucher-sites/{site}/
//! redemptions` on the release server, on SQLite and on PostgreSQL. Every code is sent
//! twice, by two clients at the same moment, so a double redemption would show. Beside
//! it, on the same database in the same run, the bare single-row `UPDATE` with the same
//! connections and access pattern. See `benches/README.md`.
//!
//! Environment: `VOUCHERS` (default 100000), `CLIENTS` (default 32, even),
//! `VOUCHER_ENGINES` (default `sqlite,postgres`), `VOUCHER_POSTGRES_URL` (the
//! server's maintenance database, where the benchmark creates and drops its own;
//! default `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

mod support;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::audit::Actor;
use eguichet::config::Config;
use eguichet::db::schema::vouchers;
use eguichet::db::{AnyConnection, DatabaseUrl};
use eguichet::state::AppState;
use eguichet::vouchers::VoucherCode;
use eguichet::vouchers::households::Household;
use eguichet::vouchers::issue::{self, Existing};
use support::{DEFAULT_POSTGRES_URL, PgDatabase, Server};

const TARGET_RATIO: f64 = 0.5;
/// Rows per INSERT when filling the bare table.
const INSERT_CHUNK: usize = 1000;
/// `/proc` times are in clock ticks of 1/100 s on Linux.
const TICKS_PER_SECOND: u64 = 100;

diesel::table! {
    /// The baseline: nothing but a code hash and when it was redeemed.
    bare_vouchers (code_hash) {
        code_hash -> Text,
        redeemed_at -> Nullable<Timestamp>,
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// What the untimed setup leaves: the codes stay in this process's memory only.
struct Campaign {
    site_id: String,
    codes: Vec<VoucherCode>,
    code_hashes: Vec<String>,
    tokens: Vec<String>,
}

/// Opens the instance in this process, as the server does (migrations, keys, default
/// tenant), and creates a campaign, one site, the codes and the distributors' tokens.
fn set_up_campaign(config: Config, count: usize, clients: usize) -> Campaign {
    let state = AppState::open(config).unwrap();
    let tenant = state.default_tenant.clone();
    let tokens = state
        .db
        .write_blocking(|conn| -> anyhow::Result<Vec<String>> {
            (0..clients)
                .map(|n| {
                    let email = AgentEmail::parse(&format!("distrib{n}@bench.example"))?;
                    let agent = agents::create_agent(
                        conn,
                        &tenant,
                        &email,
                        Role::Distributor,
                        None,
                        Actor::Operator,
                    )?;
                    let request = agents::TokenRequest::lasting(
                        agents::TokenName::parse("bench")?,
                        0,
                        eguichet::now(),
                    );
                    let issued = agents::issue_api_token(conn, &agent, &request, Actor::Operator)?;
                    Ok(issued.token.reveal().to_owned())
                })
                .collect()
        })
        .unwrap();
    let households: Vec<Household> = (0..count)
        .map(|n| Household {
            line: n + 2,
            reference: format!("FOYER-{n:07}"),
            allotment: 2,
            address: vec![format!("Foyer {n}")],
        })
        .collect();
    let hasher = &state.keys.hasher;
    let (site_id, issued) = state
        .db
        .write_blocking(|conn| -> anyhow::Result<_> {
            let (agent, campaign, sites) =
                support::campaign_with_sites(conn, &tenant, &["Salle des fêtes"])?;
            let site_id = sites
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("the site just added is missing"))?;
            let issued = issue::issue_for_households(
                conn,
                hasher,
                &agent,
                &campaign,
                &households,
                Existing::Refuse,
            )?;
            Ok((site_id, issued))
        })
        .unwrap();
    assert_eq!(issued.len(), count);
    let codes: Vec<VoucherCode> = issued.into_iter().map(|issued| issued.code).collect();
    let code_hashes = codes.iter().map(|code| code.keyed_hash(hasher)).collect();
    Campaign {
        site_id,
        codes,
        code_hashes,
        tokens,
    }
}

/// CPU time of the server, of this process, and of everything else on the machine.
struct CpuClock {
    server: Option<u32>,
    start: (Duration, Duration, Duration),
}

impl CpuClock {
    fn start(server: Option<u32>) -> Self {
        Self {
            server,
            start: cpu_times(server),
        }
    }

    fn finish(&self) -> CpuUse {
        let end = cpu_times(self.server);
        let server = end.0.saturating_sub(self.start.0);
        let bench = end.1.saturating_sub(self.start.1);
        let machine = end.2.saturating_sub(self.start.2);
        CpuUse {
            server,
            bench,
            other: machine.saturating_sub(server + bench),
        }
    }
}

struct CpuUse {
    server: Duration,
    bench: Duration,
    other: Duration,
}

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1000 / TICKS_PER_SECOND)
}

/// utime + stime of a whole process, from `/proc/<pid>/stat`.
fn process_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    // `after_name` starts at field 3 of proc_pid_stat(5); utime and stime are 14 and 15.
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse().ok())
        .collect();
    ticks(fields.iter().sum())
}

/// Busy time of all CPUs together (user, nice, system, irq, softirq, steal).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    ticks(
        [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&index| fields.get(index))
            .sum(),
    )
}

fn cpu_times(server: Option<u32>) -> (Duration, Duration, Duration) {
    (
        server.map_or(Duration::ZERO, |pid| process_cpu(&pid.to_string())),
        process_cpu("self"),
        machine_busy(),
    )
}

/// One timed load: how many codes were taken, in how many tries, how often twice.
struct Run {
    scenario: &'static str,
    redeemed: usize,
    attempts: usize,
    /// Codes that two tries both redeemed (must be 0).
    doubles: usize,
    /// Codes that no try redeemed (must be 0).
    missed: usize,
    /// Answers other than a first collection or "already collected".
    unexpected: usize,
    /// Rows the database holds as redeemed afterwards.
    rows_redeemed: i64,
    elapsed: Duration,
    cpu: CpuUse,
}

impl Run {
    fn per_second(&self, count: usize) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Which codes client `n` sends: the clients form pairs (`n` and `n + clients / 2`)
/// that send the same slice of codes, in the same order.
fn slice_of(n: usize, clients: usize, count: usize) -> std::ops::Range<usize> {
    let pairs = clients / 2;
    let pair = n % pairs;
    pair * count / pairs..(pair + 1) * count / pairs
}

fn tally(taken: &[AtomicU8]) -> (usize, usize, usize) {
    let mut counts = [0usize; 3];
    for code in taken {
        counts[usize::from(code.load(Ordering::Relaxed).min(2))] += 1;
    }
    let [missed, once, doubles] = counts;
    (once + 2 * doubles, doubles, missed)
}

/// The timed part through HTTP: each client has its own keep-alive connection and
/// distributor token; the two clients of a pair meet at a barrier before each code.
fn redeem_through_http(
    base: &str,
    campaign: &Campaign,
    clients: usize,
    server_pid: u32,
) -> (Duration, CpuUse, Vec<AtomicU8>, usize) {
    let count = campaign.codes.len();
    let url: Arc<str> = format!(
        "{base}api/v1/voucher-sites/{}/redemptions",
        campaign.site_id
    )
    .into();
    let taken: Arc<Vec<AtomicU8>> = Arc::new((0..count).map(|_| AtomicU8::new(0)).collect());
    let unexpected = Arc::new(AtomicUsize::new(0));
    let codes: Arc<Vec<String>> = Arc::new(
        campaign
            .codes
            .iter()
            .map(|code| code.as_str().to_owned())
            .collect(),
    );
    // One client thread, so it takes as little CPU from the server as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pair_barriers: Vec<Arc<tokio::sync::Barrier>> = (0..clients / 2)
        .map(|_| Arc::new(tokio::sync::Barrier::new(2)))
        .collect();
    let http_clients: Vec<reqwest::Client> = (0..clients)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect();
    let clock = CpuClock::start(Some(server_pid));
    let start = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::with_capacity(clients);
        for (n, client) in http_clients.into_iter().enumerate() {
            let (url, codes, taken, unexpected) = (
                url.clone(),
                codes.clone(),
                taken.clone(),
                unexpected.clone(),
            );
            let barrier = pair_barriers[n % (clients / 2)].clone();
            let token = campaign.tokens[n].clone();
            let device = format!("bench-scanner-{n}");
            let range = slice_of(n, clients, count);
            tasks.push(tokio::spawn(async move {
                for index in range {
                    barrier.wait().await;
                    let body = serde_json::json!({
                        "code": codes[index],
                        "identity_checked": true,
                        "device": device,
                    });
                    let response = client
                        .post(&*url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    let answer: serde_json::Value = response.json().await.unwrap();
                    let outcome = answer["outcome"].as_str().unwrap_or_default();
                    let replayed = answer["replayed"].as_bool().unwrap_or(false);
                    match (status, outcome, replayed) {
                        (200, "collected", false) => {
                            taken[index].fetch_add(1, Ordering::Relaxed);
                        }
                        (409, "already_collected", _) => {}
                        _ => {
                            if unexpected.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("unexpected answer: {status} {outcome}");
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = start.elapsed();
    let cpu = clock.finish();
    let taken = Arc::try_unwrap(taken).unwrap_or_else(|_| unreachable!());
    (elapsed, cpu, taken, unexpected.load(Ordering::Relaxed))
}

fn count_redeemed(url: &DatabaseUrl) -> i64 {
    let mut conn = url.establish().unwrap();
    vouchers::table
        .filter(vouchers::redeemed_at.is_not_null())
        .count()
        .get_result(&mut conn)
        .unwrap()
}

/// The baseline: the same hashes in a two-column table, and `clients` threads, each
/// with its own connection configured as the server's, running the bare conditional
/// UPDATE in the same pairs and order. On SQLite the writers take turns through one
/// in-process lock, as the server's do (see `eguichet::db::Database`).
fn bare_updates(url: &DatabaseUrl, engine: Engine, hashes: &[String], clients: usize) -> Run {
    let count = hashes.len();
    let mut conn = url.establish().unwrap();
    diesel::sql_query(
        "CREATE TABLE bare_vouchers (code_hash TEXT PRIMARY KEY, redeemed_at TIMESTAMP)",
    )
    .execute(&mut conn)
    .unwrap();
    conn.transaction(|conn| -> QueryResult<()> {
        for chunk in hashes.chunks(INSERT_CHUNK) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|hash| bare_vouchers::code_hash.eq(hash))
                .collect();
            let insert = diesel::insert_into(bare_vouchers::table).values(rows);
            match conn {
                AnyConnection::Postgresql(pg) => insert.execute(pg),
                AnyConnection::Sqlite(sqlite) => insert.execute(sqlite),
            }?;
        }
        Ok(())
    })
    .unwrap();
    if engine == Engine::Postgres {
        diesel::sql_query("ANALYZE bare_vouchers")
            .execute(&mut conn)
            .unwrap();
    }

    let taken: Vec<AtomicU8> = (0..count).map(|_| AtomicU8::new(0)).collect();
    let writer = (engine == Engine::Sqlite).then(|| Mutex::new(()));
    let pair_barriers: Vec<Barrier> = (0..clients / 2).map(|_| Barrier::new(2)).collect();
    let ready = Barrier::new(clients + 1);
    let mut clock = None;
    let mut start = Instant::now();
    std::thread::scope(|scope| {
        for n in 0..clients {
            let (taken, writer, barrier, ready) = (
                &taken,
                writer.as_ref(),
                &pair_barriers[n % (clients / 2)],
                &ready,
            );
            let range = slice_of(n, clients, count);
            scope.spawn(move || {
                let mut conn = url.establish().unwrap();
                ready.wait();
                for index in range {
                    barrier.wait();
                    let _turn = writer.map(|lock| lock.lock().unwrap());
                    let changed = diesel::update(
                        bare_vouchers::table
                            .filter(bare_vouchers::code_hash.eq(&hashes[index]))
                            .filter(bare_vouchers::redeemed_at.is_null()),
                    )
                    .set(bare_vouchers::redeemed_at.eq(eguichet::now()))
                    .execute(&mut conn)
                    .unwrap();
                    if changed == 1 {
                        taken[index].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        ready.wait();
        clock = Some(CpuClock::start(None));
        start = Instant::now();
    });
    let elapsed = start.elapsed();
    let cpu = clock.map(|clock| clock.finish()).unwrap();
    let rows_redeemed = bare_vouchers::table
        .filter(bare_vouchers::redeemed_at.is_not_null())
        .count()
        .get_result(&mut conn)
        .unwrap();
    diesel::sql_query("DROP TABLE bare_vouchers")
        .execute(&mut conn)
        .unwrap();
    let (redeemed, doubles, missed) = tally(&taken);
    Run {
        scenario: "bare UPDATE … WHERE code_hash = ? AND redeemed_at IS NULL",
        redeemed,
        attempts: 2 * count,
        doubles,
        missed,
        unexpected: 0,
        rows_redeemed,
        elapsed,
        cpu,
    }
}

/// One engine: setup (untimed), the HTTP run, then the bare baseline.
fn run_engine(engine: Engine, count: usize, clients: usize) -> (Run, Run) {
    let postgres = (engine == Engine::Postgres).then(|| {
        let maintenance = std::env::var("VOUCHER_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        PgDatabase::create(
            &maintenance,
            "vouchers",
            "set VOUCHER_POSTGRES_URL, or VOUCHER_ENGINES=sqlite",
        )
    });
    let data_dir = tempfile::tempdir().unwrap();
    let listen = support::free_listen_address();
    let text = support::config_text(
        data_dir.path(),
        &listen,
        postgres.as_ref().map(|db| db.url.as_str()),
    );
    let config_file = data_dir.path().join("eguichet.toml");
    std::fs::write(&config_file, &text).unwrap();
    let config = Config::from_toml(&text).unwrap();
    let database_url =
        DatabaseUrl::parse(secrecy::ExposeSecret::expose_secret(&config.database_url())).unwrap();

    eprintln!(
        "{}: issuing {count} vouchers and {clients} distributor tokens…",
        engine.name()
    );
    let setup = Instant::now();
    let campaign = set_up_campaign(config, count, clients);
    eprintln!(
        "{}: setup took {:.1} s",
        engine.name(),
        setup.elapsed().as_secs_f64()
    );

    let server = Server::start(&config_file, data_dir.path(), &listen);
    eprintln!(
        "{}: server pid {}; redeeming through HTTP…",
        engine.name(),
        server.pid()
    );
    let base = format!("http://{listen}/");
    let (elapsed, cpu, taken, unexpected) =
        redeem_through_http(&base, &campaign, clients, server.pid());
    drop(server);
    let (redeemed, doubles, missed) = tally(&taken);
    let http = Run {
        scenario: "HTTP API → redeem (token, site, transaction)",
        redeemed,
        attempts: 2 * count,
        doubles,
        missed,
        unexpected,
        rows_redeemed: count_redeemed(&database_url),
        elapsed,
        cpu,
    };

    eprintln!("{}: bare UPDATE baseline…", engine.name());
    let bare = bare_updates(&database_url, engine, &campaign.code_hashes, clients);
    drop(postgres);
    (http, bare)
}

fn main() {
    let count = env_or("VOUCHERS", 100_000);
    let clients = env_or("CLIENTS", 32);
    assert!(
        clients >= 2 && clients.is_multiple_of(2),
        "CLIENTS must be even: clients work in pairs"
    );
    let engines: Vec<Engine> = std::env::var("VOUCHER_ENGINES")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(|name| match name.trim().to_lowercase().as_str() {
            "sqlite" => Engine::Sqlite,
            "postgres" | "postgresql" | "pg" => Engine::Postgres,
            other => panic!("unknown engine {other:?} in VOUCHER_ENGINES"),
        })
        .collect();

    let results: Vec<(Engine, Run, Run)> = engines
        .iter()
        .map(|&engine| {
            let (http, bare) = run_engine(engine, count, clients);
            (engine, http, bare)
        })
        .collect();

    println!(
        "{count} vouchers, {clients} clients in {} pairs; every code sent twice at once.",
        clients / 2
    );
    println!();
    println!(
        "| engine | scenario | redeemed | attempts | seconds | redeemed/s | attempts/s | \
         doubles | rows redeemed | server CPU s | bench CPU s | other CPU s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (engine, http, bare) in &results {
        for run in [http, bare] {
            println!(
                "| {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} |",
                engine.name(),
                run.scenario,
                run.redeemed,
                run.attempts,
                run.elapsed.as_secs_f64(),
                run.per_second(run.redeemed),
                run.per_second(run.attempts),
                run.doubles,
                run.rows_redeemed,
                run.cpu.server.as_secs_f64(),
                run.cpu.bench.as_secs_f64(),
                run.cpu.other.as_secs_f64(),
            );
        }
    }
    println!();
    let mut sound = true;
    for (engine, http, bare) in &results {
        let ratio = http.per_second(http.redeemed) / bare.per_second(bare.redeemed);
        println!(
            "{}: HTTP / bare = {ratio:.2} (target ≥ {TARGET_RATIO}: {}); double redemptions: \
             {} through HTTP, {} bare",
            engine.name(),
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "missed"
            },
            http.doubles,
            bare.doubles,
        );
        for run in [http, bare] {
            let rows = usize::try_from(run.rows_redeemed).unwrap_or(usize::MAX);
            if run.doubles > 0 || run.missed > 0 || run.unexpected > 0 || rows != count {
                sound = false;
                println!(
                    "  {} / {}: {} double(s), {} code(s) never redeemed, {} unexpected \
                     answer(s), {} row(s) redeemed of {count}",
                    engine.name(),
                    run.scenario,
                    run.doubles,
                    run.missed,
                    run.unexpected,
                    run.rows_redeemed
                );
            }
        }
    }
    assert!(sound, "the redemptions were not exactly once each");
}
