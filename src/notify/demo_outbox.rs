//! The demonstration outbox: in demo mode, a channel with nothing configured writes
//! what it would have sent to `DATA_DIR/demo-outbox.jsonl`, shown on `/demo-outbox`.
//! Bounded: past 1 MiB the file starts over.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::NoticeChannel;

const FILE_NAME: &str = "demo-outbox.jsonl";
const MAX_BYTES: u64 = 1024 * 1024;

/// One notice as it would have left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoMessage {
    pub at: chrono::NaiveDateTime,
    pub channel: NoticeChannel,
    pub to: String,
    pub subject: Option<String>,
    pub text: String,
}

/// Appends to and reads the demonstration outbox.
#[derive(Clone)]
pub struct DemoOutbox {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl DemoOutbox {
    /// The outbox of the instance whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Records a message (blocking: call from a blocking thread).
    pub fn record(&self, message: &DemoMessage) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            crate::private_files::create_dir_all(dir)?;
        }
        let too_big = std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES);
        let mut file = crate::private_files::options()
            .create(true)
            .append(!too_big)
            .write(true)
            .truncate(too_big)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)
    }

    /// The `limit` most recent messages, newest first (blocking).
    pub fn recent(&self, limit: usize) -> std::io::Result<Vec<DemoMessage>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut messages: Vec<DemoMessage> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect();
        messages.reverse();
        messages.truncate(limit);
        Ok(messages)
    }
}
