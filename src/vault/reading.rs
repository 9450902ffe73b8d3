//! Opening a document for its citizen: unwrap their vault key, unseal the metadata,
//! stream the payload back through age. Every opening is audited; the first is
//! recorded on the document.

use bytes::Bytes;
use diesel::prelude::*;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::io::ReaderStream;

use super::delivery::{SealedMetadata, recorded_digest};
use super::{DocumentError, DocumentId};
use crate::audit::{self, Actor, AuditEvent};
use crate::citizens::{self, VaultAccess};
use crate::crypto::{decrypt_document, unseal};
use crate::db::schema::documents;
use crate::state::AppState;
use crate::storage::BlobKey;

/// A document being read: its unsealed metadata and a stream of plaintext.
pub struct OpenedDocument<S> {
    pub metadata: SealedMetadata,
    pub content_type: String,
    pub size: i64,
    /// Plaintext; ends with an error if the payload was truncated or altered.
    pub content: S,
}

/// Opens `id` for `citizen_id` (who must be its recipient).
pub async fn open_document(
    state: &AppState,
    citizen_id: &str,
    id: &DocumentId,
) -> Result<OpenedDocument<impl Stream<Item = std::io::Result<Bytes>> + use<>>, DocumentError> {
    let (citizen, document_id, keys) = (citizen_id.to_owned(), id.0.clone(), state.keys.clone());
    let (row, identity) = state
        .db
        .read(move |conn| -> Result<_, DocumentError> {
            let row: (String, String, Vec<u8>, Vec<u8>, String, i64, String, i64) =
                documents::table
                    .filter(documents::id.eq(&document_id))
                    .filter(documents::citizen_id.eq(&citizen))
                    .filter(documents::withdrawn_at.is_null())
                    .filter(documents::unrecoverable_at.is_null())
                    .select((
                        documents::tenant_id,
                        documents::content_type,
                        documents::sealed_metadata,
                        documents::age_header,
                        documents::blob_key,
                        documents::ciphertext_size,
                        documents::ciphertext_sha256,
                        documents::plaintext_size,
                    ))
                    .first(conn)
                    .optional()?
                    .ok_or(DocumentError::NotFound)?;
            let VaultAccess::Escrowed(identity) =
                citizens::vault_access(conn, &keys.master, &citizen)?
            else {
                return Err(DocumentError::NotFound);
            };
            Ok((row, identity))
        })
        .await?;
    let (tenant_id, content_type, sealed, header, blob_key, cipher_size, cipher_sha, size) = row;
    let metadata: SealedMetadata = serde_json::from_slice(&unseal(&identity, &sealed)?)
        .map_err(|error| DocumentError::Internal(format!("sealed metadata: {error}")))?;

    let (key, digest) = (
        BlobKey::from_stored(blob_key),
        recorded_digest(cipher_size, cipher_sha),
    );
    // A first pass checks the stored ciphertext against its recorded digest, so that a
    // tampered payload is refused before the first byte reaches the citizen.
    state.storage.verify(&key, digest.clone()).await?;
    let payload = state
        .storage
        .read_verified(&key, digest)
        .await?
        .into_async_read();
    let plaintext = decrypt_document(&identity, header, payload).await?;

    record_opening(state, &tenant_id, citizen_id, id).await?;
    Ok(OpenedDocument {
        metadata,
        content_type,
        size,
        // age releases plaintext 64 KiB at a time; read it in pieces of that size.
        content: ReaderStream::with_capacity(plaintext.compat(), 64 * 1024),
    })
}

async fn record_opening(
    state: &AppState,
    tenant_id: &str,
    citizen_id: &str,
    id: &DocumentId,
) -> Result<(), DocumentError> {
    let (tenant_id, citizen_id, id) = (tenant_id.to_owned(), citizen_id.to_owned(), id.0.clone());
    state
        .db
        .write(move |conn| -> Result<(), DocumentError> {
            let now = crate::now();
            let first = diesel::update(documents::table.find(&id))
                .filter(documents::first_opened_at.is_null())
                .set(documents::first_opened_at.eq(now))
                .execute(conn)?
                == 1;
            if first {
                crate::dashboard::rollups::count_first_opening(conn, &id, now)?;
            }
            audit::record(
                conn,
                AuditEvent::new(Actor::Citizen(citizen_id.clone()), "document.opened")
                    .tenant(&tenant_id)
                    .subject("document", &id)
                    .citizen(&citizen_id)
                    .details(serde_json::json!({ "first": first })),
            )?;
            Ok(())
        })
        .await
}

/// Convenience for tests and tools: the whole plaintext of a small document.
pub async fn read_to_vec<S>(stream: S) -> std::io::Result<Vec<u8>>
where
    S: Stream<Item = std::io::Result<Bytes>>,
{
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
}

/// A document as stored, for the citizen's page to decrypt: its age header, then its
/// payload. The server opens nothing; fetching it counts as opening the document.
pub struct EncryptedDocument<S> {
    pub header_length: usize,
    /// Header and payload together.
    pub length: u64,
    /// The header, then the payload as the object store holds it (checked against its
    /// recorded digest on the way: a tampered payload ends the stream with an error,
    /// and the page's age decryption refuses it in any case).
    pub content: S,
}

/// The stored ciphertext of `id` for `citizen_id` (who must be its recipient).
pub async fn encrypted_document(
    state: &AppState,
    citizen_id: &str,
    id: &DocumentId,
) -> Result<EncryptedDocument<impl Stream<Item = std::io::Result<Bytes>> + use<>>, DocumentError> {
    let (citizen, document_id) = (citizen_id.to_owned(), id.0.clone());
    let (tenant_id, header, blob_key, cipher_size, cipher_sha) = state
        .db
        .read(move |conn| -> Result<_, DocumentError> {
            documents::table
                .filter(documents::id.eq(&document_id))
                .filter(documents::citizen_id.eq(&citizen))
                .filter(documents::withdrawn_at.is_null())
                .filter(documents::unrecoverable_at.is_null())
                .select((
                    documents::tenant_id,
                    documents::age_header,
                    documents::blob_key,
                    documents::ciphertext_size,
                    documents::ciphertext_sha256,
                ))
                .first::<(String, Vec<u8>, String, i64, String)>(conn)
                .optional()?
                .ok_or(DocumentError::NotFound)
        })
        .await?;
    let digest = recorded_digest(cipher_size, cipher_sha);
    let length = digest.size + header.len() as u64;
    let payload = state
        .storage
        .read_verified(&BlobKey::from_stored(blob_key), digest)
        .await?;
    record_opening(state, &tenant_id, citizen_id, id).await?;
    let header_length = header.len();
    let content = futures::stream::once(async move { Ok(Bytes::from(header)) }).chain(payload);
    Ok(EncryptedDocument {
        header_length,
        length,
        content,
    })
}
