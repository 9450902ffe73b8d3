//! Delivering a document: resolve the recipient, then stream the file through age into
//! the object store, then commit the document row and its audit event together. If
//! anything fails before the commit, the stored payload is removed.

use bytes::{Bytes, BytesMut};

/// Plaintext handed to the encryption worker at a time.
const BATCH_BYTES: usize = 256 * 1024;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::metadata::{Contact, DeliveryMetadata, Recipient};
use super::sender_encrypted::SenderStream;
use super::{DocumentError, DocumentId};
use crate::agents::Agent;
use crate::agents::org_chart::AgentScope;
use crate::audit::{self, Actor, AuditEvent};
use crate::citizens::{self, CitizenKey, RecipientIndex};
use crate::crypto::{EncryptionWorker, HashDomain, seal};
use crate::dashboard::{self, rollups::DocumentGroup};
use crate::db::schema::documents;
use crate::state::AppState;
use crate::storage::{BlobDigest, BlobKey, PendingBlob};
use crate::tenants::{self, Slug};

/// How a manifest line's idempotency key starts (followed by 64 hexadecimal digits).
pub const MANIFEST_LINE_KEY_PREFIX: &str = "bulk-";

/// A client-chosen key that makes a retried delivery safe.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    key: String,
    scope: IdempotencyScope,
}

/// Whose deliveries a key is unique among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdempotencyScope {
    /// A key the client chose: another agent may choose the same one for another thing.
    Agent,
    /// A manifest line's key, derived from the line and its file: whichever agent of
    /// the commune runs the manifest, from the browser or the command line, the line
    /// is the same delivery.
    Tenant,
}

impl IdempotencyScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Tenant => "tenant",
        }
    }
}

impl IdempotencyKey {
    /// What any `Idempotency-Key` of the API must be: 1 to 200 visible ASCII characters.
    pub fn is_well_formed(text: &str) -> bool {
        (1..=200).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
    }

    /// A well-formed key (see [`Self::is_well_formed`]). A manifest line's key is the
    /// tenant's.
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        if Self::is_well_formed(text) {
            let manifest_line = text
                .strip_prefix(MANIFEST_LINE_KEY_PREFIX)
                .is_some_and(|hash| {
                    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                });
            let scope = if manifest_line {
                IdempotencyScope::Tenant
            } else {
                IdempotencyScope::Agent
            };
            Ok(Self {
                key: text.to_owned(),
                scope,
            })
        } else {
            Err(DocumentError::InvalidRequest(
                "Idempotency-Key must be 1 to 200 visible ASCII characters".to_owned(),
            ))
        }
    }
}

/// The file part as announced by the client.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    pub file_name: String,
    pub content_type: String,
}

/// What is sealed to the citizen next to each document: everything about it that
/// could tell something about the person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedMetadata {
    pub title: String,
    pub file_name: String,
    /// The recipient as the agent named them (canonical pivot, NRN or citizen id);
    /// empty in what a sender sealed.
    #[serde(default)]
    pub addressed_to: String,
    #[serde(default)]
    pub contact: Option<Contact>,
}

/// The result of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: DocumentId,
    /// True when an earlier request with the same idempotency key already stored it.
    pub replayed: bool,
}

/// A delivery whose file is streaming in.
pub enum Upload {
    /// A new document: bytes are encrypted and stored.
    New(Box<NewUpload>),
    /// A retry of a request already carried out: bytes are only fingerprinted, to
    /// check that they are the same as the first time.
    Replay(Box<ReplayUpload>),
}

pub struct NewUpload {
    state: AppState,
    agent: Agent,
    citizen_id: String,
    department_id: Option<String>,
    category: String,
    content_type: String,
    sealed_metadata: Vec<u8>,
    encoding: Encoding,
    blob: PendingBlob,
    plaintext_size: u64,
    /// The key, the request's fingerprint, and whether it leaves the content out.
    idempotency: Option<(IdempotencyKey, Fingerprint, bool)>,
    /// Who to tell, decided (and sealed) before the commit.
    notices: crate::notify::NoticeTargets,
}

/// Who encrypts the incoming bytes.
enum Encoding {
    /// The server, as they arrive.
    Server {
        worker: EncryptionWorker,
        /// Plaintext gathered into larger pieces before it crosses to the worker
        /// thread: fewer hand-overs, each worth more work.
        batch: BytesMut,
        header: Vec<u8>,
    },
    /// The sender did: an age file, stored as it is.
    Sender(Box<SenderStream>),
}

