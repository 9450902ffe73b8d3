//! Upload and download benchmark: throughput and server memory of
//! `POST /api/v1/documents` and `GET /vault/documents/{id}`, and latency of two pages
//! under concurrent load.
//!
//! Runs the release `eguichet` binary as a separate process (temporary data dir, local
//! object store, SQLite), creates an agent and an API token with the same binary, logs
//! a demonstration citizen in when a scenario needs one, then runs the scenarios of
//! [`SCENARIOS`] in order and prints a markdown table (and a second one for the pages
//! under load).
//!
//! ```text
//! CARGO_TARGET_DIR=/root/.cache/eguichet-bench-target cargo bench --bench upload
//! CARGO_TARGET_DIR=/root/.cache/eguichet-bench-target cargo bench --bench upload -- age
//! ```
//!
//! Extra arguments select scenarios whose name contains one of them (the baselines the
//! selected scenarios are compared with always run, so ratios can be computed). See
//! `benches/README.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use reqwest::{Body, StatusCode};
use sha2::{Digest as _, Sha256};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Size of the chunks produced by the generator (and written to the bare encryptor).
const CHUNK_BYTES: usize = 64 * 1024;
/// Every scenario encrypts or uploads the same bytes.
const SEED: u64 = 0x0E61_C4E7_BE0C_4A6E;
/// How often the server's VmRSS is sampled during a scenario.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Largest document the benchmark server accepts (2 GiB, so 1 GiB fits).
const MAX_DOCUMENT_BYTES: u64 = 2 * GIB;
/// How long the server may take to answer `/healthz`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Targets shown under the table (the benchmark reports, it does not fail).
const TARGET_RATIO: f64 = 0.6;
const TARGET_GROWTH_MIB: f64 = 64.0;
/// Share of one CPU used by other processes above which a line is flagged as skewed.
const SKEWED_OTHER_CPU: f64 = 0.2;

const AGENT_EMAIL: &str = "bench@example.org";
/// The demonstration citizen who downloads the documents (login at the demo provider).
const CITIZEN_LOGIN: &str = "marie.dupont";
/// Her pivot identity, as the agent addresses her: what she uploads is hers.
const CITIZEN_FAMILY_NAME: &str = "Dupont";
const CITIZEN_GIVEN_NAMES: &str = "Marie Claire";
const CITIZEN_BIRTHDATE: &str = "1980-07-30";
const CITIZEN_BIRTHPLACE: &str = "75056";

/// Documents delivered to her before the pages are put under load.
const LOAD_DOCUMENTS: usize = 50;
/// Size of each of them.
const LOAD_DOCUMENT_BYTES: u64 = 16 * KIB;
/// Concurrent clients (tasks on the client's single-threaded runtime).
const LOAD_CLIENTS: usize = 16;
/// How long each page is put under load.
const LOAD_DURATION: Duration = Duration::from_secs(10);
/// Upper bound on the requests of one client, whatever the speed.
const LOAD_MAX_REQUESTS_PER_CLIENT: usize = 200_000;
/// A request of the load generator that takes longer fails the scenario.
const LOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How the vault page marks each document.
const DOCUMENT_MARKER: &str = r#"class="document""#;

/// What a scenario's throughput is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Baseline {
    /// `bare age (in-process)`: age encryption alone.
    Encrypt,
    /// `bare age decrypt (in-process)`: age decryption alone.
    Decrypt,
}

impl Baseline {
    fn label(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
        }
    }
}

/// One line of the table.
struct Scenario {
    name: &'static str,
    /// Bytes handled; 0 for the scenarios measured in requests (pages under load).
    bytes: u64,
    /// `Some`: this scenario is that baseline, the others' throughput is divided by it.
    baseline: Option<Baseline>,
    /// The baseline this scenario's throughput is divided by (`None`: no ratio).
    ratio_to: Option<Baseline>,
    /// Whether the targets (ratio, memory growth) apply to it.
    check_targets: bool,
    /// Untimed setup, run before the CPU accounting starts (login, documents to read).
    prepare: Option<fn(&mut Bench, u64) -> Result<()>>,
    run: fn(&mut Bench, u64) -> Result<Measurement>,
}

