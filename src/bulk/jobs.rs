//! Server-side bulk jobs: a manifest and its staged files delivered line by line in a
//! background task, with each line's outcome recorded in the database as it happens.

use std::sync::Arc;

use diesel::prelude::*;
use futures::StreamExt;
use serde::Serialize;

use super::manifest::{Manifest, ManifestLine};
use super::staging::{StagedFiles, StagingError, staging_root};
use crate::agents::{Agent, Role};
use crate::db::schema::{bulk_job_lines, bulk_jobs};
use crate::db::{Conn, DbError};
use crate::state::AppState;
use crate::vault::{self, DocumentError, IdempotencyKey, IncomingFile};

/// Lines delivered at once by one job.
const JOB_CONCURRENCY: usize = 4;

/// A bulk job's identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobId(pub String);

impl JobId {
    /// Parses an identifier from a URL (a UUID).
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|id| Self(id.to_string()))
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Files are being received.
    Staging,
    Running,
    Done,
    /// The server stopped before the end; run the same manifest again to finish.
    Interrupted,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Running => "running",
            Self::Done => "done",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "staging" => Self::Staging,
            "running" => Self::Running,
            "done" => Self::Done,
            _ => Self::Interrupted,
        }
    }
}

/// What happened to one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineState {
    Pending,
    Delivered,
    /// Delivered by an earlier run (same line, same file): not stored twice.
    Replayed,
    Refused,
}

impl LineState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Replayed => "replayed",
            Self::Refused => "refused",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "delivered" => Self::Delivered,
            "replayed" => Self::Replayed,
            "refused" => Self::Refused,
            _ => Self::Pending,
        }
    }
}

/// One line of a job's report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineReport {
    pub line: i32,
    pub outcome: LineState,
    pub document_id: Option<String>,
    pub reason: Option<String>,
}

/// A job's progress and per-line report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobReport {
    pub id: String,
    pub state: JobState,
    pub total: i32,
    /// Delivered now or by an earlier run.
    pub delivered: i32,
    pub replayed: i32,
    pub refused: i32,
    pub pending: i32,
    pub created_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub lines: Vec<LineReport>,
}

/// A job in a list: progress without the lines.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub state: JobState,
    pub total: i32,
    pub created_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
}

/// Whose jobs a reader may see within a tenant.
#[derive(Debug, Clone)]
pub enum JobScope {
    /// Only the agent's own jobs.
    Agent(String),
    /// Every job started from a department.
    Department(String),
    /// Every job of the tenant (administrators).
    Tenant,
}

impl JobScope {
    /// Administrators see the tenant's jobs; other agents their own.
    pub fn of(agent: &Agent) -> Self {
        match agent.role {
            Role::Admin => Self::Tenant,
            _ => Self::Agent(agent.id.clone()),
        }
    }
}

