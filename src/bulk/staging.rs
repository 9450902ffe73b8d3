//! Files of a bulk job waiting for their turn: each is encrypted as it arrives to an
//! ephemeral age key that lives only in this process's memory, so no plaintext
//! touches the disk and a crash leaves only unreadable files. A ZIP is staged the
//! same way, then its entries are checked and staged one by one.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::manifest::ManifestPath;

/// Entries inflating more than this many times their compressed size are refused.
const MAX_COMPRESSION_RATIO: u64 = 200;
/// Below this size a high ratio is harmless (and normal for text).
const RATIO_FREE_BYTES: u64 = 1024 * 1024;
const CHUNK_BYTES: usize = 64 * 1024;

/// Why uploaded files could not be staged; messages are safe to show.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file {0:?} is larger than the document size limit")]
    FileTooLarge(String),
    #[error("the file name {0:?} is not a safe relative path")]
    UnsafeName(String),
    #[error("the archive is not a readable ZIP file")]
    NotZip,
    #[error("the archive holds an entry with an unsafe path (absolute or with \"..\")")]
    ZipSlip,
    #[error("the archive holds an encrypted entry; send it without a password")]
    EncryptedEntry,
    #[error("the archive holds an entry that inflates suspiciously (zip bomb?)")]
    ZipBomb,
    #[error("the upload ended before it was complete")]
    Incomplete,
    #[error("staging failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for StagingError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error.to_string())
    }
}

/// One staged file: where its ciphertext is, and what its plaintext was.
#[derive(Debug, Clone)]
pub struct StagedFile {
    path: PathBuf,
    /// SHA-256 of the plaintext (goes into the line's idempotency key).
    pub sha256: Vec<u8>,
    pub size: u64,
}

/// The staged files of one job. Dropping it deletes whatever is left.
pub struct StagedFiles {
    dir: PathBuf,
    identity: Arc<age::x25519::Identity>,
    files: HashMap<ManifestPath, StagedFile>,
    staged_bytes: u64,
    max_total_bytes: u64,
    max_file_bytes: u64,
    next: usize,
}

/// The folder under the data dir that holds every job's staged files.
pub fn staging_root(data_dir: &Path) -> PathBuf {
    data_dir.join("bulk-staging")
}