/// The scenarios, in the order they run. To add one, write a
/// `fn(&mut Bench, u64) -> Result<Measurement>` and list it here.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "generator only",
        bytes: GIB,
        baseline: None,
        ratio_to: Some(Baseline::Encrypt),
        check_targets: false,
        prepare: None,
        run: generate_only,
    },
    Scenario {
        name: "bare age (in-process)",
        bytes: GIB,
        baseline: Some(Baseline::Encrypt),
        ratio_to: Some(Baseline::Encrypt),
        check_targets: false,
        prepare: None,
        run: bare_age,
    },
    Scenario {
        name: "age + SHA-256 of ciphertext (in-process)",
        bytes: GIB,
        baseline: None,
        ratio_to: Some(Baseline::Encrypt),
        check_targets: false,
        prepare: None,
        run: age_and_sha256,
    },
    Scenario {
        name: "bare age decrypt (in-process)",
        bytes: GIB,
        baseline: Some(Baseline::Decrypt),
        ratio_to: Some(Baseline::Decrypt),
        check_targets: false,
        prepare: Some(encrypt_in_memory),
        run: bare_age_decrypt,
    },
    Scenario {
        name: "upload, first request",
        bytes: MIB,
        baseline: None,
        ratio_to: Some(Baseline::Encrypt),
        check_targets: false,
        prepare: None,
        run: upload,
    },
    Scenario {
        name: "upload",
        bytes: GIB,
        baseline: None,
        ratio_to: Some(Baseline::Encrypt),
        check_targets: true,
        prepare: None,
        run: upload,
    },
    Scenario {
        name: "upload, smaller document",
        bytes: 256 * MIB,
        baseline: None,
        ratio_to: Some(Baseline::Encrypt),
        check_targets: false,
        prepare: None,
        run: upload,
    },
    Scenario {
        name: "download",
        bytes: GIB,
        baseline: None,
        ratio_to: Some(Baseline::Decrypt),
        check_targets: true,
        prepare: Some(prepare_download),
        run: download,
    },
    Scenario {
        name: "vault list under load",
        bytes: 0,
        baseline: None,
        ratio_to: None,
        check_targets: false,
        prepare: Some(prepare_vault_load),
        run: vault_under_load,
    },
    Scenario {
        name: "healthz under load",
        bytes: 0,
        baseline: None,
        ratio_to: None,
        check_targets: false,
        prepare: None,
        run: healthz_under_load,
    },
];

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; any other word filters scenarios by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wanted = |scenario: &Scenario| {
        filters.is_empty()
            || filters
                .iter()
                .any(|filter| scenario.name.contains(filter.as_str()))
    };
    // The wanted scenarios, and the baselines they are compared with.
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|scenario| {
            wanted(scenario)
                || scenario.baseline.is_some_and(|baseline| {
                    SCENARIOS
                        .iter()
                        .any(|other| wanted(other) && other.ratio_to == Some(baseline))
                })
        })
        .collect();

    let load_before = load_average();
    let mut bench = Bench::start()?;
    eprintln!(
        "server pid {} at {} (data dir {})",
        bench.server.pid(),
        bench.base_url,
        bench.server.data_dir().display()
    );
    let mut results = Vec::new();
    for scenario in selected {
        if let Some(prepare) = scenario.prepare {
            eprintln!("preparing: {}", scenario.name);
            prepare(&mut bench, scenario.bytes)
                .with_context(|| format!("preparing scenario {:?}", scenario.name))?;
        }
        if scenario.bytes == 0 {
            eprintln!(
                "running: {} ({LOAD_CLIENTS} clients, {} s)",
                scenario.name,
                LOAD_DURATION.as_secs()
            );
        } else {
            eprintln!(
                "running: {} ({})",
                scenario.name,
                format_bytes(scenario.bytes)
            );
        }
        let cpu = CpuProbe::start(bench.server.pid())?;
        let measurement = (scenario.run)(&mut bench, scenario.bytes)
            .with_context(|| format!("scenario {:?}", scenario.name))?;
        let cpu = cpu.finish()?;
        match &measurement.load {
            Some(load) => eprintln!(
                "  {} requests in {:.2} s, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                load.latencies.len(),
                measurement.elapsed.as_secs_f64(),
                load.requests_per_s(measurement.elapsed),
                millis(load.percentile(0.50)),
                millis(load.percentile(0.99))
            ),
            None => eprintln!(
                "  {:.2} s, {:.1} MB/s",
                measurement.elapsed.as_secs_f64(),
                measurement.mb_per_s()
            ),
        }
        results.push(Outcome {
            scenario,
            measurement,
            cpu,
        });
    }
    print_report(&results);
    println!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}.",
        load_average()
    );
    Ok(())
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// One scenario's line of the report.
struct Outcome<'a> {
    scenario: &'a Scenario,
    measurement: Measurement,
    cpu: CpuUse,
}

/// What one scenario measured.
struct Measurement {
    bytes: u64,
    elapsed: Duration,
    /// Only for scenarios that talk to the server.
    server: Option<ServerMemory>,
    /// Only for the pages under load.
    load: Option<LoadFigures>,
    /// Only for the download: when the answer's headers came (before them, the server
    /// reads the stored object once to check its SHA-256).
    headers_after: Option<Duration>,
}

