//! The agent's bulk delivery pages: upload a CSV manifest with a ZIP or the files,
//! follow the job as it runs, and read its line-by-line report. The work itself is
//! the same as `POST /api/v1/bulk-jobs`: staged encrypted, delivered in the background.

use actix_multipart::{Field, Multipart};
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use serde::Serialize;

use super::{JobId, JobReport, JobScope, JobState, Manifest, ManifestError, StagedFiles};
use crate::agents::Role;
use crate::state::AppState;
use crate::web::agent_session::AgentSession;
use crate::web::page::{Page, PageError};

const DELIVERING_ROLES: &[Role] = &[Role::Admin, Role::Agent];
/// Jobs listed on the upload page.
const RECENT_JOBS: i64 = 20;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/bulk", web::get().to(upload_page))
        .route("/agent/bulk", web::post().to(upload))
        .route("/agent/bulk/{id}", web::get().to(report_page))
        .route("/agent/bulk/{id}/progress", web::get().to(progress));
}

async fn upload_page(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    render_upload(&agent, &page, &state, StatusCode::OK, None).await
}

async fn render_upload(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant_id, scope) = (agent.agent.tenant_id.clone(), JobScope::of(&agent.agent));
    let jobs: Vec<JobLine> = state
        .db
        .read(move |conn| super::list_jobs(conn, &tenant_id, &scope, RECENT_JOBS))
        .await?
        .into_iter()
        .map(|job| JobLine {
            id: job.id,
            state: job.state,
            total: job.total,
            started: job.created_at.format("%d/%m/%Y %H:%M UTC").to_string(),
        })
        .collect();
    let mut context = agent.context(page);
    context.insert("jobs", &jobs);
    context.insert("max_lines", &state.config.limits.max_manifest_lines);
    if let Some(error) = error {
        context.insert("error", &error);
    }
    Ok(page.render(status, "agent_bulk.html", &context))
}

/// A recent job on the upload page.
#[derive(Serialize)]
struct JobLine {
    id: String,
    state: JobState,
    total: i32,
    started: String,
}

/// Why an upload was refused, as shown on the form.
enum Refusal {
    /// A page error (CSRF, role): answered as is.
    Page(PageError),
    /// A message for the form (safe to show: it names lines and columns, not people).
    Form(String),
}

impl From<PageError> for Refusal {
    fn from(error: PageError) -> Self {
        Self::Page(error)
    }
}

async fn upload(
    agent: AgentSession,
    page: Page,
    mut body: Multipart,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let outcome = receive_job(&agent, &page, &state, &mut body).await;
    // Read what the browser is still sending so that it shows our answer.
    while let Some(Ok(mut rest)) = body.next().await {
        while let Some(Ok(_)) = rest.next().await {}
    }
    match outcome {
        Ok(job) => Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/agent/bulk/{}", job.0)))
            .finish()),
        Err(Refusal::Page(error)) => Err(error),
        Err(Refusal::Form(message)) => {
            render_upload(
                &agent,
                &page,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(message),
            )
            .await
        }
    }
}

/// Reads the form (CSRF token, manifest, then a ZIP and/or files), stages the files
/// encrypted and starts the job.
async fn receive_job(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    body: &mut Multipart,
) -> Result<JobId, Refusal> {
    let lang = page.lang;
    let limits = &state.config.limits;
    let mut field = next_field(body, lang).await?;
    if field.name() != Some("csrf") {
        return Err(PageError::csrf(lang).into());
    }
    let csrf = read_all(&mut field, 1024, lang).await?;
    agent.check_csrf(&String::from_utf8_lossy(&csrf))?;
    drop(field);

    let mut field = next_field(body, lang).await?;
    if field.name() != Some("manifest") {
        return Err(Refusal::Form(lang.text("bulk-error-manifest-missing")));
    }
    let bytes = read_all(&mut field, limits.max_manifest_bytes, lang).await?;
    drop(field);
    if bytes.is_empty() {
        return Err(Refusal::Form(lang.text("bulk-error-manifest-missing")));
    }
    let manifest = Manifest::parse(&bytes, limits.manifest())
        .map_err(|error| Refusal::Form(format!("{} {error}", lang.text("bulk-error-manifest"))))?;

    let data_dir = state.config.data_dir.clone();
    let (total, per_file) = (limits.max_bulk_upload_bytes, limits.max_document_bytes);
    let mut staged =
        crate::telemetry::spawn_blocking(move || StagedFiles::create(&data_dir, total, per_file))
            .await
            .map_err(|error| Refusal::Page(PageError::internal(lang, error)))?
            .map_err(|error| Refusal::Page(PageError::internal(lang, error)))?;
    let job = super::open_job(
        state,
        &agent.agent,
        manifest.lines.len() + manifest.refused.len(),
    )
    .await
    .map_err(|error| Refusal::Page(PageError::internal(lang, error)))?;
    if let Err(refusal) = stage_files(&manifest, &mut staged, body, lang).await {
        super::abandon_job(state, &job).await;
        return Err(refusal);
    }
    super::start_job(state, &agent.agent, &job, manifest, staged)
        .await
        .map_err(|error| Refusal::Form(format!("{} {error}", lang.text("bulk-error-files"))))?;
    Ok(job)
}

