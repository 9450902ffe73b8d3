//! Anchors: the chain's head (sequence number, hash, time) written where whoever can
//! write to the database cannot rewrite it — the service's log and an append-only file
//! meant to be shipped off the host. `eguichet audit verify --anchors` compares the
//! chain with them, so a cut tail or a head set back is caught even though the chain
//! itself would still link.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{Database, DbError};

/// How often a serving instance anchors the head when events happened.
pub const ANCHOR_INTERVAL: Duration = Duration::from_secs(60);

/// One anchored head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// When it was written (RFC 3339, UTC).
    pub at: String,
    pub seq: i64,
    pub hash: String,
}

/// Why the anchors could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("audit anchors file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit anchors file {path}, line {line}: not an anchor ({reason})")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error(transparent)]
    Database(#[from] DbError),
}

impl Anchor {
    /// `2026-12-05T18:00:00Z seq=42 hash=9f…`: one line, readable by a person and grep.
    fn line(&self) -> String {
        format!("{} seq={} hash={}\n", self.at, self.seq, self.hash)
    }

    fn parse_line(line: &str) -> Result<Self, &'static str> {
        let mut words = line.split_whitespace();
        let at = words.next().ok_or("empty")?;
        chrono::DateTime::parse_from_rfc3339(at).map_err(|_| "time")?;
        let seq = words
            .next()
            .and_then(|word| word.strip_prefix("seq="))
            .and_then(|seq| seq.parse::<i64>().ok())
            .filter(|seq| *seq >= 0)
            .ok_or("seq=")?;
        let hash = words
            .next()
            .and_then(|word| word.strip_prefix("hash="))
            .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("hash=")?;
        if words.next().is_some() {
            return Err("trailing text");
        }
        Ok(Self {
            at: at.to_owned(),
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Appends one anchor: a single write to a file opened for appending (owner only).
pub fn append(path: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let io = |source| AnchorError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        crate::private_files::create_dir_all(dir).map_err(io)?;
    }
    let mut file = crate::private_files::open_append(path).map_err(io)?;
    file.write_all(anchor.line().as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io)
}

/// Reads every anchor of a file, in the order written.
pub fn read(path: &Path) -> Result<Vec<Anchor>, AnchorError> {
    let io = |source| AnchorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut anchors = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        anchors.push(
            Anchor::parse_line(&line).map_err(|reason| AnchorError::Malformed {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            })?,
        );
    }
    Ok(anchors)
}

/// Anchors the head to the log and the file, unless it has not moved since
/// `last_seq`. Returns the head's sequence number. Blocking.
pub fn anchor_head(db: &Database, path: &Path, last_seq: Option<i64>) -> Result<i64, AnchorError> {
    let (seq, hash) = super::chain_head(&mut *db.get_blocking()?)?;
    if last_seq == Some(seq) {
        return Ok(seq);
    }
    if let Some(last) = last_seq
        && seq < last
    {
        // Only a removal behind the service's back moves the head backwards.
        tracing::error!(
            audit.seq = seq,
            audit.previous_seq = last,
            "audit chain head moved back since the last anchor: events were removed"
        );
    }
    let anchor = Anchor {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seq,
        hash,
    };
    tracing::info!(
        audit.seq = anchor.seq,
        audit.hash = %anchor.hash,
        "audit chain head anchored"
    );
    append(path, &anchor)?;
    Ok(seq)
}

/// Anchors the head now, then every [`ANCHOR_INTERVAL`] when it moved. Runs until
/// aborted; the server anchors once more when it stops.
pub async fn anchor_periodically(db: Database, path: PathBuf) {
    let mut last_seq = None;
    let mut interval = tokio::time::interval(ANCHOR_INTERVAL);
    loop {
        interval.tick().await;
        let (db, path) = (db.clone(), path.clone());
        let anchored =
            crate::telemetry::spawn_blocking(move || anchor_head(&db, &path, last_seq)).await;
        match anchored {
            Ok(Ok(seq)) => last_seq = Some(seq),
            Ok(Err(error)) => tracing::error!(%error, "cannot anchor the audit chain; will retry"),
            Err(error) => tracing::error!(%error, "audit anchoring task failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_reads_back_as_written_and_garbage_is_refused() {
        let anchor = Anchor {
            at: "2026-12-05T18:00:00Z".to_owned(),
            seq: 42,
            hash: "ab".repeat(32),
        };
        assert_eq!(Anchor::parse_line(anchor.line().trim_end()), Ok(anchor));
        for line in [
            "yesterday seq=1 hash=00",
            "2026-12-05T18:00:00Z seq=-1 hash=0000000000000000000000000000000000000000000000000000000000000000",
            "2026-12-05T18:00:00Z seq=1 hash=00",
            "2026-12-05T18:00:00Z seq=1",
        ] {
            assert!(Anchor::parse_line(line).is_err(), "{line}");
        }
    }
}