impl Measurement {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Requests made by the load generator.
struct LoadFigures {
    clients: usize,
    /// Every request's latency (request sent to body read), sorted.
    latencies: Vec<Duration>,
    /// Body bytes of all the answers.
    answer_bytes: u64,
    /// Documents the vault page listed (counted once, before the load).
    documents_listed: Option<usize>,
}

impl LoadFigures {
    fn requests_per_s(&self, elapsed: Duration) -> f64 {
        self.latencies.len() as f64 / elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile (`share` in 0..=1) of the sorted latencies.
    fn percentile(&self, share: f64) -> Duration {
        let rank = (share * self.latencies.len() as f64).ceil() as usize;
        self.latencies
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Generating the bytes alone: shows the generator is not the bottleneck.
fn generate_only(_: &mut Bench, bytes: u64) -> Result<Measurement> {
    let mut generator = Generator::new(SEED, bytes);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut checksum = 0u8;
    let started = Instant::now();
    while let Some(len) = generator.fill(&mut buffer) {
        checksum ^= buffer[len - 1];
    }
    let elapsed = started.elapsed();
    std::hint::black_box(checksum);
    Ok(Measurement {
        bytes,
        elapsed,
        server: None,
        load: None,
        headers_after: None,
    })
}

/// The reference: the same bytes through the age crate alone, into a sink.
fn bare_age(_: &mut Bench, bytes: u64) -> Result<Measurement> {
    let recipient = age::x25519::Identity::generate().to_public();
    let mut generator = Generator::new(SEED, bytes);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let started = Instant::now();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut writer = encryptor.wrap_output(std::io::sink())?;
    while let Some(len) = generator.fill(&mut buffer) {
        writer.write_all(&buffer[..len])?;
    }
    writer.finish()?;
    Ok(Measurement {
        bytes,
        elapsed: started.elapsed(),
        server: None,
        load: None,
        headers_after: None,
    })
}

/// The server's per-byte CPU work minus HTTP and storage, on one thread: age, then
/// SHA-256 of the ciphertext (as `PendingBlob::write` does). An upper bound for an
/// upload handled on a single thread.
fn age_and_sha256(_: &mut Bench, bytes: u64) -> Result<Measurement> {
    let recipient = age::x25519::Identity::generate().to_public();
    let mut generator = Generator::new(SEED, bytes);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let started = Instant::now();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut writer = encryptor.wrap_output(HashingSink(Sha256::new()))?;
    while let Some(len) = generator.fill(&mut buffer) {
        writer.write_all(&buffer[..len])?;
    }
    let HashingSink(hasher) = writer.finish()?;
    let elapsed = started.elapsed();
    std::hint::black_box(hasher.finalize());
    Ok(Measurement {
        bytes,
        elapsed,
        server: None,
        load: None,
        headers_after: None,
    })
}

/// A sink that only hashes what is written to it.
struct HashingSink(Sha256);

impl std::io::Write for HashingSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One document of `bytes` generated bytes through `POST /api/v1/documents`.
fn upload(bench: &mut Bench, bytes: u64) -> Result<Measurement> {
    let probe = MemoryProbe::start(bench.server.pid())?;
    let started = Instant::now();
    let answer = bench
        .runtime
        .block_on(bench.post_document("Benchmark", SEED, bytes));
    let elapsed = started.elapsed();
    let server = probe.finish()?;
    let id = bench.accept_delivery(answer?, bytes)?;
    bench.uploaded.insert(bytes, id);
    Ok(Measurement {
        bytes,
        elapsed,
        server: Some(server),
        load: None,
        headers_after: None,
    })
}

/// The document's recipient: the demonstration citizen, by pivot identity.
fn delivery_metadata(title: &str) -> String {
    serde_json::json!({
        "recipient": {"pivot": {
            "family_name": CITIZEN_FAMILY_NAME,
            "given_names": CITIZEN_GIVEN_NAMES,
            "birthdate": CITIZEN_BIRTHDATE,
            "birthplace": CITIZEN_BIRTHPLACE,
        }},
        "title": title,
        "category": "benchmark",
    })
    .to_string()
}

/// `metadata` first, then `file`, streamed from the generator with a known length
/// (so the request carries a `Content-Length`).
fn delivery_form(title: &str, seed: u64, bytes: u64) -> Result<Form> {
    let chunks = futures::stream::iter(
        Generator::new(seed, bytes).map(Ok::<Bytes, std::convert::Infallible>),
    );
    let file = Part::stream_with_length(Body::wrap_stream(chunks), bytes)
        .file_name("benchmark.bin")
        .mime_str("application/octet-stream")?;
    let metadata = Part::text(delivery_metadata(title)).mime_str("application/json")?;
    Ok(Form::new().part("metadata", metadata).part("file", file))
}

/// Untimed: encrypts 1 GiB of generated bytes into memory for the decrypt baseline.
fn encrypt_in_memory(bench: &mut Bench, bytes: u64) -> Result<()> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let capacity = usize::try_from(bytes + bytes / 1024 + MIB)?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut writer = encryptor.wrap_output(Vec::with_capacity(capacity))?;
    let mut generator = Generator::new(SEED, bytes);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    while let Some(len) = generator.fill(&mut buffer) {
        writer.write_all(&buffer[..len])?;
    }
    bench.encrypted = Some((identity, writer.finish()?));
    Ok(())
}

/// The download's reference: age decryption alone, from memory into a sink.
fn bare_age_decrypt(bench: &mut Bench, bytes: u64) -> Result<Measurement> {
    let (identity, ciphertext) = bench
        .encrypted
        .take()
        .context("the ciphertext was not prepared")?;
    let started = Instant::now();
    let decryptor = age::Decryptor::new(ciphertext.as_slice())?;
    let mut reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))?;
    let copied = std::io::copy(&mut reader, &mut std::io::sink())?;
    let elapsed = started.elapsed();
    ensure!(
        copied == bytes,
        "decrypted {copied} bytes, expected {bytes}"
    );
    drop(ciphertext);
    Ok(Measurement {
        bytes,
        elapsed,
        server: None,
        load: None,
        headers_after: None,
    })
}

/// Untimed: the citizen logs in, and the document to download exists (the `upload`
/// scenario's, or one delivered now if that scenario did not run).
fn prepare_download(bench: &mut Bench, bytes: u64) -> Result<()> {
    bench.citizen()?;
    if !bench.uploaded.contains_key(&bytes) {
        eprintln!("  (delivering a {} document first)", format_bytes(bytes));
        let id = bench.deliver("Benchmark", SEED, bytes)?;
        bench.uploaded.insert(bytes, id);
    }
    Ok(())
}

/// The citizen downloads the document from her vault: `GET /vault/documents/{id}`,
/// the whole body read and compared with the generator's bytes.
fn download(bench: &mut Bench, bytes: u64) -> Result<Measurement> {
    let citizen = bench.citizen()?;
    let id = bench
        .uploaded
        .get(&bytes)
        .context("no document of that size was delivered")?;
    let url = format!("{}/vault/documents/{id}", bench.base_url);
    let mut expected = ExpectedBytes::new(SEED, bytes);
    let probe = MemoryProbe::start(bench.server.pid())?;
    let started = Instant::now();
    let result = bench.runtime.block_on(async {
        let mut response = citizen.get(&url).send().await?;
        let headers_after = started.elapsed();
        let status = response.status();
        if status != StatusCode::OK {
            bail!("expected 200, got {status}: {}", response.text().await?);
        }
        ensure!(
            response.content_length() == Some(bytes),
            "Content-Length {:?}, expected {bytes}",
            response.content_length()
        );
        while let Some(chunk) = response.chunk().await? {
            expected.check(&chunk)?;
        }
        anyhow::Ok(headers_after)
    });
    let elapsed = started.elapsed();
    let server = probe.finish()?;
    let headers_after = result.with_context(|| bench.server.log_tail())?;
    expected.finish()?;
    Ok(Measurement {
        bytes,
        elapsed,
        server: Some(server),
        load: None,
        headers_after: Some(headers_after),
    })
}

/// Compares a body, received in chunks of any size, with a fresh generator's bytes.
struct ExpectedBytes {
    generator: Generator,
    buffer: Vec<u8>,
    filled: usize,
    position: usize,
    received: u64,
}

impl ExpectedBytes {
    fn new(seed: u64, bytes: u64) -> Self {
        Self {
            generator: Generator::new(seed, bytes),
            buffer: vec![0u8; CHUNK_BYTES],
            filled: 0,
            position: 0,
            received: 0,
        }
    }