pub struct ReplayUpload {
    existing: DocumentId,
    stored_fingerprint: Option<String>,
    fingerprint: Fingerprint,
    /// The bytes' hash; `None` for a sender-encrypted document (see [`Fingerprint::start`]).
    content: Option<Sha256>,
    plaintext_size: u64,
    limit: u64,
}

/// A keyed hash of everything that makes two delivery requests the same: the
/// metadata, the file part's headers and the SHA-256 of the file.
struct Fingerprint {
    request: crate::crypto::KeyedHash,
}

impl Fingerprint {
    /// With `without_content`, the title, the sealed metadata and the bytes are left
    /// out: a sender-encrypted delivery is encrypted afresh on every retry (they differ
    /// each time), and a manifest line's key already stands for the line and its file,
    /// so that the line is the same delivery whether the command line encrypted it or
    /// the server did.
    fn start(
        state: &AppState,
        raw_metadata: &[u8],
        file: &IncomingFile,
        without_content: bool,
    ) -> Self {
        let metadata = if without_content {
            let mut value: serde_json::Value =
                serde_json::from_slice(raw_metadata).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                fields.remove("title");
                fields.remove("encryption");
            }
            value.to_string().into_bytes()
        } else {
            raw_metadata.to_vec()
        };
        let request = state
            .keys
            .hasher
            .start(HashDomain::DeliveryRequest)
            .part(&metadata)
            .part(file.file_name.as_bytes())
            .part(file.content_type.as_bytes());
        Self { request }
    }

    fn finish(self, content_sha256: &[u8]) -> String {
        self.request.part(content_sha256).finish()
    }
}

