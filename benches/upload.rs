//! Upload benchmark: throughput and server memory of `POST /api/v1/documents`.
//!
//! Runs the release `eguichet` binary as a separate process (temporary data dir, local
//! object store, SQLite), creates an agent and an API token with the same binary, then
//! runs the scenarios of [`SCENARIOS`] in order and prints one markdown table.
//!
//! ```text
//! CARGO_TARGET_DIR=/root/.cache/eguichet-bench-target cargo bench --bench upload
//! CARGO_TARGET_DIR=/root/.cache/eguichet-bench-target cargo bench --bench upload -- age
//! ```
//!
//! Extra arguments select scenarios whose name contains one of them (the baseline is
//! always run, so ratios can be computed). See `benches/README.md`.

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
const METADATA: &str =
    r#"{"recipient":{"nrn":"85.07.30-033.28"},"title":"Benchmark","category":"benchmark"}"#;

/// One line of the table.
struct Scenario {
    name: &'static str,
    bytes: u64,
    /// The scenario the others' throughput is divided by.
    baseline: bool,
    /// Whether the targets (ratio, memory growth) apply to it.
    check_targets: bool,
    run: fn(&mut Bench, u64) -> Result<Measurement>,
}

/// The scenarios, in the order they run. To add one, write a
/// `fn(&mut Bench, u64) -> Result<Measurement>` and list it here.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "generator only",
        bytes: GIB,
        baseline: false,
        check_targets: false,
        run: generate_only,
    },
    Scenario {
        name: "bare age (in-process)",
        bytes: GIB,
        baseline: true,
        check_targets: false,
        run: bare_age,
    },
    Scenario {
        name: "age + SHA-256 of ciphertext (in-process)",
        bytes: GIB,
        baseline: false,
        check_targets: false,
        run: age_and_sha256,
    },
    Scenario {
        name: "upload, first request",
        bytes: MIB,
        baseline: false,
        check_targets: false,
        run: upload,
    },
    Scenario {
        name: "upload",
        bytes: GIB,
        baseline: false,
        check_targets: true,
        run: upload,
    },
    Scenario {
        name: "upload, smaller document",
        bytes: 256 * MIB,
        baseline: false,
        check_targets: false,
        run: upload,
    },
];

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; any other word filters scenarios by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|scenario| {
            scenario.baseline
                || filters.is_empty()
                || filters
                    .iter()
                    .any(|filter| scenario.name.contains(filter.as_str()))
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
        eprintln!(
            "running: {} ({})",
            scenario.name,
            format_bytes(scenario.bytes)
        );
        let cpu = CpuProbe::start(bench.server.pid())?;
        let measurement = (scenario.run)(&mut bench, scenario.bytes)
            .with_context(|| format!("scenario {:?}", scenario.name))?;
        let cpu = cpu.finish()?;
        eprintln!(
            "  {:.2} s, {:.1} MB/s",
            measurement.elapsed.as_secs_f64(),
            measurement.mb_per_s()
        );
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
}

impl Measurement {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
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
    let response = bench.runtime.block_on(async {
        let response = bench
            .client
            .post(format!("{}/api/v1/documents", bench.base_url))
            .bearer_auth(&bench.token)
            .multipart(delivery_form(bytes)?)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::Ok((status, body))
    });
    let elapsed = started.elapsed();
    let server = probe.finish()?;
    let (status, body) = response?;
    ensure!(
        status == StatusCode::CREATED,
        "expected 201, got {status}: {body}\n{}",
        bench.server.log_tail()
    );
    let delivered: serde_json::Value = serde_json::from_str(&body)?;
    let id = delivered["id"]
        .as_str()
        .context("no id in the answer")?
        .to_owned();
    bench.check_stored(&id, bytes)?;
    Ok(Measurement {
        bytes,
        elapsed,
        server: Some(server),
    })
}

/// `metadata` first, then `file`, streamed from the generator with a known length
/// (so the request carries a `Content-Length`).
fn delivery_form(bytes: u64) -> Result<Form> {
    let chunks = futures::stream::iter(
        Generator::new(SEED, bytes).map(Ok::<Bytes, std::convert::Infallible>),
    );
    let file = Part::stream_with_length(Body::wrap_stream(chunks), bytes)
        .file_name("benchmark.bin")
        .mime_str("application/octet-stream")?;
    let metadata = Part::text(METADATA).mime_str("application/json")?;
    Ok(Form::new().part("metadata", metadata).part("file", file))
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
        })
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
    let baseline = results
        .iter()
        .find(|outcome| outcome.scenario.baseline)
        .map(|outcome| outcome.measurement.mb_per_s());
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
        .map(
            |Outcome {
                 scenario,
                 measurement,
                 cpu,
             }| {
                let ratio = baseline.map_or("—".to_owned(), |baseline| {
                    format!("{:.2}", measurement.mb_per_s() / baseline)
                });
                let mut row = vec![
                    scenario.name.to_owned(),
                    measurement.bytes.to_string(),
                    format!("{:.2}", measurement.elapsed.as_secs_f64()),
                    format!("{:.1}", measurement.mb_per_s()),
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
            },
        )
        .collect();
    println!();
    println!("{}", markdown_table(&headers, &rows));
    println!(
        "MB/s = 10^6 bytes per second; RSS in MiB. Targets: ratio to bare age ≥ {TARGET_RATIO}, \
         peak − idle < {TARGET_GROWTH_MIB} MiB (peak is the larger of VmHWM and the sampled max)."
    );
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
    for Outcome {
        scenario,
        measurement,
        ..
    } in results
    {
        let Some(server) = measurement
            .server
            .as_ref()
            .filter(|_| scenario.check_targets)
        else {
            continue;
        };
        let mut verdicts = Vec::new();
        if let Some(baseline) = baseline {
            let ratio = measurement.mb_per_s() / baseline;
            verdicts.push(format!(
                "ratio {ratio:.2} {}",
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
            scenario.name,
            format_bytes(measurement.bytes),
            verdicts.join(", ")
        );
    }
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
