//! Voucher letters for a whole town: 19,000 households printed into one PDF, and the
//! same households written as the postal operator's mail-merge CSV, beside the bare cost
//! of computing their 19,000 QR matrices with the `qrcode` crate. See
//! `benches/README.md`.
//!
//! Environment: `LETTERS_COUNT` (default 19000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;
use std::io::BufWriter;
use std::time::{Duration, Instant};

use eguichet::vouchers::{
    DistributionSite, Letter, LetterCampaign, LetterTexts, VoucherCode, write_letters_pdf,
    write_mail_merge_csv,
};
use qrcode::{EcLevel, QrCode};

/// Target from the brief: well under a minute, ideally a few seconds.
const TARGET: Duration = Duration::from_secs(10);

struct Household {
    reference: String,
    address: Vec<String>,
    allotment: u32,
    code: VoucherCode,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The households of a town (untimed): three to five address lines, accents included.
fn households(count: usize) -> Vec<Household> {
    let streets = [
        "rue de l’Église",
        "place du Marché",
        "chemin des Écoliers",
        "avenue du Général-de-Gaulle",
    ];
    (0..count)
        .map(|n| {
            let mut address = vec![format!("M. ou Mme Lefèvre-Dupré {n}")];
            if n % 3 == 0 {
                address.push(format!("Résidence Les Peupliers, bât. {}", n % 7 + 1));
            }
            if n % 5 == 0 {
                address.push("Lieu-dit La Croix-Saint-Ouen".into());
            }
            address.push(format!("{} {}", n % 180 + 1, streets[n % streets.len()]));
            address.push("59230 SAINT-AMAND-LES-EAUX".into());
            Household {
                reference: format!("F-{n:05}"),
                address,
                allotment: (n % 5 + 1) as u32,
                code: VoucherCode::generate(),
            }
        })
        .collect()
}

fn letters(households: &[Household]) -> impl Iterator<Item = Letter<'_>> {
    households.iter().map(|household| Letter {
        household_reference: &household.reference,
        address: &household.address,
        allotment: household.allotment,
        code: &household.code,
    })
}

fn qr_matrices(households: &[Household]) {
    for household in households {
        let qr = QrCode::with_error_correction_level(household.code.as_str(), EcLevel::Q).unwrap();
        black_box(qr.to_colors());
    }
}

/// Wall time, this process's CPU time and the CPU time of everything else on the
/// machine while `work` runs: a build next to the benchmark shows up in the last.
struct Timing {
    wall: Duration,
    cpu: Duration,
    other: Duration,
}

fn measure<T>(work: impl FnOnce() -> T) -> (T, Timing) {
    let (cpu_before, machine_before) = (process_cpu_time(), machine_busy_time());
    let start = Instant::now();
    let value = work();
    let wall = start.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let machine = machine_busy_time().saturating_sub(machine_before);
    let timing = Timing {
        wall,
        cpu,
        other: machine.saturating_sub(cpu),
    };
    (value, timing)
}

/// Clock ticks per second in `/proc` (USER_HZ, fixed at 100 by the Linux ABI).
fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 10)
}

/// utime + stime of this process (all its threads), fields 14 and 15 of `/proc/self/stat`.
fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, after_name) = stat.rsplit_once(')').unwrap();
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    ticks(fields.iter().sum())
}

/// Busy time of all CPUs together (user, nice, system, irq, softirq, steal).
fn machine_busy_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|line| line.starts_with("cpu ")).unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap())
        .collect();
    ticks([0, 1, 2, 5, 6, 7].iter().map(|&index| fields[index]).sum())
}