    fn check(&mut self, mut received: &[u8]) -> Result<()> {
        while !received.is_empty() {
            if self.position == self.filled {
                self.filled = self
                    .generator
                    .fill(&mut self.buffer)
                    .with_context(|| format!("more than the {} bytes sent", self.received))?;
                self.position = 0;
            }
            let len = (self.filled - self.position).min(received.len());
            ensure!(
                self.buffer[self.position..self.position + len] == received[..len],
                "the downloaded bytes differ from the uploaded ones near offset {}",
                self.received
            );
            self.position += len;
            self.received += len as u64;
            received = &received[len..];
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let missing = self.generator.remaining + (self.filled - self.position) as u64;
        ensure!(
            missing == 0,
            "the download stopped after {} bytes, {missing} short",
            self.received
        );
        Ok(())
    }
}

/// Untimed: the citizen logs in, receives [`LOAD_DOCUMENTS`] small documents (once),
/// and her vault page lists every document delivered to her.
fn prepare_vault_load(bench: &mut Bench, _: u64) -> Result<()> {
    let citizen = bench.citizen()?;
    if !bench.load_documents_delivered {
        for number in 1..=LOAD_DOCUMENTS {
            let title = format!("Benchmark document {number:02}");
            bench.deliver(&title, SEED ^ number as u64, LOAD_DOCUMENT_BYTES)?;
        }
        bench.load_documents_delivered = true;
    }
    let url = format!("{}/vault", bench.base_url);
    let page = bench.runtime.block_on(async {
        let response = citizen.get(&url).send().await?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET /vault answered {}",
            response.status()
        );
        anyhow::Ok(response.text().await?)
    })?;
    let listed = page.matches(DOCUMENT_MARKER).count();
    ensure!(
        listed == bench.delivered_to_citizen && listed >= LOAD_DOCUMENTS,
        "the vault lists {listed} documents, {} were delivered",
        bench.delivered_to_citizen
    );
    bench.documents_listed = Some(listed);
    Ok(())
}

/// [`LOAD_CLIENTS`] concurrent clients loop on the citizen's `GET /vault`.
fn vault_under_load(bench: &mut Bench, _: u64) -> Result<Measurement> {
    let citizen = bench.citizen()?;
    let mut measurement = put_under_load(bench, &citizen, "/vault")?;
    if let Some(load) = &mut measurement.load {
        load.documents_listed = bench.documents_listed;
    }
    Ok(measurement)
}

/// [`LOAD_CLIENTS`] concurrent clients loop on `GET /healthz`.
fn healthz_under_load(bench: &mut Bench, _: u64) -> Result<Measurement> {
    let client = bench.client.clone();
    put_under_load(bench, &client, "/healthz")
}

/// The load generator: [`LOAD_CLIENTS`] tasks on the client's runtime, each looping on
/// `GET path` for [`LOAD_DURATION`]; every answer must be 200.
fn put_under_load(bench: &Bench, client: &reqwest::Client, path: &str) -> Result<Measurement> {
    let url = format!("{}{path}", bench.base_url);
    let probe = MemoryProbe::start(bench.server.pid())?;
    let started = Instant::now();
    let deadline = started + LOAD_DURATION;
    let result = bench.runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..LOAD_CLIENTS {
            tasks.spawn(load_client(client.clone(), url.clone(), deadline));
        }
        let mut latencies = Vec::new();
        let mut answer_bytes = 0;
        while let Some(finished) = tasks.join_next().await {
            let (client_latencies, client_bytes) = finished??;
            latencies.extend(client_latencies);
            answer_bytes += client_bytes;
        }
        anyhow::Ok((latencies, answer_bytes))
    });
    let elapsed = started.elapsed();
    let server = probe.finish()?;
    let (mut latencies, answer_bytes) = result.with_context(|| bench.server.log_tail())?;
    latencies.sort_unstable();
    Ok(Measurement {
        bytes: 0,
        elapsed,
        server: Some(server),
        load: Some(LoadFigures {
            clients: LOAD_CLIENTS,
            latencies,
            answer_bytes,
            documents_listed: None,
        }),
        headers_after: None,
    })
}

