//! The agent's delivery pages: deliver one document from a form, follow the
//! deliveries within reach (filters, status, notices), and withdraw one. Titles and
//! recipients never appear here once a document is delivered.

use std::collections::HashMap;

use actix_multipart::{Field, Multipart};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::deliveries::{self, DeliveryFilter, PageNumber, WithdrawalReason};
use super::metadata::{safe_content_type, safe_file_name};
use super::{DocumentError, DocumentId, DocumentState, DocumentStatus, IncomingFile};
use crate::agents::Role;
use crate::agents::org_chart::AgentScope;
use crate::notify::{self, NoticeStatus};
use crate::state::AppState;
use crate::tenants::{self, Department};
use crate::web::agent_session::AgentSession;
use crate::web::page::see_other;
use crate::web::page::{Lang, Page, PageError};

/// Who may deliver and follow deliveries.
const DELIVERING_ROLES: &[Role] = &[Role::Admin, Role::Agent];
/// Largest text field of the delivery form.
const MAX_FIELD_BYTES: usize = 4 * 1024;
const MAX_FIELDS: usize = 32;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/deliveries", web::get().to(list))
        .route("/agent/deliveries/new", web::get().to(new_form))
        .route("/agent/deliveries/new", web::post().to(deliver))
        .route("/agent/recipients", web::post().to(recipient_key))
        .route("/agent/deliveries/{id}", web::get().to(detail))
        .route("/agent/deliveries/{id}/withdraw", web::post().to(withdraw));
}

/// The list's filters, as they come from the query string.
#[derive(Debug, Default, Deserialize, Serialize)]
struct FilterQuery {
    #[serde(default)]
    department: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: String,
}

impl FilterQuery {
    /// Empty or unreadable filters are ignored (the form shows what was applied); a
    /// page number out of range is refused.
    fn parse(&self, lang: Lang) -> Result<DeliveryFilter, PageError> {
        let page = PageNumber::parse(&self.page).ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                lang,
                "error-page-number-title",
                "error-page-number-body",
            )
            .with_next("/agent/deliveries", "deliveries-title")
        })?;
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        let day = |value: &str| chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").ok();
        Ok(DeliveryFilter {
            department_id: text(&self.department),
            category: text(&self.category),
            state: match self.state.as_str() {
                "stored" => Some(DocumentState::Stored),
                "notified" => Some(DocumentState::Notified),
                "opened" => Some(DocumentState::Opened),
                "withdrawn" => Some(DocumentState::Withdrawn),
                _ => None,
            },
            from: day(&self.from),
            to: day(&self.to),
            page,
        })
    }

    /// The query string of another page of the same list.
    fn page_link(&self, page: PageNumber) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("department", &self.department)
            .append_pair("category", &self.category)
            .append_pair("state", &self.state)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("page", &page.get().to_string())
            .finish()
    }
}

/// A document as the agent's pages show it.
#[derive(Serialize)]
struct DeliveryLine {
    id: String,
    state: &'static str,
    category: String,
    department: String,
    size: String,
    delivered: String,
    notified: Option<String>,
    opened: Option<String>,
    withdrawn: Option<String>,
    withdrawal_reason: Option<String>,
    /// The notices about this document: channel, kind, state, when.
    notices: Vec<NoticeLine>,
    /// Some notice was given up: the agent should reach the citizen another way.
    notice_failed: bool,
    /// Encrypted by its sender (end to end), not by the server on arrival.
    end_to_end: bool,
    /// The recipient had to start a new vault: nobody can open it; deliver it again.
    unrecoverable: bool,
}

/// A notice as the agent's pages show it (never the contact).
#[derive(Serialize)]
struct NoticeLine {
    channel: &'static str,
    kind: &'static str,
    state: &'static str,
    attempts: i32,
    queued: String,
    sent: Option<String>,
    error: Option<String>,
}