impl StagedFiles {
    /// An empty staging area with a fresh key, under `data_dir`.
    pub fn create(
        data_dir: &Path,
        max_total_bytes: u64,
        max_file_bytes: u64,
    ) -> Result<Self, StagingError> {
        let dir = staging_root(data_dir).join(crate::new_id());
        crate::private_files::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            identity: Arc::new(age::x25519::Identity::generate()),
            files: HashMap::new(),
            staged_bytes: 0,
            max_total_bytes,
            max_file_bytes,
            next: 0,
        })
    }

    /// Whether a file of that name was staged.
    pub fn contains(&self, name: &ManifestPath) -> bool {
        self.files.contains_key(name)
    }

    /// The staged file of that name.
    pub fn get(&self, name: &ManifestPath) -> Option<&StagedFile> {
        self.files.get(name)
    }

    fn next_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{}.age", self.next))
    }

    fn remaining(&self) -> u64 {
        self.max_total_bytes.saturating_sub(self.staged_bytes)
    }

    /// Stages one uploaded file under the name the manifest knows it by.
    pub async fn stage_file<E: std::fmt::Display>(
        &mut self,
        raw_name: &str,
        stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), StagingError> {
        let name = ManifestPath::parse(raw_name)
            .ok_or_else(|| StagingError::UnsafeName(safe_label(raw_name)))?;
        let limit = self.remaining().min(self.max_file_bytes);
        let staged = self
            .stage_stream(stream, limit)
            .await
            .map_err(|error| match error {
                StagingError::TooLarge { .. } if self.remaining() > self.max_file_bytes => {
                    StagingError::FileTooLarge(name.as_str().to_owned())
                }
                StagingError::TooLarge { .. } => StagingError::TooLarge {
                    limit: self.max_total_bytes,
                },
                other => other,
            })?;
        self.staged_bytes += staged.size;
        if let Some(previous) = self.files.insert(name, staged) {
            let _ = std::fs::remove_file(previous.path);
        }
        Ok(())
    }

    /// Stages a ZIP archive, then each of its entries that `wanted` names.
    pub async fn stage_archive<E: std::fmt::Display>(
        &mut self,
        stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
        wanted: HashSet<ManifestPath>,
    ) -> Result<(), StagingError> {
        let limit = self.remaining();
        let archive = self
            .stage_stream(stream, limit)
            .await
            .map_err(|error| match error {
                StagingError::TooLarge { .. } => StagingError::TooLarge {
                    limit: self.max_total_bytes,
                },
                other => other,
            })?;
        let mut paths = Vec::new();
        for _ in 0..wanted.len() {
            paths.push(self.next_path());
        }
        let identity = self.identity.clone();
        let (max_file, budget) = (self.max_file_bytes, self.remaining());
        let archive_path = archive.path.clone();
        let extracted = crate::telemetry::spawn_blocking(move || {
            let result =
                extract_archive(&archive_path, &identity, &wanted, paths, max_file, budget);
            let _ = std::fs::remove_file(&archive_path);
            result
        })
        .await
        .map_err(|error| StagingError::Io(error.to_string()))??;
        for (name, staged) in extracted {
            self.staged_bytes += staged.size;
            self.files.insert(name, staged);
        }
        Ok(())
    }

    /// Encrypts a stream to a new staged file on a blocking thread.
    async fn stage_stream<E: std::fmt::Display>(
        &mut self,
        mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
    ) -> Result<StagedFile, StagingError> {
        let path = self.next_path();
        let recipient = self.identity.to_public();
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let writer_path = path.clone();
        let writer = crate::telemetry::spawn_blocking(move || {
            let mut sink = EncryptingSink::create(&writer_path, &recipient, limit)?;
            while let Some(chunk) = receiver.blocking_recv() {
                sink.write_all(&chunk)?;
            }
            sink.finish(writer_path)
        });
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::info!(error = %error, "bulk upload interrupted");
                    failure = Some(StagingError::Incomplete);
                    break;
                }
            }
        }
        drop(sender);
        let written = writer
            .await
            .map_err(|error| StagingError::Io(error.to_string()))?;
        match (failure, written) {
            (None, Ok(staged)) => Ok(staged),
            (failure, written) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(failure.unwrap_or_else(|| {
                    written
                        .err()
                        .unwrap_or(StagingError::Io("staging failed".to_owned()))
                }))
            }
        }
    }

    /// Streams the plaintext of a staged file, decrypted on a blocking thread, in
    /// pieces through a small channel (memory stays bounded).
    pub fn read(
        &self,
        file: &StagedFile,
    ) -> tokio::sync::mpsc::Receiver<Result<Bytes, StagingError>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let (identity, path) = (self.identity.clone(), file.path.clone());
        crate::telemetry::spawn_blocking(move || {
            let reader = match open_staged(&path, &identity) {
                Ok(reader) => reader,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            let mut reader = reader;
            loop {
                let mut buffer = vec![0u8; CHUNK_BYTES];
                match read_full(&mut reader, &mut buffer) {
                    Ok(0) => return,
                    Ok(read) => {
                        buffer.truncate(read);
                        if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error.into()));
                        return;
                    }
                }
            }
        });
        receiver
    }

    /// Deletes one staged file (its line is done).
    pub async fn remove(&self, file: &StagedFile) {
        let _ = tokio::fs::remove_file(&file.path).await;
    }
}

impl Drop for StagedFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A label for an unsafe name that shows its shape without the whole of it.
fn safe_label(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(80).collect()
}

fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

type StagedReader = age::stream::StreamReader<BufReader<std::fs::File>>;

fn open_staged(
    path: &Path,
    identity: &age::x25519::Identity,
) -> Result<StagedReader, StagingError> {
    let file = BufReader::new(std::fs::File::open(path)?);
    let decryptor =
        age::Decryptor::new(file).map_err(|error| StagingError::Io(error.to_string()))?;
    decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|error| StagingError::Io(error.to_string()))
}

/// Writes ciphertext to a file while hashing and counting the plaintext.
struct EncryptingSink {
    writer: age::stream::StreamWriter<BufWriter<std::fs::File>>,
    sha256: Sha256,
    size: u64,
    limit: u64,
}

