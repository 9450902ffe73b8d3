//! `POST /api/v1/documents` (multipart: `metadata` JSON, then `file`, streamed) and
//! `GET /api/v1/documents/{id}`.

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use serde::Serialize;

use super::ApiAgent;
use crate::agents::org_chart::AgentScope;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::vault::metadata::{MAX_METADATA_BYTES, safe_content_type, safe_file_name};
use crate::vault::{
    self, DeliveryMetadata, DocumentId, DocumentState, DocumentStatus, IdempotencyKey,
    IncomingFile, Upload,
};

/// Room for multipart boundaries and the metadata part on top of the document itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The multipart body (for the OpenAPI description).
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the multipart body in the OpenAPI document"
)]
pub struct DeliveryForm {
    /// JSON delivery metadata; must come first.
    #[schema(value_type = crate::vault::metadata::DeliveryMetadataInput)]
    metadata: String,
    /// The document itself.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The answer to a delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveredBody {
    pub id: String,
    pub state: DocumentState,
}

/// Deliver one document into a citizen's vault.
#[utoipa::path(
    post,
    path = "/api/v1/documents",
    request_body(content = DeliveryForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe: the same key with the same body gives the same document")),
    responses(
        (status = 201, description = "Stored, encrypted", body = DeliveredBody),
        (status = 400, description = "Malformed or incomplete upload", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Role may not deliver", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 413, description = "Document over the size limit", body = ErrorBody),
        (status = 422, description = "Invalid metadata, recipient or department", body = ErrorBody),
        (status = 503, description = "Database or object store unavailable", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn deliver_document(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    request: HttpRequest,
    mut body: Multipart,
) -> Result<HttpResponse, ApiError> {
    if !agent.role.can_deliver() {
        return Err(vault::DocumentError::Forbidden.into());
    }
    let limit = state.config.limits.max_document_bytes;
    if declared_length(&request).is_some_and(|length| length > limit + MULTIPART_OVERHEAD) {
        return Err(vault::DocumentError::TooLarge { limit }.into());
    }
    let idempotency_key = request
        .headers()
        .get("Idempotency-Key")
        .map(|value| IdempotencyKey::parse(value.to_str().unwrap_or_default()))
        .transpose()?;

    let mut metadata_part = next_part(&mut body, "metadata").await?;
    let raw_metadata = read_small_part(&mut metadata_part).await?;
    // The multipart stream only moves on once the previous part is released.
    drop(metadata_part);
    let metadata = DeliveryMetadata::parse(&raw_metadata).map_err(vault::DocumentError::from)?;

    let mut file_part = next_part(&mut body, "file").await?;
    let file = IncomingFile {
        file_name: safe_file_name(
            file_part
                .content_disposition()
                .and_then(|disposition| disposition.get_filename()),
        ),
        content_type: safe_content_type(file_part.content_type().map(|mime| mime.essence_str())),
    };
    let mut upload = vault::begin_delivery(
        &state,
        &agent,
        metadata,
        &raw_metadata,
        file,
        idempotency_key,
    )
    .await?;

    match stream_file(&mut file_part, &mut upload).await {
        Ok(()) => drop(file_part),
        Err(error) => {
            upload.abandon().await;
            drain_rest(file_part, body, limit).await;
            return Err(error);
        }
    }
    if let Err(error) = expect_end(&mut body).await {
        upload.abandon().await;
        return Err(error);
    }
    let delivered = upload.finish().await?;
    let mut response = HttpResponse::Created();
    if delivered.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(DeliveredBody {
        id: delivered.id.0,
        state: DocumentState::Stored,
    }))
}

/// Where a document stands; the title and recipient are never shown.
#[utoipa::path(
    get,
    path = "/api/v1/documents/{id}",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, body = DocumentStatus),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Role may not follow deliveries", body = ErrorBody),
        (status = 404, description = "No such document within the agent's reach", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn document_status(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    path: web::Path<String>,
) -> Result<web::Json<DocumentStatus>, ApiError> {
    // The same roles as the deliveries pages: those who deliver follow deliveries.
    if !agent.role.can_deliver() {
        return Err(vault::DocumentError::Forbidden.into());
    }
    let id = DocumentId::parse(&path).ok_or_else(ApiError::not_found)?;
    let status = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let scope = AgentScope::load(conn, &agent)?;
            vault::deliveries::delivery_status(conn, &scope, &id)
        })
        .await?;
    status.map(web::Json).ok_or_else(ApiError::not_found)
}

/// Why a document is withdrawn.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalBody {
    /// Shown to the citizen: 1 to 500 characters.
    pub reason: String,
}