/// Starts a delivery once the metadata and the file part's headers are known.
pub async fn begin_delivery(
    state: &AppState,
    agent: &Agent,
    metadata: DeliveryMetadata,
    raw_metadata: &[u8],
    file: IncomingFile,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Upload, DocumentError> {
    if !agent.role.can_deliver() {
        return Err(DocumentError::Forbidden);
    }
    let limit = state.config.limits.max_document_bytes;
    // See [`Fingerprint::start`].
    let without_content = metadata.encryption.is_some()
        || idempotency_key
            .as_ref()
            .is_some_and(|key| key.scope == IdempotencyScope::Tenant);
    if let Some(key) = &idempotency_key
        && let Some((existing, stored_fingerprint)) =
            find_by_idempotency_key(state, agent, key).await?
    {
        return Ok(Upload::Replay(Box::new(ReplayUpload {
            existing,
            stored_fingerprint,
            fingerprint: Fingerprint::start(state, raw_metadata, &file, without_content),
            content: (!without_content).then(Sha256::new),
            plaintext_size: 0,
            limit,
        })));
    }

    let department_id = resolve_department(state, agent, metadata.department.as_ref()).await?;
    let (citizen, addressed_to) = resolve_recipient(state, &metadata.recipient).await?;
    let notices = crate::notify::notice_targets(state, &citizen, metadata.contact.as_ref()).await?;

    let (sealed_metadata, encoding) = match &metadata.encryption {
        // Encrypted for a key the vault no longer has (it was locked meanwhile): the
        // citizen could never open it.
        Some(sent) if sent.recipient != citizen.recipient.to_string() => {
            return Err(DocumentError::RecipientChanged);
        }
        Some(sent) => (
            sent.sealed_metadata.clone(),
            Encoding::Sender(Box::default()),
        ),
        None => {
            let sealed = seal(
                &citizen.recipient,
                &serde_json::to_vec(&SealedMetadata {
                    title: metadata.title.clone(),
                    file_name: file.file_name.clone(),
                    addressed_to,
                    contact: metadata.contact.clone(),
                })
                .map_err(|error| DocumentError::Internal(error.to_string()))?,
            )?;
            let (worker, header) =
                EncryptionWorker::start(&citizen.recipient, idempotency_key.is_some())?;
            let encoding = Encoding::Server {
                worker,
                batch: BytesMut::with_capacity(BATCH_BYTES),
                header,
            };
            (sealed, encoding)
        }
    };
    let idempotency = idempotency_key.map(|key| {
        let fingerprint = Fingerprint::start(state, raw_metadata, &file, without_content);
        (key, fingerprint, without_content)
    });
    Ok(Upload::New(Box::new(NewUpload {
        state: state.clone(),
        agent: agent.clone(),
        citizen_id: citizen.id,
        department_id,
        category: metadata.category.as_str().to_owned(),
        content_type: file.content_type,
        sealed_metadata,
        encoding,
        blob: state.storage.start_upload(BlobKey::new_document()),
        plaintext_size: 0,
        idempotency,
        notices,
    })))
}

/// The department a delivery goes to: the one named, if the agent works for it and it
/// is not archived; otherwise the agent's only department, or none for admins and
/// agents of a commune without an org chart.
async fn resolve_department(
    state: &AppState,
    agent: &Agent,
    slug: Option<&Slug>,
) -> Result<Option<String>, DocumentError> {
    let (agent, slug) = (agent.clone(), slug.map(|slug| slug.as_str().to_owned()));
    state
        .db
        .read(move |conn| -> Result<Option<String>, DocumentError> {
            let scope = AgentScope::load(conn, &agent)?;
            let Some(slug) = slug else {
                return match scope.implied_department() {
                    Some(id) => Ok(Some(id.to_owned())),
                    None if scope.may_deliver_without_department() => Ok(None),
                    None => Err(DocumentError::DepartmentRequired),
                };
            };
            let department = tenants::find_department(conn, &agent.tenant_id, &slug)?
                .ok_or(DocumentError::UnknownDepartment)?;
            if !scope.covers_department(&department.id) {
                return Err(DocumentError::DepartmentNotAllowed);
            }
            if department.is_archived() {
                return Err(DocumentError::ArchivedDepartment);
            }
            Ok(Some(department.id))
        })
        .await
}

/// Finds or creates the citizen the agent named; returns them and how they were named.
pub(crate) async fn resolve_recipient(
    state: &AppState,
    recipient: &Recipient,
) -> Result<(CitizenKey, String), DocumentError> {
    match recipient {
        Recipient::CitizenId(id) => {
            let lookup = id.clone();
            let citizen = state
                .db
                .read(move |conn| citizens::find_citizen(conn, &lookup))
                .await?
                .ok_or(DocumentError::UnknownRecipient)?;
            Ok((citizen, format!("citizen:{id}")))
        }
        Recipient::Pivot(pivot) => {
            let index = RecipientIndex::of_pivot(&state.keys.hasher, pivot);
            let citizen = find_or_create(state, index).await?;
            Ok((citizen, format!("pivot:{}", pivot.canonical())))
        }
        Recipient::NationalRegisterNumber(nrn) => {
            let index = RecipientIndex::of_nrn(&state.keys.hasher, nrn);
            let citizen = find_or_create(state, index).await?;
            Ok((citizen, format!("nrn:{}", nrn.as_str())))
        }
    }
}

async fn find_or_create(
    state: &AppState,
    index: RecipientIndex,
) -> Result<CitizenKey, DocumentError> {
    let keys = state.keys.clone();
    state
        .db
        .write(move |conn| -> Result<CitizenKey, DocumentError> {
            Ok(citizens::find_or_create_citizen(
                conn,
                &keys.master,
                &index,
            )?)
        })
        .await
}

/// The document an earlier request with this key stored: the agent's own for a key
/// they chose, any agent's of the tenant for a manifest line.
async fn find_by_idempotency_key(
    state: &AppState,
    agent: &Agent,
    key: &IdempotencyKey,
) -> Result<Option<(DocumentId, Option<String>)>, DocumentError> {
    let (agent, key) = (agent.clone(), key.clone());
    state
        .db
        .read(move |conn| -> Result<_, DocumentError> {
            let same_key = documents::table
                .filter(documents::idempotency_key.eq(&key.key))
                .select((documents::id, documents::request_fingerprint));
            let found: Option<(String, Option<String>)> = match key.scope {
                IdempotencyScope::Agent => same_key
                    .filter(documents::agent_id.eq(&agent.id))
                    .first(conn)
                    .optional()?,
                IdempotencyScope::Tenant => same_key
                    .filter(documents::tenant_id.eq(&agent.tenant_id))
                    .filter(documents::idempotency_scope.eq(IdempotencyScope::Tenant.as_str()))
                    .first(conn)
                    .optional()?,
            };
            Ok(found.map(|(id, fingerprint)| (DocumentId(id), fingerprint)))
        })
        .await
}

impl Upload {
    /// Takes the next chunk of the file.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), DocumentError> {
        match self {
            Self::New(upload) => upload.push(chunk).await,
            Self::Replay(replay) => {
                replay.plaintext_size += chunk.len() as u64;
                if replay.plaintext_size > replay.limit {
                    return Err(DocumentError::TooLarge {
                        limit: replay.limit,
                    });
                }
                if let Some(content) = &mut replay.content {
                    content.update(&chunk);
                }
                Ok(())
            }
        }
    }

    /// The file has been received completely: store it, or confirm the replay.
    pub async fn finish(self) -> Result<Delivered, DocumentError> {
        match self {
            Self::New(upload) => upload.finish().await,
            Self::Replay(replay) => {
                let ReplayUpload {
                    existing,
                    stored_fingerprint,
                    fingerprint,
                    content,
                    ..
                } = *replay;
                let content = content
                    .map(|hash| hash.finalize().to_vec())
                    .unwrap_or_default();
                if stored_fingerprint.as_deref() == Some(&fingerprint.finish(&content)) {
                    Ok(Delivered {
                        id: existing,
                        replayed: true,
                    })
                } else {
                    Err(DocumentError::IdempotencyConflict)
                }
            }
        }
    }

    /// The request failed: remove whatever was stored.
    pub async fn abandon(self) {
        if let Self::New(upload) = self {
            upload.blob.discard().await;
        }
    }
}

