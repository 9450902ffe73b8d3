//! The object store holding encrypted document payloads: a local directory by default,
//! any S3-compatible server by configuration. Keys are random; an upload that does not
//! end in a committed database row deletes what it wrote.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, GetResult, GetResultPayload, ObjectStore, RetryConfig,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::config::{Config, StorageBackend};

/// Size of the parts of a multipart upload (S3 wants at least 5 MiB but the last).
/// Memory per upload stays near `PART_SIZE × (1 + MAX_PARTS_IN_FLIGHT)`.
const PART_SIZE: usize = 5 * 1024 * 1024;
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Read size for payloads in the local directory.
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// Where document payloads live inside the store.
const DOCUMENTS_PREFIX: &str = "documents";

/// Storage failures, as the rest of the code needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store configuration: {0}")]
    Config(String),
    #[error("object store unavailable: {0}")]
    Unavailable(#[from] object_store::Error),
    #[error("stored object does not match its record: {0}")]
    Corrupt(String),
}

/// The key of one stored payload: random, never derived from anything about the
/// document or the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey(String);

impl BlobKey {
    /// A new random key for a document payload.
    pub fn new_document() -> Self {
        let random: [u8; 16] = crate::crypto::random_bytes();
        Self(format!("{DOCUMENTS_PREFIX}/{}", hex::encode(random)))
    }

    /// Rebuilds a key read from the database.
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> Path {
        Path::from(self.0.as_str())
    }
}

/// Size and SHA-256 of what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDigest {
    pub size: u64,
    pub sha256: String,
}

/// A stored object as listed by the sweep.
pub struct ListedBlob {
    pub key: BlobKey,
    pub last_modified: DateTime<Utc>,
}

/// The object store, shared by all requests.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// Builds the configured backend.
    pub fn from_config(config: &Config) -> Result<Self, StorageError> {
        let store: Arc<dyn ObjectStore> = match config.storage.backend {
            StorageBackend::Local => {
                let dir = config.local_blob_dir();
                crate::private_files::create_dir_all(&dir).map_err(|error| {
                    StorageError::Config(format!("cannot create {}: {error}", dir.display()))
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true))
            }
            StorageBackend::S3 => build_s3(config)?,
        };
        Ok(Self::new(store))
    }

    /// Wraps any object store (tests may pass an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Starts writing a new object under `key`.
    pub fn start_upload(&self, key: BlobKey) -> PendingBlob {
        let writer = BufWriter::with_capacity(self.store.clone(), key.path(), PART_SIZE)
            .with_max_concurrency(MAX_PARTS_IN_FLIGHT);
        PendingBlob {
            store: self.store.clone(),
            key,
            writer: Some(writer),
            size: 0,
            kept: false,
        }
    }

    /// Reads an object as a stream that fails unless it ends with exactly the
    /// expected size and SHA-256.
    pub async fn read_verified(
        &self,
        key: &BlobKey,
        expected: BlobDigest,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + use<>, StorageError>
    {
        Ok(VerifiedStream {
            inner: self.read(key).await?,
            hasher: Sha256::new(),
            size: 0,
            expected,
            finished: false,
        })
    }

    /// Reads an object as it is, without checking it (for a second pass over an object
    /// already verified, whose content age authenticates chunk by chunk anyway).
    pub async fn read(
        &self,
        key: &BlobKey,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, StorageError> {
        let result = self.store.get(&key.path()).await?;
        Ok(match result.payload {
            // object_store reads a local file 8 KiB at a time, each read a blocking task
            // of its own: a large download would spend its time switching threads.
            GetResultPayload::File(file, _) if result.range.start == 0 => {
                ReaderStream::with_capacity(tokio::fs::File::from_std(file), LOCAL_READ_BYTES)
                    .boxed()
            }
            payload => GetResult { payload, ..result }
                .into_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        })
    }

    /// Reads an object through once and checks its size and SHA-256, so that a
    /// tampered or truncated payload is refused before anything is served from it.
    pub async fn verify(&self, key: &BlobKey, expected: BlobDigest) -> Result<(), StorageError> {
        let mut stream = self.read_verified(key, expected).await?;
        while let Some(chunk) = stream.next().await {
            chunk.map_err(|error| StorageError::Corrupt(error.to_string()))?;
        }
        Ok(())
    }

    /// Deletes an object; deleting one that is already gone is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        match self.store.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether an object exists under `key`.
    pub async fn exists(&self, key: &BlobKey) -> Result<bool, StorageError> {
        match self.store.head(&key.path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Answers when the store can be reached.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.exists(&BlobKey::from_stored("readiness-probe".to_owned()))
            .await
            .map(|_| ())
    }

    /// Streams the list of every document payload in the store.
    pub fn list_documents(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<ListedBlob, StorageError>> {
        let prefix = Path::from(DOCUMENTS_PREFIX);
        self.store
            .list(Some(&prefix))
            .map(|meta| {
                let meta = meta?;
                Ok(ListedBlob {
                    key: BlobKey(meta.location.to_string()),
                    last_modified: meta.last_modified,
                })
            })
            .boxed()
    }
}

fn build_s3(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let s3 = &config.storage.s3;
    let bucket = s3
        .bucket
        .as_deref()
        .ok_or_else(|| StorageError::Config("storage.s3.bucket is required".to_owned()))?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(!s3.path_style)
        // Fail within seconds when the store is down instead of retrying for minutes:
        // the uploader gets a clear error and nothing is left half-written.
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        // `allow_http` lives in the client options, so it is set here, not on the builder.
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(s3.allow_http)
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(key_id) = &s3.access_key_id {
        builder = builder.with_access_key_id(key_id);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose_secret());
    }
    let store = builder.build()?;
    Ok(match s3.prefix.as_deref().filter(|p| !p.is_empty()) {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix)),
        None => Arc::new(store),
    })
}