/// One client of the load generator: its latencies and the bytes it received.
async fn load_client(
    client: reqwest::Client,
    url: String,
    deadline: Instant,
) -> Result<(Vec<Duration>, u64)> {
    let mut latencies = Vec::new();
    let mut bytes = 0;
    while Instant::now() < deadline && latencies.len() < LOAD_MAX_REQUESTS_PER_CLIENT {
        let sent = Instant::now();
        let response = client
            .get(&url)
            .timeout(LOAD_REQUEST_TIMEOUT)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        latencies.push(sent.elapsed());
        ensure!(status == StatusCode::OK, "GET {url} answered {status}");
        bytes += body.len() as u64;
    }
    Ok((latencies, bytes))
}

// ---------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (SplitMix64), in chunks of [`CHUNK_BYTES`]; holds
/// nothing but its state, whatever the length.
struct Generator {
    state: u64,
    remaining: u64,
}

impl Generator {
    fn new(seed: u64, bytes: u64) -> Self {
        Self {
            state: seed,
            remaining: bytes,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills the start of `buffer` with the next chunk; returns its length, or `None`
    /// once everything has been produced.
    fn fill(&mut self, buffer: &mut [u8]) -> Option<usize> {
        let len = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        if len == 0 {
            return None;
        }
        let chunk = &mut buffer[..len];
        let mut words = chunk.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
        self.remaining -= len as u64;
        Some(len)
    }
}

/// Fresh 64 KiB buffers, for the HTTP body.
impl Iterator for Generator {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let len = self.fill(&mut buffer)?;
        buffer.truncate(len);
        Some(Bytes::from(buffer))
    }
}

// ---------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------

/// Everything the scenarios share.
struct Bench {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    server: ServerGuard,
    base_url: String,
    token: String,
    /// The citizen's browser once logged in (cookies kept, redirects not followed).
    citizen: Option<reqwest::Client>,
    /// Documents delivered to the citizen so far (what her vault page should list).
    delivered_to_citizen: usize,
    /// The last `upload` of each size: the id of the document.
    uploaded: HashMap<u64, String>,
    /// Whether the [`LOAD_DOCUMENTS`] small documents were delivered.
    load_documents_delivered: bool,
    /// Documents listed by the vault page before it was put under load.
    documents_listed: Option<usize>,
    /// The decrypt baseline's input: an identity and 1 GiB it can decrypt.
    encrypted: Option<(age::x25519::Identity, Vec<u8>)>,
}

impl Bench {
    /// Starts the server, waits for `/healthz`, creates the agent and its token.
    fn start() -> Result<Self> {
        // One thread for the client, so it takes as little CPU from the server as it can.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder().build()?;
        let data_dir = tempfile::Builder::new()
            .prefix("eguichet-bench-")
            .tempdir()?;
        let port = free_port()?;
        let env = ServerEnv {
            data_dir: data_dir.path().to_owned(),
            listen: format!("127.0.0.1:{port}"),
        };
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let child = env
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the eguichet binary")?;
        let mut server = ServerGuard {
            child,
            log_path,
            data_dir,
        };
        let base_url = format!("http://{}", env.listen);
        runtime.block_on(wait_until_healthy(&client, &base_url, &mut server))?;

        env.run(&["agent", "create", "--email", AGENT_EMAIL, "--role", "agent"])?;
        let stdout = env.run(&["agent", "token", "--email", AGENT_EMAIL])?;
        let token = stdout.trim().to_owned();
        ensure!(
            !token.is_empty() && !token.contains('\n'),
            "unexpected token output: {stdout:?}"
        );
        Ok(Self {
            runtime,
            client,
            server,
            base_url,
            token,
            citizen: None,
            delivered_to_citizen: 0,
            uploaded: HashMap::new(),
            load_documents_delivered: false,
            documents_listed: None,
            encrypted: None,
        })
    }