impl NewUpload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), DocumentError> {
        let limit = self.state.config.limits.max_document_bytes;
        match &mut self.encoding {
            Encoding::Server { worker, batch, .. } => {
                self.plaintext_size += chunk.len() as u64;
                if self.plaintext_size > limit {
                    return Err(DocumentError::TooLarge { limit });
                }
                batch.extend_from_slice(&chunk);
                if batch.len() >= BATCH_BYTES {
                    let full = batch.split().freeze();
                    batch.reserve(BATCH_BYTES);
                    for ciphertext in worker.push(full).await? {
                        self.blob.write(ciphertext).await?;
                    }
                }
            }
            Encoding::Sender(stream) => {
                if let Some(payload) = stream.push(chunk, limit)? {
                    self.blob.write(payload).await?;
                }
            }
        }
        Ok(())
    }

    async fn finish(self) -> Result<Delivered, DocumentError> {
        let Self {
            state,
            agent,
            citizen_id,
            department_id,
            category,
            content_type,
            sealed_metadata,
            encoding,
            mut blob,
            plaintext_size,
            idempotency,
            notices,
        } = self;
        let limit = state.config.limits.max_document_bytes;
        let encrypted_by = match &encoding {
            Encoding::Server { .. } => super::ENCRYPTED_BY_SERVER,
            Encoding::Sender(_) => super::ENCRYPTED_BY_SENDER,
        };
        let stored = async {
            let stored = match encoding {
                Encoding::Server {
                    mut worker,
                    batch,
                    header,
                } => {
                    if plaintext_size == 0 {
                        return Err(DocumentError::EmptyDocument);
                    }
                    if !batch.is_empty() {
                        for ciphertext in worker.push(batch.freeze()).await? {
                            blob.write(ciphertext).await?;
                        }
                    }
                    let (rest, digest) = worker.finish().await?;
                    for ciphertext in rest {
                        blob.write(ciphertext).await?;
                    }
                    StoredPayload {
                        header,
                        ciphertext_size: digest.ciphertext_size,
                        ciphertext_sha256: digest.ciphertext_sha256,
                        plaintext_size,
                        content_sha256: digest.plaintext_sha256.unwrap_or_default().to_vec(),
                    }
                }
                Encoding::Sender(stream) => {
                    let sent = stream.finish(limit)?;
                    StoredPayload {
                        header: sent.header,
                        ciphertext_size: sent.payload_size,
                        ciphertext_sha256: sent.payload_sha256,
                        plaintext_size: sent.plaintext_size,
                        content_sha256: sent.received_sha256,
                    }
                }
            };
            let size = blob.complete().await?;
            if size != stored.ciphertext_size {
                return Err(DocumentError::Internal(
                    "ciphertext size mismatch".to_owned(),
                ));
            }
            Ok::<_, DocumentError>(stored)
        }
        .await;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                blob.discard().await;
                return Err(error);
            }
        };
        let (idempotency_key, idempotency_scope, request_fingerprint) = match idempotency {
            Some((key, fingerprint, without_content)) => {
                let scope = key.scope.as_str().to_owned();
                let content = if without_content {
                    &[]
                } else {
                    stored.content_sha256.as_slice()
                };
                let fingerprint = fingerprint.finish(content);
                (Some(key), Some(scope), Some(fingerprint))
            }
            None => (None, None, None),
        };
        let row = NewDocument {
            id: crate::new_id(),
            tenant_id: agent.tenant_id.clone(),
            department_id,
            agent_id: agent.id.clone(),
            citizen_id,
            category,
            content_type,
            sealed_metadata,
            age_header: stored.header,
            blob_key: blob.key().as_str().to_owned(),
            ciphertext_size: to_i64(stored.ciphertext_size)?,
            ciphertext_sha256: stored.ciphertext_sha256,
            plaintext_size: to_i64(stored.plaintext_size)?,
            idempotency_key: idempotency_key.as_ref().map(|key| key.key.clone()),
            idempotency_scope,
            request_fingerprint,
            created_at: crate::now(),
            encrypted_by: encrypted_by.to_owned(),
        };
        let committed = commit_document(&state, row.clone(), notices).await;
        match committed {
            Ok(()) => {
                blob.keep();
                tracing::info!(document.id = %row.id, tenant.id = %row.tenant_id, document.size = row.plaintext_size, document.encrypted_by = encrypted_by, "document delivered");
                Ok(Delivered {
                    id: DocumentId(row.id),
                    replayed: false,
                })
            }
            Err(error) => {
                blob.discard().await;
                // Two identical requests raced: the other one stored the document.
                if let (DocumentError::Database(db_error), Some(key)) = (&error, &idempotency_key)
                    && db_error.is_unique_violation()
                    && let Some((existing, stored)) =
                        find_by_idempotency_key(&state, &agent, key).await?
                {
                    return if stored == row.request_fingerprint {
                        Ok(Delivered {
                            id: existing,
                            replayed: true,
                        })
                    } else {
                        Err(DocumentError::IdempotencyConflict)
                    };
                }
                Err(error)
            }
        }
    }
}