impl EncryptingSink {
    fn create(
        path: &Path,
        recipient: &age::x25519::Recipient,
        limit: u64,
    ) -> Result<Self, StagingError> {
        let file = BufWriter::with_capacity(
            CHUNK_BYTES,
            crate::private_files::options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?,
        );
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|error| StagingError::Io(error.to_string()))?;
        Ok(Self {
            writer: encryptor.wrap_output(file)?,
            sha256: Sha256::new(),
            size: 0,
            limit,
        })
    }

    fn write_all(&mut self, chunk: &[u8]) -> Result<(), StagingError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(StagingError::TooLarge { limit: self.limit });
        }
        self.sha256.update(chunk);
        self.writer.write_all(chunk)?;
        Ok(())
    }

    fn finish(self, path: PathBuf) -> Result<StagedFile, StagingError> {
        self.writer.finish()?.flush()?;
        Ok(StagedFile {
            path,
            sha256: self.sha256.finalize().to_vec(),
            size: self.size,
        })
    }
}

/// Checks every entry of the staged archive and stages the wanted ones.
fn extract_archive(
    archive_path: &Path,
    identity: &age::x25519::Identity,
    wanted: &HashSet<ManifestPath>,
    mut paths: Vec<PathBuf>,
    max_file: u64,
    mut budget: u64,
) -> Result<Vec<(ManifestPath, StagedFile)>, StagingError> {
    let reader = open_staged(archive_path, identity)?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|_| StagingError::NotZip)?;
    let recipient = identity.to_public();
    let mut staged = Vec::new();
    for index in 0..archive.len() {
        let (name, wanted_name) = {
            let entry = archive
                .by_index_raw(index)
                .map_err(|_| StagingError::NotZip)?;
            let raw_name = entry
                .name()
                .map_err(|_| StagingError::ZipSlip)?
                .into_owned();
            if entry.enclosed_name().is_none() || ManifestPath::parse(&raw_name).is_none() {
                return Err(StagingError::ZipSlip);
            }
            if entry.encrypted() {
                return Err(StagingError::EncryptedEntry);
            }
            if entry.is_dir() {
                continue;
            }
            let (size, compressed) = (entry.size(), entry.compressed_size());
            if size > RATIO_FREE_BYTES && size / compressed.max(1) > MAX_COMPRESSION_RATIO {
                return Err(StagingError::ZipBomb);
            }
            let name = ManifestPath::parse(&raw_name).ok_or(StagingError::ZipSlip)?;
            let wanted_name = wanted.contains(&name);
            (name, wanted_name)
        };
        if !wanted_name || staged.iter().any(|(staged, _)| staged == &name) {
            continue;
        }
        let mut entry = archive.by_index(index).map_err(|_| StagingError::NotZip)?;
        let Some(path) = paths.pop() else { break };
        let limit = max_file.min(budget);
        let mut sink = EncryptingSink::create(&path, &recipient, limit)?;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let copied = (|| -> Result<(), StagingError> {
            loop {
                // The declared sizes are not trusted: bytes are counted as they inflate.
                let read = entry.read(&mut buffer).map_err(|_| StagingError::NotZip)?;
                if read == 0 {
                    return Ok(());
                }
                if sink.size + read as u64 > MAX_COMPRESSION_RATIO * entry.compressed_size().max(1)
                    && sink.size + read as u64 > RATIO_FREE_BYTES
                {
                    return Err(StagingError::ZipBomb);
                }
                sink.write_all(&buffer[..read])
                    .map_err(|error| match error {
                        StagingError::TooLarge { .. } if limit == max_file => {
                            StagingError::FileTooLarge(name.as_str().to_owned())
                        }
                        other => other,
                    })?;
            }
        })();
        if let Err(error) = copied {
            drop(sink);
            let _ = std::fs::remove_file(&path);
            for (_, file) in &staged {
                let file: &StagedFile = file;
                let _ = std::fs::remove_file(&file.path);
            }
            return Err(error);
        }
        let file = sink.finish(path)?;
        budget = budget.saturating_sub(file.size);
        staged.push((name, file));
    }
    Ok(staged)
}
