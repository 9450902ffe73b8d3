//! `POST /api/v1/bulk-jobs` (multipart: `manifest`, then one `archive` ZIP or several
//! `file` parts) and `GET /api/v1/bulk-jobs/{id}`: the browser's way to deliver a
//! manifest's documents, run by the server in the background.

use actix_multipart::{Field, Multipart};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use serde::Serialize;

use super::ApiAgent;
use crate::bulk::{self, BulkError, JobId, JobReport, JobScope, Manifest, StagedFiles};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The multipart body (for the OpenAPI description).
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the multipart body in the OpenAPI document"
)]
pub struct BulkJobForm {
    /// The CSV manifest; must come first.
    #[schema(value_type = String, format = Binary)]
    manifest: Vec<u8>,
    /// A ZIP holding the files the manifest names (or else `file` parts).
    #[schema(value_type = Option<String>, format = Binary)]
    archive: Option<Vec<u8>>,
    /// One part per file, its file name being the manifest's `file` value.
    #[schema(value_type = Option<Vec<String>>, format = Binary)]
    file: Option<Vec<Vec<u8>>>,
}

/// The answer to a started job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StartedBody {
    pub id: String,
}

/// Start a bulk delivery; it runs in the background.
#[utoipa::path(
    post,
    path = "/api/v1/bulk-jobs",
    request_body(content = BulkJobForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Job started; follow it with GET", body = StartedBody),
        (status = 400, description = "Malformed upload, unsafe archive or file name", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, description = "Manifest or upload over the limits", body = ErrorBody),
        (status = 422, description = "Manifest unusable as a whole", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn start_bulk_job(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    mut body: Multipart,
) -> Result<HttpResponse, ApiError> {
    if !agent.role.can_deliver() {
        return Err(BulkError::Forbidden.into());
    }
    let limits = &state.config.limits;
    let manifest = match body.next().await {
        Some(Ok(mut field)) if field.name() == Some("manifest") => {
            let bytes = read_manifest(&mut field, limits.max_manifest_bytes).await?;
            Manifest::parse(&bytes, limits.manifest()).map_err(BulkError::from)?
        }
        _ => {
            return Err(ApiError::bad_request(
                "missing_manifest",
                "the first part must be the CSV `manifest`",
            ));
        }
    };
    let job = bulk::open_job(
        &state,
        &agent,
        manifest.lines.len() + manifest.refused.len(),
    )
    .await?;
    let staged = match stage_parts(&state, &manifest, &mut body).await {
        Ok(staged) => staged,
        Err(error) => {
            bulk::abandon_job(&state, &job).await;
            return Err(error);
        }
    };
    bulk::start_job(&state, &agent, &job, manifest, staged).await?;
    Ok(HttpResponse::Accepted().json(StartedBody { id: job.0 }))
}

async fn read_manifest(field: &mut Field, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|error| incomplete().with_cause(error))?;
        if bytes.len() + chunk.len() > limit {
            return Err(BulkError::Manifest(bulk::ManifestError::TooLarge { limit }).into());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn stage_parts(
    state: &AppState,
    manifest: &Manifest,
    body: &mut Multipart,
) -> Result<StagedFiles, ApiError> {
    let limits = &state.config.limits;
    let data_dir = state.config.data_dir.clone();
    let (total, per_file) = (limits.max_bulk_upload_bytes, limits.max_document_bytes);
    let mut staged =
        crate::telemetry::spawn_blocking(move || StagedFiles::create(&data_dir, total, per_file))
            .await
            .map_err(ApiError::internal)?
            .map_err(BulkError::from)?;
    let mut archive_seen = false;
    while let Some(field) = body.next().await {
        let mut field = field.map_err(|error| incomplete().with_cause(error))?;
        match field.name() {
            Some("archive") if !archive_seen => {
                archive_seen = true;
                let wanted = manifest
                    .lines
                    .iter()
                    .map(|line| line.file.clone())
                    .collect();
                staged
                    .stage_archive(&mut field, wanted)
                    .await
                    .map_err(BulkError::from)?;
            }
            Some("file") => {
                let name = field
                    .content_disposition()
                    .and_then(|disposition| disposition.get_filename())
                    .unwrap_or_default()
                    .to_owned();
                staged
                    .stage_file(&name, &mut field)
                    .await
                    .map_err(BulkError::from)?;
            }
            other => {
                return Err(ApiError::bad_request(
                    "unexpected_part",
                    format!(
                        "after the manifest, send one `archive` or `file` parts, got {:?}",
                        other.unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(staged)
}

fn incomplete() -> ApiError {
    ApiError::bad_request(
        "incomplete_upload",
        "the upload ended before the multipart body was complete; nothing was delivered",
    )
}

/// A bulk job's progress and per-line report.
#[utoipa::path(
    get,
    path = "/api/v1/bulk-jobs/{id}",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = JobReport),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job for this agent", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn bulk_job_report(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    path: web::Path<String>,
) -> Result<web::Json<JobReport>, ApiError> {
    let id = JobId::parse(&path).ok_or_else(ApiError::not_found)?;
    let (tenant_id, scope) = (agent.tenant_id.clone(), JobScope::of(&agent));
    let report = state
        .db
        .read(move |conn| bulk::job_report(conn, &tenant_id, &scope, &id))
        .await?;
    report.map(web::Json).ok_or_else(ApiError::not_found)
}

impl From<BulkError> for ApiError {
    fn from(error: BulkError) -> Self {
        use crate::bulk::{ManifestError as M, StagingError as S};
        let message = error.to_string();
        match error {
            BulkError::Forbidden => Self::forbidden(message),
            BulkError::InvalidRequest(_) => Self::bad_request("invalid_request", message),
            BulkError::Manifest(M::TooLarge { .. } | M::TooManyLines { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "manifest_too_large", message)
            }
            BulkError::Manifest(_) => Self::unprocessable("invalid_manifest", message),
            BulkError::Staging(S::TooLarge { .. } | S::FileTooLarge(_)) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", message)
            }
            BulkError::Staging(S::Incomplete) => incomplete(),
            BulkError::Staging(S::Io(cause)) => Self::internal(cause),
            BulkError::Staging(_) => Self::bad_request("unsafe_upload", message),
            BulkError::Database(cause) => cause.into(),
        }
    }
}
