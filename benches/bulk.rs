//! Bulk delivery throughput: N documents of 100 KB (10,000 by default) delivered by the
//! library's bulk client through `POST /api/v1/documents` into the release server
//! with its embedded defaults (SQLite, local blob directory) — once encrypted by the
//! server as they arrive, once encrypted by the client for each vault's key (end to
//! end, each line asking `POST /api/v1/recipients` first) — beside the rate at which
//! bare `age` encrypts the same documents in memory. See `benches/README.md`.
//!
//! Environment: `BULK_DOCUMENTS` (default 10000), `BULK_DOCUMENT_BYTES` (default
//! 102400), `BULK_CONCURRENCY` (default 16).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eguichet::bulk::client::{self, ClientOptions};

const TARGET_PER_SECOND: f64 = 1_000.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Deterministic pseudo-random bytes (SplitMix64), distinct per document.
fn document(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

struct Server {
    child: Child,
    _data_dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data_dir: &Path, listen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eguichet"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EGUICHET_") {
            command.env_remove(name);
        }
    }
    command
        .env("EGUICHET_DATA_DIR", data_dir)
        .env("EGUICHET_LISTEN", listen)
        .env("RUST_LOG", "warn");
    command
}

fn start_server() -> (Server, String, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let run = |args: &[&str]| {
        let output = command(data_dir.path(), &listen)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    run(&[
        "agent",
        "create",
        "--email",
        "bench@example.org",
        "--role",
        "agent",
    ]);
    let token = run(&["agent", "token", "--email", "bench@example.org"])
        .trim()
        .to_owned();
    let child = command(data_dir.path(), &listen)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        _data_dir: data_dir,
    };
    let base = format!("http://{listen}/");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, base, token)
}

/// Writes the files and the manifest (untimed): one citizen per line, as a commune's
/// yearly tax notices would be.
fn prepare(dir: &Path, count: usize, size: usize) -> PathBuf {
    let mut manifest =
        std::io::BufWriter::new(std::fs::File::create(dir.join("manifest.csv")).unwrap());
    writeln!(
        manifest,
        "file;title;category;family_name;given_names;birthdate;birthplace"
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("avis")).unwrap();
    for n in 0..count {
        std::fs::write(dir.join(format!("avis/{n}.pdf")), document(n as u64, size)).unwrap();
        writeln!(
            manifest,
            "avis/{n}.pdf;Avis de taxe foncière 2026;impots;Martin{n};Paul;{:02}/{:02}/{};75056",
            n % 28 + 1,
            n % 12 + 1,
            1940 + n % 60
        )
        .unwrap();
    }
    manifest.flush().unwrap();
    dir.join("manifest.csv")
}

/// Bare age: each document encrypted to its own fresh X25519 recipient, in memory.
fn bare_age(count: usize, size: usize) -> Duration {
    let recipients: Vec<_> = (0..count)
        .map(|_| age::x25519::Identity::generate().to_public())
        .collect();
    let start = Instant::now();
    let mut total = 0usize;
    for (n, recipient) in recipients.iter().enumerate() {
        let plaintext = document(n as u64, size);
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .unwrap();
        let mut ciphertext = Vec::with_capacity(size + 512);
        let mut writer = encryptor.wrap_output(&mut ciphertext).unwrap();
        writer.write_all(&plaintext).unwrap();
        writer.finish().unwrap();
        total += ciphertext.len();
    }
    assert!(total > count * size);
    start.elapsed()
}

fn main() {
    let count = env_or("BULK_DOCUMENTS", 10_000);
    let size = env_or("BULK_DOCUMENT_BYTES", 100 * 1024);
    let concurrency = env_or("BULK_CONCURRENCY", 16);
    eprintln!("preparing {count} documents of {size} bytes…");
    let files = tempfile::tempdir().unwrap();
    let manifest_path = prepare(files.path(), count, size);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Each mode on a fresh server: the same manifest lines would otherwise be replays.
    let mut timings = Vec::new();
    for encrypt_locally in [false, true] {
        let (server, base, token) = start_server();
        let manifest = client::load_manifest(&manifest_path, files.path()).unwrap();
        assert!(manifest.refused.is_empty());
        let options = ClientOptions {
            server: base.parse().unwrap(),
            token,
            concurrency,
            encrypt_locally,
        };
        let start = Instant::now();
        let report = runtime
            .block_on(client::deliver_manifest(
                &options,
                manifest,
                files.path(),
                &indicatif::ProgressBar::hidden(),
            ))
            .unwrap();
        timings.push(start.elapsed());
        assert!(report.is_complete(), "{report}");
        assert_eq!(report.delivered.len(), count);
        drop(server);
    }
    let (api, local) = (timings[0], timings[1]);

    let age = bare_age(count, size);
    let per_second = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    let (api_rate, local_rate, age_rate) = (per_second(api), per_second(local), per_second(age));
    println!("| scenario | documents | seconds | documents/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| bulk client → API → SQLite + disk (concurrency {concurrency}) | {count} | {:.2} | {:.0} |",
        api.as_secs_f64(),
        api_rate
    );
    println!(
        "| bulk client encrypting each document → API → SQLite + disk (concurrency {concurrency}) | {count} | {:.2} | {:.0} |",
        local.as_secs_f64(),
        local_rate
    );
    println!(
        "| bare age encrypt in memory (1 thread) | {count} | {:.2} | {:.0} |",
        age.as_secs_f64(),
        age_rate
    );
    println!();
    println!(
        "ratio client-encrypted / server-encrypted: {:.2}",
        local_rate / api_rate
    );
    println!(
        "ratio API / bare age: {:.2}; target {TARGET_PER_SECOND:.0} documents/s: {}",
        api_rate / age_rate,
        if api_rate >= TARGET_PER_SECOND {
            "met"
        } else {
            "missed"
        }
    );
}