/// Withdraw a document: the citizen sees that it was withdrawn and why, and it can no
/// longer be opened.
#[utoipa::path(
    post,
    path = "/api/v1/documents/{id}/withdraw",
    params(("id" = String, Path, description = "Document id")),
    request_body = WithdrawalBody,
    responses(
        (status = 200, body = DocumentStatus),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Role may not withdraw", body = ErrorBody),
        (status = 404, description = "No such document within the agent's reach", body = ErrorBody),
        (status = 409, description = "Already withdrawn", body = ErrorBody),
        (status = 422, description = "Missing or overlong reason", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn withdraw_document(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    path: web::Path<String>,
    body: web::Json<WithdrawalBody>,
) -> Result<web::Json<DocumentStatus>, ApiError> {
    let id = DocumentId::parse(&path).ok_or_else(ApiError::not_found)?;
    let reason = vault::deliveries::WithdrawalReason::parse(&body.reason)?;
    vault::deliveries::withdraw(&state, &agent, id.clone(), reason).await?;
    let status = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let scope = AgentScope::load(conn, &agent)?;
            vault::deliveries::delivery_status(conn, &scope, &id)
        })
        .await?;
    status.map(web::Json).ok_or_else(ApiError::not_found)
}

fn declared_length(request: &HttpRequest) -> Option<u64> {
    request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The next part, which must be called `name`.
async fn next_part(body: &mut Multipart, name: &str) -> Result<Field, ApiError> {
    match body.next().await {
        Some(Ok(field)) if field.name() == Some(name) => Ok(field),
        Some(Ok(field)) => Err(ApiError::bad_request(
            "unexpected_part",
            format!(
                "expected the part {name:?} here, got {:?}; send `metadata` first, then `file`",
                field.name().unwrap_or_default()
            ),
        )),
        Some(Err(error)) => Err(multipart_error(error)),
        None => Err(ApiError::bad_request(
            if name == "metadata" {
                "missing_metadata"
            } else {
                "missing_file"
            },
            format!("the multipart body has no {name:?} part"),
        )),
    }
}

async fn read_small_part(field: &mut Field) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(multipart_error)?;
        if bytes.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "metadata_too_large",
                format!("the metadata part is limited to {MAX_METADATA_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn stream_file(field: &mut Field, upload: &mut Upload) -> Result<(), ApiError> {
    while let Some(chunk) = field.next().await {
        upload.push(chunk.map_err(multipart_error)?).await?;
    }
    Ok(())
}

/// Reads and discards what the client is still sending (up to about the size limit),
/// so that it receives the error answer instead of a connection reset mid-upload.
async fn drain_rest(mut field: Field, mut body: Multipart, limit: u64) {
    let mut drained: u64 = 0;
    while let Some(Ok(chunk)) = field.next().await {
        drained += chunk.len() as u64;
        if drained > limit + MULTIPART_OVERHEAD {
            return;
        }
    }
    drop(field);
    while let Some(Ok(mut next)) = body.next().await {
        while let Some(Ok(chunk)) = next.next().await {
            drained += chunk.len() as u64;
            if drained > limit + MULTIPART_OVERHEAD {
                return;
            }
        }
    }
}

/// Nothing may follow the file part.
async fn expect_end(body: &mut Multipart) -> Result<(), ApiError> {
    match body.next().await {
        None => Ok(()),
        Some(Ok(field)) => Err(ApiError::bad_request(
            "unexpected_part",
            format!(
                "nothing may follow the file part, got {:?}",
                field.name().unwrap_or_default()
            ),
        )),
        Some(Err(error)) => Err(multipart_error(error)),
    }
}

fn multipart_error(error: MultipartError) -> ApiError {
    match error {
        MultipartError::Incomplete | MultipartError::Payload(_) => ApiError::bad_request(
            "incomplete_upload",
            "the upload ended before the multipart body was complete; nothing was stored",
        )
        .with_cause(error),
        other => ApiError::bad_request(
            "malformed_upload",
            "the body must be multipart/form-data with a `metadata` part then a `file` part",
        )
        .with_cause(other),
    }
}