    /// `POST /api/v1/documents` of `bytes` generated bytes to the citizen; the status
    /// and body of the answer.
    async fn post_document(
        &self,
        title: &str,
        seed: u64,
        bytes: u64,
    ) -> Result<(StatusCode, String)> {
        let response = self
            .client
            .post(format!("{}/api/v1/documents", self.base_url))
            .bearer_auth(&self.token)
            .multipart(delivery_form(title, seed, bytes)?)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// Checks a delivery's answer (201, then the stored size); returns the id.
    fn accept_delivery(
        &mut self,
        (status, body): (StatusCode, String),
        bytes: u64,
    ) -> Result<String> {
        ensure!(
            status == StatusCode::CREATED,
            "expected 201, got {status}: {body}\n{}",
            self.server.log_tail()
        );
        let delivered: serde_json::Value = serde_json::from_str(&body)?;
        let id = delivered["id"]
            .as_str()
            .context("no id in the answer")?
            .to_owned();
        self.check_stored(&id, bytes)?;
        self.delivered_to_citizen += 1;
        Ok(id)
    }

    /// Delivers a document to the citizen (untimed); returns its id.
    fn deliver(&mut self, title: &str, seed: u64, bytes: u64) -> Result<String> {
        let answer = self
            .runtime
            .block_on(self.post_document(title, seed, bytes))?;
        self.accept_delivery(answer, bytes)
    }

    /// The citizen's logged-in client; logs her in at the demo provider the first time.
    fn citizen(&mut self) -> Result<reqwest::Client> {
        if let Some(client) = &self.citizen {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        self.runtime
            .block_on(log_in(&client, &self.base_url, CITIZEN_LOGIN))
            .with_context(|| format!("logging {CITIZEN_LOGIN} in\n{}", self.server.log_tail()))?;
        self.citizen = Some(client.clone());
        Ok(client)
    }

    /// Asks the server about a delivered document: stored, with the right size.
    fn check_stored(&self, id: &str, bytes: u64) -> Result<()> {
        let status: serde_json::Value = self.runtime.block_on(async {
            self.client
                .get(format!("{}/api/v1/documents/{id}", self.base_url))
                .bearer_auth(&self.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        })?;
        ensure!(
            status["size"].as_u64() == Some(bytes),
            "document {id} stored with an unexpected status: {status}"
        );
        Ok(())
    }
}

/// Logs a demonstration citizen in, as a browser would (see `tests/login.rs`):
/// `/login/demo` → the provider's form → its answer → the callback → `/vault`.
async fn log_in(client: &reqwest::Client, base_url: &str, login: &str) -> Result<()> {
    let absolute = |location: String| {
        if location.starts_with("http") {
            location
        } else {
            format!("{base_url}{location}")
        }
    };
    let start = client.get(format!("{base_url}/login/demo")).send().await?;
    ensure!(
        start.status() == StatusCode::SEE_OTHER,
        "GET /login/demo answered {}",
        start.status()
    );
    let page = client.get(absolute(location(&start)?)).send().await?;
    ensure!(
        page.status() == StatusCode::OK,
        "the provider's page answered {}",
        page.status()
    );
    let html = page.text().await?;
    let form = html
        .split("<form")
        .nth(1)
        .context("no form on the provider's page")?;
    let action = attribute(form, "action").context("no action on the provider's form")?;
    let mut fields: Vec<(String, String)> = html
        .split("<input")
        .skip(1)
        .filter(|tag| tag.contains(r#"type="hidden""#))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect();
    fields.push(("citizen".to_owned(), login.to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let chosen = client.post(absolute(action)).form(&fields).send().await?;
    ensure!(
        chosen.status() == StatusCode::SEE_OTHER,
        "the provider's form answered {}",
        chosen.status()
    );
    let callback = location(&chosen)?;
    ensure!(
        callback.contains("/login/demo/callback?"),
        "unexpected redirect from the provider: {callback}"
    );
    let landed = client.get(absolute(callback)).send().await?;
    ensure!(
        landed.status() == StatusCode::SEE_OTHER && location(&landed)? == "/vault",
        "the callback answered {} to {:?}",
        landed.status(),
        landed.headers().get(reqwest::header::LOCATION)
    );
    Ok(())
}

fn location(response: &reqwest::Response) -> Result<String> {
    Ok(response
        .headers()
        .get(reqwest::header::LOCATION)
        .context("no Location header")?
        .to_str()?
        .to_owned())
}

/// An attribute's value in an HTML tag, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&#x27;", "'")
            .replace("&#x2F;", "/")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// The configuration shared by the server and the CLI calls.
struct ServerEnv {
    data_dir: PathBuf,
    listen: String,
}

impl ServerEnv {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eguichet"));
        // Only the benchmark's configuration: nothing inherited from the shell.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EGUICHET_") {
                command.env_remove(name);
            }
        }
        command
            .env("EGUICHET_DATA_DIR", &self.data_dir)
            .env("EGUICHET_LISTEN", &self.listen)
            .env(
                "EGUICHET_LIMITS__MAX_DOCUMENT_BYTES",
                MAX_DOCUMENT_BYTES.to_string(),
            );
        command
    }

    /// Runs one CLI command to completion; returns its standard output.
    fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.command().args(args).stdin(Stdio::null()).output()?;
        ensure!(
            output.status.success(),
            "eguichet {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }
}

/// The server process; killed when dropped (also when a scenario panics), before its
/// data dir is removed.
struct ServerGuard {
    child: Child,
    log_path: PathBuf,
    // Dropped after `drop` below has stopped the server.
    data_dir: tempfile::TempDir,
}

impl ServerGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The end of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- server log (last lines) ---\n{tail}")
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!(
                "could not stop the server (pid {}): {error}",
                self.child.id()
            );
        }
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_until_healthy(
    client: &reqwest::Client,
    base_url: &str,
    server: &mut ServerGuard,
) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("the server exited ({status})\n{}", server.log_tail());
        }
        let answer = client.get(format!("{base_url}/healthz")).send().await;
        if answer.is_ok_and(|response| response.status() == StatusCode::OK) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no answer from {base_url}/healthz after {STARTUP_TIMEOUT:?}\n{}",
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------
// Memory of the server, CPU of everyone
// ---------------------------------------------------------------------------------

/// The server's memory around one scenario, in KiB.
struct ServerMemory {
    /// VmRSS just before the scenario.
    idle_kib: u64,
    /// VmHWM after it (the peak since the reset, or since start if reset failed).
    peak_kib: u64,
    /// Whether the peak was reset before the scenario (`clear_refs`).
    peak_was_reset: bool,
    /// Largest VmRSS seen while sampling.
    sampled_max_kib: u64,
}

impl ServerMemory {
    fn growth_mib(&self) -> f64 {
        kib_to_mib(self.peak_kib.max(self.sampled_max_kib)) - kib_to_mib(self.idle_kib)
    }
}

/// Watches a process during a scenario: idle VmRSS, then VmRSS every
/// [`SAMPLE_EVERY`] on a thread, then VmHWM.
struct MemoryProbe {
    pid: u32,
    idle_kib: u64,
    peak_was_reset: bool,
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<Result<u64>>,
}

impl MemoryProbe {
    fn start(pid: u32) -> Result<Self> {
        let idle_kib = proc_status(pid)?.rss_kib;
        // Writing 5 to clear_refs resets VmHWM to the current VmRSS (Linux ≥ 4.0).
        let peak_was_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> Result<u64> {
                let mut max = 0;
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(proc_status(pid)?.rss_kib);
                    std::thread::sleep(SAMPLE_EVERY);
                }
                Ok(max.max(proc_status(pid)?.rss_kib))
            })
        };
        Ok(Self {
            pid,
            idle_kib,
            peak_was_reset,
            stop,
            sampler,
        })
    }