fn notice_line(lang: Lang, notice: NoticeStatus) -> NoticeLine {
    NoticeLine {
        channel: notice.channel.as_str(),
        kind: notice.kind.as_str(),
        state: notice.state.as_str(),
        attempts: notice.attempts,
        queued: format_time(lang, notice.created_at),
        sent: notice.sent_at.map(|at| format_time(lang, at)),
        error: notice.last_error,
    }
}

fn line(
    lang: Lang,
    status: DocumentStatus,
    departments: &[Department],
    notices: &mut HashMap<String, Vec<NoticeStatus>>,
) -> DeliveryLine {
    let notices: Vec<NoticeLine> = notices
        .remove(&status.id)
        .unwrap_or_default()
        .into_iter()
        .map(|notice| notice_line(lang, notice))
        .collect();
    let notice_failed = notices.iter().any(|notice| notice.state == "dead");
    let department = status
        .department
        .as_deref()
        .and_then(|slug| departments.iter().find(|d| d.slug == slug))
        .map(|d| d.name.clone())
        .unwrap_or_default();
    DeliveryLine {
        state: match status.state {
            DocumentState::Stored => "stored",
            DocumentState::Notified => "notified",
            DocumentState::Opened => "opened",
            DocumentState::Withdrawn => "withdrawn",
        },
        id: status.id,
        category: status.category,
        department,
        size: super::pages::format_size(lang, status.size),
        delivered: format_time(lang, status.created_at),
        notified: status.notified_at.map(|at| format_time(lang, at)),
        opened: status.first_opened_at.map(|at| format_time(lang, at)),
        withdrawn: status.withdrawn_at.map(|at| format_time(lang, at)),
        withdrawal_reason: status.withdrawal_reason,
        notices,
        notice_failed,
        end_to_end: status.end_to_end,
        unrecoverable: status.unrecoverable,
    }
}

fn format_time(lang: Lang, at: chrono::NaiveDateTime) -> String {
    match lang {
        Lang::Fr => at.format("%d/%m/%Y %H:%M UTC").to_string(),
        Lang::En => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// The departments an agent may pick from, in name order (archived ones left out).
fn departments_within(scope: &AgentScope, all: Vec<Department>) -> Vec<Department> {
    all.into_iter()
        .filter(|department| scope.covers_department(&department.id))
        .collect()
}

async fn list(
    agent: AgentSession,
    page: Page,
    query: web::Query<FilterQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let lang = page.lang;
    let filter = query.parse(lang)?;
    let page_number = filter.page;
    let who = agent.agent.clone();
    let (found, mut notices, departments, categories) = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let scope = AgentScope::load(conn, &who)?;
            let found = deliveries::list_deliveries(conn, &scope, &filter)?;
            let ids: Vec<String> = found.documents.iter().map(|d| d.id.clone()).collect();
            let notices = notify::notices_for_documents(conn, &ids)?;
            let departments =
                departments_within(&scope, tenants::list_departments(conn, &who.tenant_id)?);
            let categories = deliveries::visible_categories(conn, &scope)?;
            Ok((found, notices, departments, categories))
        })
        .await?;
    let lines: Vec<DeliveryLine> = found
        .documents
        .into_iter()
        .map(|status| line(lang, status, &departments, &mut notices))
        .collect();
    let mut context = agent.context(&page);
    context.insert("deliveries", &lines);
    context.insert("departments", &departments);
    context.insert("categories", &categories);
    context.insert("filter", &*query);
    context.insert("states", &["stored", "notified", "opened", "withdrawn"]);
    if let Some(previous) = page_number.previous() {
        context.insert("previous_page", &query.page_link(previous));
    }
    if let Some(next) = page_number.next().filter(|_| found.has_more) {
        context.insert("next_page", &query.page_link(next));
    }
    Ok(page.render(StatusCode::OK, "agent_deliveries.html", &context))
}