/// Why a bulk job could not start; messages are safe to show.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("this account may not deliver documents")]
    Forbidden,
    #[error(transparent)]
    Manifest(#[from] super::manifest::ManifestError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for BulkError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Records a new job as `staging` while its files arrive.
pub async fn open_job(state: &AppState, agent: &Agent, total: usize) -> Result<JobId, BulkError> {
    if !agent.role.can_deliver() {
        return Err(BulkError::Forbidden);
    }
    let id = crate::new_id();
    let row = (
        bulk_jobs::id.eq(id.clone()),
        bulk_jobs::tenant_id.eq(agent.tenant_id.clone()),
        bulk_jobs::agent_id.eq(agent.id.clone()),
        bulk_jobs::state.eq(JobState::Staging.as_str()),
        bulk_jobs::total.eq(i32::try_from(total).unwrap_or(i32::MAX)),
        bulk_jobs::created_at.eq(crate::now()),
    );
    let who = agent.clone();
    state
        .db
        .write(move |conn| -> Result<(), BulkError> {
            // The job is filed under the agent's department when they have just one.
            let department_id = crate::agents::org_chart::AgentScope::load(conn, &who)?
                .implied_department()
                .map(str::to_owned);
            diesel::insert_into(bulk_jobs::table)
                .values((row, bulk_jobs::department_id.eq(department_id)))
                .execute(conn)?;
            Ok(())
        })
        .await?;
    tracing::info!(bulk_job.id = %id, agent.id = %agent.id, "bulk job opened");
    Ok(JobId(id))
}

/// Staging failed: the job ends as `interrupted` with nothing delivered.
pub async fn abandon_job(state: &AppState, job: &JobId) {
    let id = job.0.clone();
    let result = state
        .db
        .write(move |conn| -> Result<usize, DbError> {
            Ok(diesel::update(bulk_jobs::table.find(id))
                .set((
                    bulk_jobs::state.eq(JobState::Interrupted.as_str()),
                    bulk_jobs::finished_at.eq(Some(crate::now())),
                ))
                .execute(conn)?)
        })
        .await;
    if let Err(error) = result {
        tracing::error!(bulk_job.id = %job.0, %error, "could not mark the bulk job abandoned");
    }
}

/// Checks the manifest against the staged files, records every line and starts the
/// delivery in the background. The staged files are deleted as lines are delivered,
/// and all of them when the job ends.
pub async fn start_job(
    state: &AppState,
    agent: &Agent,
    job: &JobId,
    mut manifest: Manifest,
    files: StagedFiles,
) -> Result<(), BulkError> {
    manifest.check_files(|path| files.contains(path));
    let mut rows: Vec<(i32, &'static str, Option<String>)> = manifest
        .refused
        .iter()
        .map(|error| {
            (
                line_number(error.line),
                "refused",
                Some(error.reason.clone()),
            )
        })
        .collect();
    rows.extend(
        manifest
            .lines
            .iter()
            .map(|line| (line_number(line.line), "pending", None)),
    );
    let id = job.0.clone();
    let total = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    state
        .db
        .write(move |conn| -> Result<(), BulkError> {
            // One statement per line: diesel's multi-engine connection has no batch insert.
            for (line, outcome, reason) in &rows {
                diesel::insert_into(bulk_job_lines::table)
                    .values((
                        bulk_job_lines::job_id.eq(&id),
                        bulk_job_lines::line.eq(*line),
                        bulk_job_lines::outcome.eq(*outcome),
                        bulk_job_lines::reason.eq(reason.as_deref()),
                    ))
                    .execute(conn)?;
            }
            diesel::update(bulk_jobs::table.find(&id))
                .set((
                    bulk_jobs::state.eq(JobState::Running.as_str()),
                    bulk_jobs::total.eq(total),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await?;
    tracing::info!(bulk_job.id = %job.0, bulk_job.lines = total, "bulk job started");
    tokio::spawn(run_job(
        state.clone(),
        agent.clone(),
        job.clone(),
        manifest.lines,
        files,
    ));
    Ok(())
}

fn line_number(line: usize) -> i32 {
    i32::try_from(line).unwrap_or(i32::MAX)
}

async fn run_job(
    state: AppState,
    agent: Agent,
    job: JobId,
    lines: Vec<ManifestLine>,
    files: StagedFiles,
) {
    let files = Arc::new(files);
    futures::stream::iter(lines)
        .for_each_concurrent(JOB_CONCURRENCY, |line| {
            let (state, agent, job, files) = (&state, &agent, &job, files.clone());
            async move {
                let outcome = deliver_line(state, agent, &line, &files).await;
                record_outcome(state, job, line.line, outcome).await;
            }
        })
        .await;
    drop(files);
    let id = job.0.clone();
    let finished = state
        .db
        .write(move |conn| -> Result<usize, DbError> {
            Ok(diesel::update(
                bulk_jobs::table
                    .find(id)
                    .filter(bulk_jobs::state.eq(JobState::Running.as_str())),
            )
            .set((
                bulk_jobs::state.eq(JobState::Done.as_str()),
                bulk_jobs::finished_at.eq(Some(crate::now())),
            ))
            .execute(conn)?)
        })
        .await;
    match finished {
        Ok(_) => tracing::info!(bulk_job.id = %job.0, "bulk job done"),
        Err(error) => tracing::error!(bulk_job.id = %job.0, %error, "bulk job end not recorded"),
    }
}

enum Outcome {
    Delivered { document_id: String, replayed: bool },
    Refused(String),
}

/// Delivers one line from its staged file, exactly as the API would.
async fn deliver_line(
    state: &AppState,
    agent: &Agent,
    line: &ManifestLine,
    files: &StagedFiles,
) -> Outcome {
    let Some(staged) = files.get(&line.file) else {
        return Outcome::Refused("file: not found in the folder or archive".to_owned());
    };
    let delivered = async {
        let key = IdempotencyKey::parse(&line.idempotency_key(&staged.sha256))?;
        let incoming = IncomingFile {
            file_name: line.file.file_name(),
            content_type: line.file.content_type().to_owned(),
        };
        let mut upload = vault::begin_delivery(
            state,
            agent,
            line.metadata.clone(),
            &line.raw_metadata,
            incoming,
            Some(key),
        )
        .await?;
        let mut plaintext = files.read(staged);
        while let Some(chunk) = plaintext.recv().await {
            match chunk {
                Ok(chunk) => {
                    if let Err(error) = upload.push(chunk).await {
                        upload.abandon().await;
                        return Err(error);
                    }
                }
                Err(error) => {
                    upload.abandon().await;
                    return Err(DocumentError::Internal(error.to_string()));
                }
            }
        }
        upload.finish().await
    }
    .await;
    files.remove(staged).await;
    match delivered {
        Ok(delivered) => Outcome::Delivered {
            document_id: delivered.id.0,
            replayed: delivered.replayed,
        },
        Err(error) => Outcome::Refused(refusal_reason(&line.line, error)),
    }
}

/// The reason shown for a refused line: the vault's own message for what the agent
/// can fix, a generic one (cause logged) for what the server failed at.
fn refusal_reason(line: &usize, error: DocumentError) -> String {
    match error {
        DocumentError::Storage(_)
        | DocumentError::Database(_)
        | DocumentError::Crypto(_)
        | DocumentError::Internal(_) => {
            tracing::error!(bulk.line = line, %error, "bulk line failed");
            "the server could not store it; run the same manifest again".to_owned()
        }
        DocumentError::IdempotencyConflict => {
            "already delivered with another file or content".to_owned()
        }
        other => other.to_string(),
    }
}

async fn record_outcome(state: &AppState, job: &JobId, line: usize, outcome: Outcome) {
    let (state_text, document_id, reason) = match outcome {
        Outcome::Delivered {
            document_id,
            replayed,
        } => (
            if replayed {
                LineState::Replayed
            } else {
                LineState::Delivered
            },
            Some(document_id),
            None,
        ),
        Outcome::Refused(reason) => (LineState::Refused, None, Some(reason)),
    };
    let (id, number) = (job.0.clone(), line_number(line));
    let result = state
        .db
        .write(move |conn| -> Result<usize, DbError> {
            Ok(diesel::update(bulk_job_lines::table.find((id, number)))
                .set((
                    bulk_job_lines::outcome.eq(state_text.as_str()),
                    bulk_job_lines::document_id.eq(document_id),
                    bulk_job_lines::reason.eq(reason),
                ))
                .execute(conn)?)
        })
        .await;
    if let Err(error) = result {
        tracing::error!(bulk_job.id = %job.0, bulk.line = line, %error, "bulk line outcome not recorded");
    }
}

/// At start: jobs a previous run left `staging` or `running` cannot go on (their
/// staged files' key died with that process), so they become `interrupted` and the
/// staged files are deleted.
pub fn interrupt_unfinished_jobs(state: &AppState) -> Result<usize, DbError> {
    let interrupted = state.db.write_blocking(|conn| -> Result<usize, DbError> {
        Ok(diesel::update(bulk_jobs::table.filter(
            bulk_jobs::state.eq_any([JobState::Staging.as_str(), JobState::Running.as_str()]),
        ))
        .set((
            bulk_jobs::state.eq(JobState::Interrupted.as_str()),
            bulk_jobs::finished_at.eq(Some(crate::now())),
        ))
        .execute(conn)?)
    })?;
    let root = staging_root(&state.config.data_dir);
    if root.exists()
        && let Err(error) = std::fs::remove_dir_all(&root)
    {
        tracing::warn!(%error, "could not delete leftover staged files");
    }
    if interrupted > 0 {
        tracing::warn!(
            bulk_jobs.interrupted = interrupted,
            "unfinished bulk jobs interrupted"
        );
    }
    Ok(interrupted)
}

type JobRow = (
    String,
    String,
    i32,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
);

type Backend = <Conn as diesel::Connection>::Backend;

fn scoped(tenant_id: &str, scope: &JobScope) -> bulk_jobs::BoxedQuery<'static, Backend> {
    let query = bulk_jobs::table
        .filter(bulk_jobs::tenant_id.eq(tenant_id.to_owned()))
        .into_boxed();
    match scope {
        JobScope::Agent(agent_id) => query.filter(bulk_jobs::agent_id.eq(agent_id.clone())),
        JobScope::Department(department_id) => {
            query.filter(bulk_jobs::department_id.eq(department_id.clone()))
        }
        JobScope::Tenant => query,
    }
}

/// A job's progress and line report, if the scope may see it.
pub fn job_report(
    conn: &mut Conn,
    tenant_id: &str,
    scope: &JobScope,
    job: &JobId,
) -> Result<Option<JobReport>, DbError> {
    let row: Option<JobRow> = scoped(tenant_id, scope)
        .filter(bulk_jobs::id.eq(job.0.clone()))
        .select((
            bulk_jobs::id,
            bulk_jobs::state,
            bulk_jobs::total,
            bulk_jobs::created_at,
            bulk_jobs::finished_at,
        ))
        .first(conn)
        .optional()?;
    let Some((id, state, total, created_at, finished_at)) = row else {
        return Ok(None);
    };
    let lines: Vec<(i32, String, Option<String>, Option<String>)> = bulk_job_lines::table
        .filter(bulk_job_lines::job_id.eq(&id))
        .order(bulk_job_lines::line)
        .select((
            bulk_job_lines::line,
            bulk_job_lines::outcome,
            bulk_job_lines::document_id,
            bulk_job_lines::reason,
        ))
        .load(conn)?;
    let lines: Vec<LineReport> = lines
        .into_iter()
        .map(|(line, outcome, document_id, reason)| LineReport {
            line,
            outcome: LineState::parse(&outcome),
            document_id,
            reason,
        })
        .collect();
    let count = |wanted: &[LineState]| {
        i32::try_from(
            lines
                .iter()
                .filter(|line| wanted.contains(&line.outcome))
                .count(),
        )
        .unwrap_or(i32::MAX)
    };
    Ok(Some(JobReport {
        id,
        state: JobState::parse(&state),
        total,
        delivered: count(&[LineState::Delivered, LineState::Replayed]),
        replayed: count(&[LineState::Replayed]),
        refused: count(&[LineState::Refused]),
        pending: count(&[LineState::Pending]),
        created_at,
        finished_at,
        lines,
    }))
}

/// The most recent jobs the scope may see (newest first).
pub fn list_jobs(
    conn: &mut Conn,
    tenant_id: &str,
    scope: &JobScope,
    limit: i64,
) -> Result<Vec<JobSummary>, DbError> {
    let rows: Vec<JobRow> = scoped(tenant_id, scope)
        .order(bulk_jobs::created_at.desc())
        .limit(limit)
        .select((
            bulk_jobs::id,
            bulk_jobs::state,
            bulk_jobs::total,
            bulk_jobs::created_at,
            bulk_jobs::finished_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, state, total, created_at, finished_at)| JobSummary {
            id,
            state: JobState::parse(&state),
            total,
            created_at,
            finished_at,
        })
        .collect())
}