/// An object being written. Unless [`PendingBlob::keep`] is called once the database
/// row that points to it has committed, the object is removed: explicitly with
/// [`PendingBlob::discard`], or from `Drop` when the request is cancelled.
pub struct PendingBlob {
    store: Arc<dyn ObjectStore>,
    key: BlobKey,
    /// `None` once the upload has been completed.
    writer: Option<BufWriter>,
    size: u64,
    kept: bool,
}

impl PendingBlob {
    pub fn key(&self) -> &BlobKey {
        &self.key
    }

    /// Appends ciphertext. (Its SHA-256 is computed where it is produced, off the
    /// thread that serves the request.)
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| StorageError::Corrupt("write after completion".to_owned()))?;
        self.size += bytes.len() as u64;
        writer.put(bytes).await?;
        Ok(())
    }

    /// Completes the upload; the object is now visible in the store. Returns its size.
    pub async fn complete(&mut self) -> Result<u64, StorageError> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| StorageError::Corrupt("upload completed twice".to_owned()))?;
        writer.shutdown().await.map_err(|error| {
            StorageError::Unavailable(object_store::Error::Generic {
                store: "upload",
                source: Box::new(error),
            })
        })?;
        Ok(self.size)
    }

    /// The database now points to this object: keep it.
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// Removes whatever was written, waiting for the store to confirm.
    pub async fn discard(mut self) {
        self.kept = true; // cleanup happens here, not again in Drop
        cleanup(self.store.clone(), self.key.clone(), self.writer.take()).await;
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (store, key, writer) = (self.store.clone(), self.key.clone(), self.writer.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(cleanup(store, key, writer))),
            Err(_) => tracing::warn!(
                blob.key = key.as_str(),
                "upload dropped outside a runtime; the orphan sweep will remove it"
            ),
        }
    }
}

async fn cleanup(store: Arc<dyn ObjectStore>, key: BlobKey, writer: Option<BufWriter>) {
    let result = match writer {
        // Still uploading: abort the multipart upload (a no-op while still buffered).
        Some(mut writer) => writer.abort().await,
        None => match store.delete(&key.path()).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        },
    };
    if let Err(error) = result {
        tracing::warn!(blob.key = key.as_str(), %error, "could not remove an unfinished upload; the orphan sweep will retry");
    }
}

/// A byte stream that checks size and SHA-256 at its end.
struct VerifiedStream {
    inner: BoxStream<'static, std::io::Result<Bytes>>,
    hasher: Sha256,
    size: u64,
    expected: BlobDigest,
    finished: bool,
}

impl Stream for VerifiedStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.size += chunk.len() as u64;
                if self.size > self.expected.size {
                    self.finished = true;
                    return Poll::Ready(Some(Err(corrupt("object is larger than recorded"))));
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                let sha256 = hex::encode(self.hasher.clone().finalize());
                if self.size != self.expected.size || sha256 != self.expected.sha256 {
                    return Poll::Ready(Some(Err(corrupt(
                        "object size or SHA-256 differs from the record",
                    ))));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

fn corrupt(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}