async fn detail(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let lang = page.lang;
    let id = DocumentId::parse(&path).ok_or_else(|| PageError::not_found(lang))?;
    render_detail(&agent, &page, &state, id, StatusCode::OK, None).await
}

async fn render_detail(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    id: DocumentId,
    status_code: StatusCode,
    message: Option<&'static str>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let who = agent.agent.clone();
    let found = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let scope = AgentScope::load(conn, &who)?;
            let status = deliveries::delivery_status(conn, &scope, &id)?;
            let notices = notify::notices_for_documents(conn, std::slice::from_ref(&id.0))?;
            Ok((
                status,
                notices,
                tenants::list_departments(conn, &who.tenant_id)?,
            ))
        })
        .await?;
    let (status, mut notices, departments) = found;
    let status = status.ok_or_else(|| PageError::not_found(lang))?;
    let mut context = agent.context(page);
    context.insert("delivery", &line(lang, status, &departments, &mut notices));
    if let Some(message) = message {
        context.insert("message", message);
    }
    Ok(page.render(status_code, "agent_delivery.html", &context))
}

#[derive(Deserialize)]
struct WithdrawForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn withdraw(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<WithdrawForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let lang = page.lang;
    let id = DocumentId::parse(&path).ok_or_else(|| PageError::not_found(lang))?;
    let outcome = match WithdrawalReason::parse(&form.reason) {
        Ok(reason) => deliveries::withdraw(&state, &agent.agent, id.clone(), reason).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => Ok(see_other(&format!("/agent/deliveries/{}", id.0))),
        Err(DocumentError::NotFound) => Err(PageError::not_found(lang)),
        Err(DocumentError::WithdrawalReason) => {
            render_detail(
                &agent,
                &page,
                &state,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("withdraw-reason-required"),
            )
            .await
        }
        Err(DocumentError::AlreadyWithdrawn) => {
            render_detail(
                &agent,
                &page,
                &state,
                id,
                StatusCode::CONFLICT,
                Some("withdraw-already"),
            )
            .await
        }
        Err(other) => Err(PageError::internal(lang, other)),
    }
}

/// What the agent typed in the delivery form, kept to fill it again after an error
/// (the file itself must be chosen again).
#[derive(Debug, Default, Serialize)]
struct DeliveryFields {
    recipient_kind: String,
    family_name: String,
    given_names: String,
    birthdate: String,
    birthplace: String,
    nrn: String,
    title: String,
    category: String,
    department: String,
    email: String,
    phone: String,
    /// Set by the page when it encrypted the file itself (end to end): the vault key
    /// it encrypted to, and the title and file name sealed to it (base64url). The
    /// title field then comes empty.
    encryption_recipient: String,
    sealed_metadata: String,
}

impl DeliveryFields {
    fn set(&mut self, name: &str, value: String) {
        let slot = match name {
            "recipient_kind" => &mut self.recipient_kind,
            "family_name" => &mut self.family_name,
            "given_names" => &mut self.given_names,
            "birthdate" => &mut self.birthdate,
            "birthplace" => &mut self.birthplace,
            "nrn" => &mut self.nrn,
            "title" => &mut self.title,
            "category" => &mut self.category,
            "department" => &mut self.department,
            "email" => &mut self.email,
            "phone" => &mut self.phone,
            "encryption_recipient" => &mut self.encryption_recipient,
            "sealed_metadata" => &mut self.sealed_metadata,
            _ => return,
        };
        *slot = value;
    }