/// Stages the `archive` and `file` parts; a file input left empty sends an empty part
/// without a name, which is skipped.
async fn stage_files(
    manifest: &Manifest,
    staged: &mut StagedFiles,
    body: &mut Multipart,
    lang: crate::web::page::Lang,
) -> Result<(), Refusal> {
    while let Some(field) = body.next().await {
        let mut field = field.map_err(|error| incomplete(lang, error))?;
        let name = field
            .content_disposition()
            .and_then(|disposition| disposition.get_filename())
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            while let Some(Ok(_)) = field.next().await {}
            continue;
        }
        let staging = match field.name() {
            Some("archive") => {
                let wanted = manifest
                    .lines
                    .iter()
                    .map(|line| line.file.clone())
                    .collect();
                staged.stage_archive(&mut field, wanted).await
            }
            Some("file") => staged.stage_file(&name, &mut field).await,
            _ => continue,
        };
        staging
            .map_err(|error| Refusal::Form(format!("{} {error}", lang.text("bulk-error-files"))))?;
    }
    Ok(())
}

async fn next_field(body: &mut Multipart, lang: crate::web::page::Lang) -> Result<Field, Refusal> {
    match body.next().await {
        Some(Ok(field)) => Ok(field),
        Some(Err(error)) => Err(incomplete(lang, error)),
        None => Err(Refusal::Form(lang.text("bulk-error-manifest-missing"))),
    }
}

async fn read_all(
    field: &mut Field,
    limit: usize,
    lang: crate::web::page::Lang,
) -> Result<Vec<u8>, Refusal> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|error| incomplete(lang, error))?;
        if bytes.len() + chunk.len() > limit {
            let error = ManifestError::TooLarge { limit };
            return Err(Refusal::Form(format!(
                "{} {error}",
                lang.text("bulk-error-manifest")
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn incomplete(lang: crate::web::page::Lang, error: impl std::fmt::Display) -> Refusal {
    Refusal::Page(
        PageError::new(
            StatusCode::BAD_REQUEST,
            lang,
            "error-bad-request-title",
            "error-bad-request-body",
        )
        .with_cause(error),
    )
}

async fn find_report(
    agent: &AgentSession,
    state: &AppState,
    id: &str,
) -> Result<Option<JobReport>, PageError> {
    let lang = agent.lang;
    let id = JobId::parse(id).ok_or_else(|| PageError::not_found(lang))?;
    let (tenant_id, scope) = (agent.agent.tenant_id.clone(), JobScope::of(&agent.agent));
    Ok(state
        .db
        .read(move |conn| super::job_report(conn, &tenant_id, &scope, &id))
        .await?)
}

fn is_finished(state: JobState) -> bool {
    matches!(state, JobState::Done | JobState::Interrupted)
}

async fn report_page(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let report = find_report(&agent, &state, &path)
        .await?
        .ok_or_else(|| PageError::not_found(page.lang))?;
    let mut context = agent.context(&page);
    context.insert("finished", &is_finished(report.state));
    context.insert("done_count", &(report.delivered + report.refused));
    context.insert("job", &report);
    Ok(page.render(StatusCode::OK, "agent_bulk_job.html", &context))
}

/// A running job's counters, polled by the report page's script.
#[derive(Serialize)]
struct Progress {
    finished: bool,
    total: i32,
    delivered: i32,
    refused: i32,
    pending: i32,
}

async fn progress(
    agent: AgentSession,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let report = find_report(&agent, &state, &path)
        .await?
        .ok_or_else(|| PageError::not_found(agent.lang))?;
    Ok(HttpResponse::Ok().json(Progress {
        finished: is_finished(report.state),
        total: report.total,
        delivered: report.delivered,
        refused: report.refused,
        pending: report.pending,
    }))
}
