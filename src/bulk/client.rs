//! The bulk-delivery client behind `eguichet deliver`: sends every valid manifest
//! line through `POST /api/v1/documents`, streaming its file, with the line's
//! idempotency key, a bounded number of requests in flight and retries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::manifest::{LineError, Manifest, ManifestLimits, ManifestLine};
use crate::crypto::{EncryptionWorker, VaultRecipient, seal};

/// Attempts per line before a connection error or a 5xx counts as a refusal.
const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Where to deliver, as whom, how fast.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base address of the portal, e.g. `https://guichet.example.org`.
    pub server: url::Url,
    /// An agent's API token.
    pub token: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Encrypt each document here, for its vault's key, before it leaves this machine
    /// (end to end); otherwise the server encrypts it as it arrives.
    pub encrypt_locally: bool,
}

/// Why a bulk delivery stopped before going through the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the manifest: {0}")]
    ReadManifest(std::io::Error),
    #[error(transparent)]
    Manifest(#[from] super::manifest::ManifestError),
    #[error("the server refused the API token (HTTP {0}); nothing more was sent")]
    Unauthorized(u16),
    #[error("the server address is not usable: {0}")]
    Server(String),
}

/// What happened to one line that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    Delivered {
        document_id: String,
    },
    /// An earlier run had delivered it already: nothing was stored twice.
    Replayed {
        document_id: String,
    },
    Refused {
        reason: String,
    },
}

/// The result of a run, line by line.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    /// Lines sent and delivered, with their document id.
    pub delivered: Vec<(usize, String)>,
    /// Lines an earlier run had delivered.
    pub replayed: Vec<(usize, String)>,
    /// Lines refused before sending (manifest) or by the server, in line order.
    pub refused: Vec<LineError>,
}

impl DeliveryReport {
    /// True when every line was delivered now or before.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty()
    }
}

impl std::fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "delivered: {}, already delivered: {}, refused: {}",
            self.delivered.len(),
            self.replayed.len(),
            self.refused.len()
        )?;
        for error in &self.refused {
            writeln!(f, "  line {}: {}", error.line, error.reason)?;
        }
        Ok(())
    }
}

/// Reads and checks a manifest against a folder of files.
pub fn load_manifest(manifest: &Path, files: &Path) -> Result<Manifest, ClientError> {
    let bytes = std::fs::read(manifest).map_err(ClientError::ReadManifest)?;
    let mut manifest = Manifest::parse(&bytes, ManifestLimits::default())?;
    manifest.check_files(|path| files.join(path.as_str()).is_file());
    Ok(manifest)
}

/// Sends every valid line of `manifest`, with files under `files`. Lines refused by
/// the manifest check are reported as they are, without being sent.
pub async fn deliver_manifest(
    options: &ClientOptions,
    manifest: Manifest,
    files: &Path,
    progress: &ProgressBar,
) -> Result<DeliveryReport, ClientError> {
    let endpoint = options
        .server
        .join("api/v1/documents")
        .map_err(|error| ClientError::Server(error.to_string()))?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency.max(1))
        .build()
        .map_err(|error| ClientError::Server(error.to_string()))?;
    let mut report = DeliveryReport {
        refused: manifest.refused,
        ..DeliveryReport::default()
    };
    progress.set_length(manifest.lines.len() as u64);
    let recipients = options
        .server
        .join("api/v1/recipients")
        .map_err(|error| ClientError::Server(error.to_string()))?;
    let sender = LineSender {
        http: &http,
        endpoint: &endpoint,
        recipients: options.encrypt_locally.then_some(&recipients),
        token: &options.token,
        files,
    };
    let mut outcomes = futures::stream::iter(manifest.lines)
        .map(|line| {
            let sender = &sender;
            async move { (line.line, sender.send(&line).await) }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((line, outcome)) = outcomes.next().await {
        progress.inc(1);
        match outcome? {
            LineOutcome::Delivered { document_id } => report.delivered.push((line, document_id)),
            LineOutcome::Replayed { document_id } => report.replayed.push((line, document_id)),
            LineOutcome::Refused { reason } => report.refused.push(LineError { line, reason }),
        }
    }
    progress.finish_and_clear();
    report.delivered.sort();
    report.replayed.sort();
    report.refused.sort_by_key(|error| error.line);
    Ok(report)
}

struct LineSender<'a> {
    http: &'a reqwest::Client,
    endpoint: &'a url::Url,
    /// Where vault keys are asked for, when documents are encrypted here.
    recipients: Option<&'a url::Url>,
    token: &'a str,
    files: &'a Path,
}