    /// The same JSON metadata the API takes, so both paths share one parser.
    fn metadata_json(&self) -> Vec<u8> {
        let optional = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let recipient = if self.recipient_kind == "nrn" {
            serde_json::json!({ "nrn": self.nrn })
        } else {
            serde_json::json!({ "pivot": {
                "family_name": self.family_name,
                "given_names": self.given_names,
                "birthdate": self.birthdate.trim(),
                "birthplace": self.birthplace.trim(),
            }})
        };
        let (email, phone) = (optional(&self.email), optional(&self.phone));
        let contact = (email.is_some() || phone.is_some())
            .then(|| serde_json::json!({ "email": email, "phone": phone }));
        let mut metadata = serde_json::json!({
            "recipient": recipient,
            "category": self.category.trim(),
            "department": optional(&self.department),
            "contact": contact,
        });
        if self.encryption_recipient.is_empty() {
            metadata["title"] = self.title.clone().into();
        } else {
            metadata["encryption"] = serde_json::json!({
                "recipient": self.encryption_recipient.trim(),
                "sealed_metadata": self.sealed_metadata.trim(),
            });
            if !self.title.is_empty() {
                // Refused by the parser: a title must not travel in clear beside it.
                metadata["title"] = self.title.clone().into();
            }
        }
        metadata.to_string().into_bytes()
    }
}

async fn new_form(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let fields = DeliveryFields {
        recipient_kind: "pivot".to_owned(),
        ..DeliveryFields::default()
    };
    render_form(&agent, &page, &state, &fields, StatusCode::OK, None).await
}

async fn render_form(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    fields: &DeliveryFields,
    status_code: StatusCode,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let who = agent.agent.clone();
    let departments = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let scope = AgentScope::load(conn, &who)?;
            Ok(departments_within(
                &scope,
                tenants::list_departments(conn, &who.tenant_id)?,
            ))
        })
        .await?
        .into_iter()
        .filter(|department| !department.is_archived())
        .collect::<Vec<_>>();
    let mut context = agent.context(page);
    context.insert("fields", fields);
    context.insert("departments", &departments);
    context.insert("max_size", &state.config.limits.max_document_bytes);
    crate::web::static_files::vault_script_integrity().insert_into(&mut context);
    if let Some(error) = error {
        context.insert("error", &error);
    }
    Ok(page.render(status_code, "agent_deliver.html", &context))
}

/// The vault key of the person the delivery page names, for the page to encrypt the
/// file itself (JSON; the session's CSRF token in `X-CSRF-Token`). The same answer
/// and rationing as `POST /api/v1/recipients`.
async fn recipient_key(
    agent: AgentSession,
    request: actix_web::HttpRequest,
    body: web::Json<serde_json::Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    use crate::error::ApiError;
    let token = request
        .headers()
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if agent.require(DELIVERING_ROLES).is_err() || agent.check_csrf(token).is_err() {
        return Err(ApiError::forbidden(
            "this session may not ask for vault keys (role or CSRF token)",
        ));
    }
    let recipient = body.into_inner()["recipient"].clone();
    let recipient = super::vault_key_for(&state, &agent.agent, recipient).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "recipient": recipient.to_string() })))
}

/// Why the delivery form was refused, in the agent's language where we have it.
fn form_error(lang: Lang, error: &DocumentError) -> String {
    let key = match error {
        DocumentError::Metadata(detail) => {
            return format!("{} {detail}", lang.text("deliver-error-metadata"));
        }
        DocumentError::UnknownDepartment => "deliver-error-department",
        DocumentError::ArchivedDepartment => "deliver-error-archived-department",
        DocumentError::DepartmentNotAllowed => "deliver-error-department-not-allowed",
        DocumentError::DepartmentRequired => "deliver-error-department-required",
        DocumentError::UnknownRecipient => "deliver-error-recipient",
        DocumentError::TooLarge { .. } => "deliver-error-too-large",
        DocumentError::EmptyDocument => "deliver-error-empty",
        DocumentError::InvalidRequest(_) => "deliver-error-incomplete",
        DocumentError::RecipientChanged => "deliver-error-recipient-changed",
        _ => "deliver-error-internal",
    };
    lang.text(key)
}