    fn finish(self) -> Result<ServerMemory> {
        self.stop.store(true, Ordering::Relaxed);
        let sampled_max_kib = self
            .sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))??;
        let status = proc_status(self.pid)?;
        Ok(ServerMemory {
            idle_kib: self.idle_kib,
            peak_kib: status.hwm_kib,
            peak_was_reset: self.peak_was_reset,
            sampled_max_kib,
        })
    }
}

struct ProcStatus {
    rss_kib: u64,
    hwm_kib: u64,
}

/// VmRSS and VmHWM from `/proc/<pid>/status`.
fn proc_status(pid: u32) -> Result<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (has the server died?)"))?;
    let fields: HashMap<&str, u64> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let kib = value.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((name, kib))
        })
        .collect();
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(ProcStatus {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
    })
}

/// CPU time used while a scenario ran. With two cores, the client and anything else
/// running take CPU from the server, so the report shows all three.
struct CpuUse {
    server: Duration,
    /// This benchmark process (the HTTP client, or the in-process scenario itself).
    client: Duration,
    /// Every other process on the machine (a build, say): when large, the run is skewed.
    other: Duration,
}

struct CpuProbe {
    server_pid: u32,
    server: Duration,
    client: Duration,
    machine: Duration,
}

impl CpuProbe {
    fn start(server_pid: u32) -> Result<Self> {
        Ok(Self {
            server_pid,
            server: process_cpu_time(&server_pid.to_string())?,
            client: process_cpu_time("self")?,
            machine: machine_busy_time()?,
        })
    }

    fn finish(self) -> Result<CpuUse> {
        let server = process_cpu_time(&self.server_pid.to_string())?.saturating_sub(self.server);
        let client = process_cpu_time("self")?.saturating_sub(self.client);
        let machine = machine_busy_time()?.saturating_sub(self.machine);
        Ok(CpuUse {
            server,
            client,
            other: machine.saturating_sub(server + client),
        })
    }
}

/// Clock ticks per second in `/proc` (USER_HZ, fixed at 100 by the Linux ABI).
const TICKS_PER_SECOND: u64 = 100;

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1000 / TICKS_PER_SECOND)
}

/// utime + stime of a whole process (all its threads), from `/proc/<pid>/stat`.
fn process_cpu_time(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space separated.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5); `fields[0]` is field 3 (state).
    let field = |number: usize| -> Result<u64> {
        Ok(fields
            .get(number - 3)
            .context("short /proc/<pid>/stat")?
            .parse()?)
    };
    Ok(ticks(field(14)? + field(15)?))
}

/// Busy time of all CPUs together, from the `cpu` line of `/proc/stat` (user, nice,
/// system, irq, softirq, steal; guest time is already counted in user).
fn machine_busy_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&index| fields.get(index))
        .sum();
    Ok(ticks(busy))
}

// ---------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------