/// What a line is encrypted to, when documents are encrypted here.
struct LocalEncryption {
    recipient: VaultRecipient,
    /// The line's metadata with its title sealed (see [`sealed_metadata_line`]).
    raw_metadata: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct DeliveredBody {
    id: String,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    message: String,
}

impl LineSender<'_> {
    async fn send(&self, line: &ManifestLine) -> Result<LineOutcome, ClientError> {
        let path = self.files.join(line.file.as_str());
        let (sha256, size) = match file_digest(&path).await {
            Ok(digest) => digest,
            Err(_) => return Ok(refused("file: cannot be read")),
        };
        let key = line.idempotency_key(&sha256);
        let mut backoff = FIRST_BACKOFF;
        let mut last_problem = String::new();
        let mut encryption = None;
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            if let (Some(lookup), None) = (self.recipients, &encryption) {
                match self.local_encryption(lookup, line).await? {
                    Ok(found) => encryption = Some(found),
                    Err(LookupProblem::Retry(problem)) => {
                        last_problem = problem;
                        continue;
                    }
                    Err(LookupProblem::Refused(reason)) => return Ok(refused(&reason)),
                }
            }
            let form = match &encryption {
                None => self.form(line, &path, size).await,
                Some(encryption) => self.encrypted_form(line, &path, encryption).await,
            };
            let form = match form {
                Ok(form) => form,
                Err(_) => return Ok(refused("file: cannot be read")),
            };
            let response = self
                .http
                .post(self.endpoint.clone())
                .bearer_auth(self.token)
                .header("Idempotency-Key", key.as_str())
                .multipart(form)
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    last_problem = format!("server unreachable ({})", error_kind(&error));
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                last_problem = format!("server error (HTTP {})", status.as_u16());
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(ClientError::Unauthorized(status.as_u16()));
            }
            if status == StatusCode::FORBIDDEN {
                // A line for a department the agent does not serve is refused alone;
                // any other refusal is about the token and stops the run.
                return match response.json::<ErrorBody>().await {
                    Ok(body) if body.error == "department_not_allowed" => {
                        Ok(refused(&body.message))
                    }
                    _ => Err(ClientError::Unauthorized(status.as_u16())),
                };
            }
            let replayed = response.headers().contains_key("Idempotent-Replayed");
            if status.is_success() {
                return Ok(match response.json::<DeliveredBody>().await {
                    Ok(body) if replayed => LineOutcome::Replayed {
                        document_id: body.id,
                    },
                    Ok(body) => LineOutcome::Delivered {
                        document_id: body.id,
                    },
                    Err(_) => refused("the server's answer could not be read"),
                });
            }
            let message = response
                .json::<ErrorBody>()
                .await
                .map(|body| body.message)
                .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
            if status == StatusCode::CONFLICT
                && encryption.is_some()
                && message_is_recipient_changed(&message)
            {
                // The vault was locked since its key was asked for: ask again.
                encryption = None;
                last_problem = message;
                continue;
            }
            let reason = if status == StatusCode::CONFLICT {
                format!("already delivered with another file or content ({message})")
            } else {
                message
            };
            return Ok(LineOutcome::Refused { reason });
        }
        Ok(LineOutcome::Refused {
            reason: format!("{last_problem}, after {MAX_ATTEMPTS} attempts"),
        })
    }

    async fn form(&self, line: &ManifestLine, path: &PathBuf, size: u64) -> std::io::Result<Form> {
        let file = tokio::fs::File::open(path).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            64 * 1024,
        ));
        let metadata = Part::bytes(line.raw_metadata.clone())
            .mime_str("application/json")
            .map_err(std::io::Error::other)?;
        let file = Part::stream_with_length(body, size)
            .file_name(line.file.file_name())
            .mime_str(line.file.content_type())
            .map_err(std::io::Error::other)?;
        Ok(Form::new().part("metadata", metadata).part("file", file))
    }
}

/// Why a vault key could not be had for a line.
enum LookupProblem {
    /// Worth another try (server busy or unreachable).
    Retry(String),
    /// The line itself is refused.
    Refused(String),
}