/// The delivery form: text fields first, the file last (browsers send them in page
/// order), so the file streams straight through encryption like an API upload.
async fn deliver(
    agent: AgentSession,
    page: Page,
    mut body: Multipart,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let answer = read_delivery_form(&agent, &page, &state, &mut body).await;
    // Whatever the answer, read what the browser is still sending (up to about the
    // size limit) so that it shows the answer instead of a reset connection.
    drain(
        &mut body,
        state.config.limits.max_document_bytes + 64 * 1024,
    )
    .await;
    answer
}

async fn drain(body: &mut Multipart, limit: u64) {
    let mut drained: u64 = 0;
    while let Some(Ok(mut rest)) = body.next().await {
        while let Some(Ok(chunk)) = rest.next().await {
            drained += chunk.len() as u64;
            if drained > limit {
                return;
            }
        }
    }
}

async fn read_delivery_form(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    body: &mut Multipart,
) -> Result<HttpResponse, PageError> {
    agent.require(DELIVERING_ROLES)?;
    let lang = page.lang;
    let mut fields = DeliveryFields::default();
    let mut csrf_checked = false;
    let mut count = 0;
    while let Some(field) = body.next().await {
        let mut field = field.map_err(|error| incomplete(lang, error))?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if !csrf_checked {
                return Err(PageError::csrf(lang));
            }
            let outcome = deliver_file(state, agent, &fields, &mut field).await;
            drop(field);
            return match outcome {
                Ok(id) => Ok(see_other(&format!("/agent/deliveries/{}", id.0))),
                Err(error) => {
                    if matches!(
                        error,
                        DocumentError::Storage(_)
                            | DocumentError::Database(_)
                            | DocumentError::Crypto(_)
                            | DocumentError::Internal(_)
                    ) {
                        tracing::error!(%error, "delivery from the form failed");
                    }
                    let message = form_error(lang, &error);
                    render_form(
                        agent,
                        page,
                        state,
                        &fields,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Some(message),
                    )
                    .await
                }
            };
        }
        count += 1;
        if count > MAX_FIELDS {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                lang,
                "error-bad-request-title",
                "error-bad-request-body",
            ));
        }
        let value = read_text_field(&mut field, lang).await?;
        if name == "csrf" {
            agent.check_csrf(&value)?;
            csrf_checked = true;
        } else {
            fields.set(&name, value);
        }
    }
    render_form(
        agent,
        page,
        state,
        &fields,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(lang.text("deliver-error-no-file")),
    )
    .await
}

async fn deliver_file(
    state: &AppState,
    agent: &AgentSession,
    fields: &DeliveryFields,
    field: &mut Field,
) -> Result<DocumentId, DocumentError> {
    let raw = fields.metadata_json();
    let metadata = super::DeliveryMetadata::parse(&raw)?;
    let file = IncomingFile {
        file_name: safe_file_name(
            field
                .content_disposition()
                .and_then(|disposition| disposition.get_filename()),
        ),
        content_type: safe_content_type(field.content_type().map(|mime| mime.essence_str())),
    };
    let mut upload = super::begin_delivery(state, &agent.agent, metadata, &raw, file, None).await?;
    while let Some(chunk) = field.next().await {
        let pushed = match chunk {
            Ok(chunk) => upload.push(chunk).await,
            Err(error) => Err(DocumentError::InvalidRequest(error.to_string())),
        };
        if let Err(error) = pushed {
            upload.abandon().await;
            return Err(error);
        }
    }
    Ok(upload.finish().await?.id)
}

async fn read_text_field(field: &mut Field, lang: Lang) -> Result<String, PageError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|error| incomplete(lang, error))?;
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                lang,
                "error-bad-request-title",
                "error-bad-request-body",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|error| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            lang,
            "error-bad-request-title",
            "error-bad-request-body",
        )
        .with_cause(error)
    })
}

fn incomplete(lang: Lang, error: impl std::fmt::Display) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        lang,
        "error-bad-request-title",
        "error-bad-request-body",
    )
    .with_cause(error)
}