fn print_report(results: &[Outcome<'_>]) {
    let baselines: HashMap<Baseline, f64> = results
        .iter()
        .filter_map(|outcome| {
            let baseline = outcome.scenario.baseline?;
            Some((baseline, outcome.measurement.mb_per_s()))
        })
        .collect();
    // This scenario's throughput over its baseline's, and the baseline.
    let ratio = |outcome: &Outcome<'_>| {
        let baseline = outcome.scenario.ratio_to?;
        let mb_per_s = baselines.get(&baseline)?;
        Some((outcome.measurement.mb_per_s() / mb_per_s, baseline))
    };
    let headers = [
        "scenario",
        "bytes",
        "seconds",
        "MB/s",
        "ratio to bare age",
        "server CPU s",
        "client CPU s",
        "other CPU s",
        "idle RSS MiB",
        "peak RSS MiB (VmHWM)",
        "max sampled RSS MiB",
        "peak − idle MiB",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|outcome| {
            let Outcome {
                scenario,
                measurement,
                cpu,
            } = outcome;
            let ratio = ratio(outcome).map_or("—".to_owned(), |(ratio, baseline)| {
                format!("{ratio:.2} ({})", baseline.label())
            });
            let (bytes, mb_per_s) = if measurement.load.is_some() {
                ("—".to_owned(), "—".to_owned())
            } else {
                (
                    measurement.bytes.to_string(),
                    format!("{:.1}", measurement.mb_per_s()),
                )
            };
            let mut row = vec![
                scenario.name.to_owned(),
                bytes,
                format!("{:.2}", measurement.elapsed.as_secs_f64()),
                mb_per_s,
                ratio,
                format!("{:.2}", cpu.server.as_secs_f64()),
                format!("{:.2}", cpu.client.as_secs_f64()),
                format!("{:.2}", cpu.other.as_secs_f64()),
            ];
            match &measurement.server {
                Some(server) => row.extend([
                    format!("{:.1}", kib_to_mib(server.idle_kib)),
                    format!(
                        "{:.1}{}",
                        kib_to_mib(server.peak_kib),
                        if server.peak_was_reset {
                            ""
                        } else {
                            " (since start)"
                        }
                    ),
                    format!("{:.1}", kib_to_mib(server.sampled_max_kib)),
                    format!("{:.1}", server.growth_mib()),
                ]),
                None => row.extend(std::iter::repeat_n("—".to_owned(), 4)),
            }
            row
        })
        .collect();
    println!();
    println!("{}", markdown_table(&headers, &rows));
    println!(
        "MB/s = 10^6 bytes per second; RSS in MiB. The ratio divides MB/s by the baseline named \
         in brackets: `bare age (in-process)` (encrypt) or `bare age decrypt (in-process)` \
         (decrypt). Targets: ratio ≥ {TARGET_RATIO}, peak − idle < {TARGET_GROWTH_MIB} MiB \
         (peak is the larger of VmHWM and the sampled max)."
    );
    for outcome in results {
        let measurement = &outcome.measurement;
        if let Some(headers_after) = measurement.headers_after {
            let body = measurement.elapsed.saturating_sub(headers_after);
            println!(
                "- {}: headers after {:.2} s (the server's SHA-256 check of the stored object), \
                 then the body in {:.2} s ({:.1} MB/s).",
                outcome.scenario.name,
                headers_after.as_secs_f64(),
                body.as_secs_f64(),
                measurement.bytes as f64 / 1e6 / body.as_secs_f64()
            );
        }
    }
    print_load_report(results);
    for outcome in results {
        let other = outcome.cpu.other.as_secs_f64();
        if other > SKEWED_OTHER_CPU * outcome.measurement.elapsed.as_secs_f64() {
            println!(
                "- warning: other processes used {other:.2} CPU s during {:?}; its figures are skewed, \
                 run again on a quiet machine",
                outcome.scenario.name
            );
        }
    }
    for outcome in results {
        let Some(server) = outcome
            .measurement
            .server
            .as_ref()
            .filter(|_| outcome.scenario.check_targets)
        else {
            continue;
        };
        let mut verdicts = Vec::new();
        if let Some((ratio, baseline)) = ratio(outcome) {
            verdicts.push(format!(
                "ratio to bare age {} {ratio:.2} {}",
                baseline.label(),
                if ratio >= TARGET_RATIO {
                    "ok"
                } else {
                    "BELOW TARGET"
                }
            ));
        }
        let growth = server.growth_mib();
        verdicts.push(format!(
            "memory growth {growth:.1} MiB {}",
            if growth < TARGET_GROWTH_MIB {
                "ok"
            } else {
                "ABOVE TARGET"
            }
        ));
        println!(
            "- {} ({}): {}",
            outcome.scenario.name,
            format_bytes(outcome.measurement.bytes),
            verdicts.join(", ")
        );
    }
}

/// The second table: requests per second and latency of the pages under load.
fn print_load_report(results: &[Outcome<'_>]) {
    let headers = [
        "page under load",
        "clients",
        "seconds",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "bytes per answer",
        "documents listed",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .filter_map(|outcome| {
            let load = outcome.measurement.load.as_ref()?;
            let elapsed = outcome.measurement.elapsed;
            let requests = load.latencies.len();
            Some(vec![
                outcome.scenario.name.to_owned(),
                load.clients.to_string(),
                format!("{:.2}", elapsed.as_secs_f64()),
                requests.to_string(),
                format!("{:.0}", load.requests_per_s(elapsed)),
                format!("{:.2}", millis(load.percentile(0.50))),
                format!("{:.2}", millis(load.percentile(0.99))),
                format!("{:.2}", millis(load.percentile(1.0))),
                (load.answer_bytes / requests.max(1) as u64).to_string(),
                load.documents_listed
                    .map_or("—".to_owned(), |listed| listed.to_string()),
            ])
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!("Pages under load:");
    println!();
    println!("{}", markdown_table(&headers, &rows));
    println!(
        "Latency = request sent to body read, on the client's single thread (it includes \
         the client's own queueing). Every answer was 200."
    );
}

/// A markdown table with aligned columns.
fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = markdown_row(headers.iter().copied(), &widths);
    table.push_str("\n|");
    for width in &widths {
        let _ = write!(table, "{}|", "-".repeat(width + 2));
    }
    for row in rows {
        table.push('\n');
        table.push_str(&markdown_row(row.iter().map(String::as_str), &widths));
    }
    table
}

fn markdown_row<'a>(cells: impl Iterator<Item = &'a str>, widths: &[usize]) -> String {
    let mut line = String::from("|");
    for (cell, width) in cells.zip(widths) {
        let pad = width.saturating_sub(cell.chars().count());
        let _ = write!(line, " {cell}{} |", " ".repeat(pad));
    }
    line
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn format_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}