impl LineSender<'_> {
    /// Asks the portal for the line's vault key and seals the line's title to it.
    async fn local_encryption(
        &self,
        lookup: &url::Url,
        line: &ManifestLine,
    ) -> Result<Result<LocalEncryption, LookupProblem>, ClientError> {
        let metadata: serde_json::Value = serde_json::from_slice(&line.raw_metadata)
            .map_err(|error| ClientError::Server(error.to_string()))?;
        let response = self
            .http
            .post(lookup.clone())
            .bearer_auth(self.token)
            .json(&serde_json::json!({ "recipient": metadata["recipient"] }))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return Ok(Err(LookupProblem::Retry(format!(
                    "server unreachable ({})",
                    error_kind(&error)
                ))));
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized(status.as_u16()));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(Err(LookupProblem::Retry(format!(
                "vault key unavailable (HTTP {})",
                status.as_u16()
            ))));
        }
        if !status.is_success() {
            let message = response
                .json::<ErrorBody>()
                .await
                .map(|body| body.message)
                .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
            return Ok(Err(LookupProblem::Refused(message)));
        }
        let Some(recipient) = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|body| VaultRecipient::parse(body["recipient"].as_str()?).ok())
        else {
            return Ok(Err(LookupProblem::Refused(
                "the server's vault key could not be read".to_owned(),
            )));
        };
        let raw_metadata = match sealed_metadata_line(metadata, &recipient, &line.file.file_name())
        {
            Ok(raw) => raw,
            Err(error) => return Ok(Err(LookupProblem::Refused(error.to_string()))),
        };
        Ok(Ok(LocalEncryption {
            recipient,
            raw_metadata,
        }))
    }

    /// The multipart body of a document encrypted here: the metadata with its title
    /// sealed, and the file as an age file for the vault's key, encrypted as it is read.
    async fn encrypted_form(
        &self,
        line: &ManifestLine,
        path: &Path,
        encryption: &LocalEncryption,
    ) -> std::io::Result<Form> {
        let file = tokio::fs::File::open(path).await?;
        let (worker, header) =
            EncryptionWorker::start(&encryption.recipient, false).map_err(std::io::Error::other)?;
        let body = reqwest::Body::wrap_stream(encrypted_stream(file, worker, header));
        let metadata = Part::bytes(encryption.raw_metadata.clone())
            .mime_str("application/json")
            .map_err(std::io::Error::other)?;
        let file = Part::stream(body)
            .file_name(line.file.file_name())
            .mime_str(line.file.content_type())
            .map_err(std::io::Error::other)?;
        Ok(Form::new().part("metadata", metadata).part("file", file))
    }
}

/// The line's metadata as sent for a document encrypted here: the title leaves it,
/// sealed with the file name to the vault's key (`encryption.sealed_metadata`).
fn sealed_metadata_line(
    mut metadata: serde_json::Value,
    recipient: &VaultRecipient,
    file_name: &str,
) -> Result<Vec<u8>, crate::crypto::SealError> {
    let title = metadata
        .as_object_mut()
        .and_then(|fields| fields.remove("title"))
        .unwrap_or_default();
    let sealed = seal(
        recipient,
        serde_json::json!({ "title": title, "file_name": file_name })
            .to_string()
            .as_bytes(),
    )?;
    metadata["encryption"] = serde_json::json!({
        "recipient": recipient.to_string(),
        "sealed_metadata": crate::crypto::base64url(&sealed),
    });
    Ok(metadata.to_string().into_bytes())
}

/// The age file of `file` for the worker's recipient: its header, then the payload as
/// the file is read (bounded memory, whatever the file's size).
fn encrypted_stream(
    file: tokio::fs::File,
    worker: EncryptionWorker,
    header: Vec<u8>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let reader = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let state = (
        reader,
        Some(worker),
        Some(header),
        std::collections::VecDeque::new(),
    );
    futures::stream::try_unfold(
        state,
        |(mut reader, mut worker, mut header, mut ready)| async move {
            loop {
                if let Some(header) = header.take() {
                    return Ok(Some((
                        bytes::Bytes::from(header),
                        (reader, worker, None, ready),
                    )));
                }
                if let Some(next) = ready.pop_front() {
                    return Ok(Some((next, (reader, worker, header, ready))));
                }
                let Some(active) = worker.as_mut() else {
                    return Ok(None);
                };
                match reader.next().await {
                    Some(chunk) => ready.extend(active.push(chunk?).await?),
                    None => {
                        if let Some(active) = worker.take() {
                            let (rest, _) = active.finish().await?;
                            ready.extend(rest);
                        }
                    }
                }
            }
        },
    )
}

fn message_is_recipient_changed(message: &str) -> bool {
    message.contains("vault's key changed")
}

fn refused(reason: &str) -> LineOutcome {
    LineOutcome::Refused {
        reason: reason.to_owned(),
    }
}

/// What went wrong on the connection, without the URL (which may carry a token).
fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_connect() {
        "connection refused"
    } else if error.is_timeout() {
        "timeout"
    } else {
        "connection lost"
    }
}

/// SHA-256 and size of a file, read in 64 KiB pieces.
pub async fn file_digest(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hash.update(&buffer[..read]);
    }
    Ok((hash.finalize().to_vec(), size))
}