fn to_i64(size: u64) -> Result<i64, DocumentError> {
    i64::try_from(size).map_err(|_| DocumentError::Internal("size overflow".to_owned()))
}

#[derive(Clone, Insertable)]
#[diesel(table_name = documents)]
struct NewDocument {
    id: String,
    tenant_id: String,
    department_id: Option<String>,
    agent_id: String,
    citizen_id: String,
    category: String,
    content_type: String,
    sealed_metadata: Vec<u8>,
    age_header: Vec<u8>,
    blob_key: String,
    ciphertext_size: i64,
    ciphertext_sha256: String,
    plaintext_size: i64,
    idempotency_key: Option<String>,
    /// `agent` or `tenant` (see [`IdempotencyScope`]) when there is a key.
    idempotency_scope: Option<String>,
    request_fingerprint: Option<String>,
    created_at: chrono::NaiveDateTime,
    /// `server` or `sender` (end to end).
    encrypted_by: String,
}

/// What was stored of a document's bytes, whoever encrypted them.
struct StoredPayload {
    header: Vec<u8>,
    ciphertext_size: u64,
    ciphertext_sha256: String,
    plaintext_size: u64,
    /// SHA-256 of the bytes received (the request's fingerprint).
    content_sha256: Vec<u8>,
}

/// Writes the document row, its audit event and its notices in one transaction.
async fn commit_document(
    state: &AppState,
    row: NewDocument,
    notices: crate::notify::NoticeTargets,
) -> Result<(), DocumentError> {
    let coalesce = std::time::Duration::from_secs(state.config.notify.coalesce_seconds);
    state
        .db
        .write(move |conn| -> Result<(), DocumentError> {
            diesel::insert_into(documents::table)
                .values(&row)
                .execute(conn)
                .map_err(crate::db::DbError::from)?;
            let group = DocumentGroup::new(
                &row.tenant_id,
                row.department_id.as_deref(),
                &row.category,
                row.created_at,
            );
            dashboard::rollups::count_delivery(conn, &group)?;
            audit::record(
                conn,
                AuditEvent::new(Actor::Agent(row.agent_id.clone()), "document.delivered")
                    .tenant(&row.tenant_id)
                    .subject("document", &row.id)
                    .citizen(&row.citizen_id)
                    .details(serde_json::json!({
                        "category": row.category,
                        "department_id": row.department_id,
                        "size": row.plaintext_size,
                    })),
            )?;
            let (tenant, citizen) = (&row.tenant_id, &row.citizen_id);
            crate::notify::enqueue_document_notices(
                conn, tenant, citizen, &row.id, &notices, coalesce,
            )?;
            Ok(())
        })
        .await
}

/// The digest recorded for a stored document (used when reading it back).
pub(super) fn recorded_digest(size: i64, sha256: String) -> BlobDigest {
    BlobDigest {
        size: u64::try_from(size).unwrap_or_default(),
        sha256,
    }
}