/// Peak resident memory of this process so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let count = env_or("LETTERS_COUNT", 19_000);
    eprintln!("preparing {count} households…");
    let households = households(count);
    let sites = [
        DistributionSite {
            name: "Salle des fêtes",
            address: "Place du Marché, 59230 Saint-Amand-les-Eaux",
            hours: "du lundi au vendredi, de 9 h à 12 h et de 14 h à 18 h",
        },
        DistributionSite {
            name: "Mairie annexe du Moulin des Loups",
            address: "3 rue de l’Œuvre, 59230 Saint-Amand-les-Eaux",
            hours: "samedi, de 10 h à 16 h",
        },
    ];
    let campaign = LetterCampaign {
        tenant_name: "Commune de Saint-Amand-les-Eaux",
        campaign_name: "Distribution de masques lavables — mai 2020",
        item: "masques lavables",
        dates: "Du lundi 11 au samedi 16 mai 2020",
        sites: &sites,
    };
    let texts = LetterTexts::french();
    let dir = tempfile::tempdir().unwrap();
    let rss_before = peak_rss_mib();

    // Baseline: the QR matrices alone, at the level the letters use (Q), on one thread
    // and then on every core, as the letters compute them.
    eprintln!("running: bare QR matrices");
    let ((), bare_qr) = measure(|| qr_matrices(&households));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ((), bare_qr_threads) = measure(|| {
        std::thread::scope(|scope| {
            for share in households.chunks(count.div_ceil(threads)) {
                scope.spawn(|| qr_matrices(share));
            }
        });
    });

    eprintln!("running: letters PDF");
    let pdf_path = dir.path().join("letters.pdf");
    let (pages, pdf) = measure(|| {
        let file = BufWriter::new(std::fs::File::create(&pdf_path).unwrap());
        write_letters_pdf(&campaign, &texts, letters(&households), file).unwrap()
    });
    assert_eq!(pages, count);
    let pdf_bytes = std::fs::metadata(&pdf_path).unwrap().len();
    let rss_after_pdf = peak_rss_mib();

    eprintln!("running: mail-merge CSV");
    let csv_path = dir.path().join("letters.csv");
    let (rows, csv) = measure(|| {
        let file = BufWriter::new(std::fs::File::create(&csv_path).unwrap());
        write_mail_merge_csv(letters(&households), file).unwrap()
    });
    assert_eq!(rows, count);
    let csv_bytes = std::fs::metadata(&csv_path).unwrap().len();

    let row = |name: &str, measured: &Timing, bytes: Option<u64>| {
        let seconds = measured.wall.as_secs_f64();
        let (bytes, per_letter) = bytes.map_or(("—".to_owned(), "—".to_owned()), |bytes| {
            (
                bytes.to_string(),
                format!("{:.0}", bytes as f64 / count as f64),
            )
        });
        println!(
            "| {name} | {count} | {seconds:.2} | {:.0} | {bytes} | {per_letter} | {:.2} | {:.2} | {:.2} |",
            count as f64 / seconds,
            seconds / bare_qr.wall.as_secs_f64(),
            measured.cpu.as_secs_f64(),
            measured.other.as_secs_f64(),
        );
    };
    println!(
        "| scenario | letters | seconds | letters/s | bytes | bytes per letter | time / bare QR | CPU s | other CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    row(
        "bare QR matrices (qrcode, level Q), 1 thread",
        &bare_qr,
        None,
    );
    row(
        &format!("bare QR matrices, {threads} threads"),
        &bare_qr_threads,
        None,
    );
    row(
        &format!("letters PDF (one page each, QR codes on {threads} threads)"),
        &pdf,
        Some(pdf_bytes),
    );
    row("mail-merge CSV", &csv, Some(csv_bytes));
    println!();
    if let (Some(before), Some(after)) = (rss_before, rss_after_pdf) {
        println!(
            "peak RSS: {before:.1} MiB with the households in memory, {after:.1} MiB after the PDF"
        );
    }
    println!(
        "PDF: {:.1} MB, {:.0} pages/s; target {} s for {count} letters: {}",
        pdf_bytes as f64 / 1e6,
        count as f64 / pdf.wall.as_secs_f64(),
        TARGET.as_secs(),
        if pdf.wall <= TARGET { "met" } else { "missed" }
    );
}
