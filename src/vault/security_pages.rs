//! The citizen's "Security" page and the JSON calls its script makes: locking the vault
//! with a passkey, opening a locked vault (passkey or recovery code), adding and
//! removing passkeys, and fetching a locked document's ciphertext for the page to
//! decrypt. Every JSON call needs the session's CSRF token in `X-CSRF-Token` and answers
//! errors as `{"error": "<code>"}`, the code naming the message the page shows.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::lock::{
    LockError, LockRequest, NewPasskey, insert_passkey, lock_vault, start_over as start_over_vault,
};
use super::passkeys::{
    self, CeremonyPurpose, PasskeyError, Registered, RegistrationResponse, RemovalError,
};
use super::{DocumentId, encrypted_document};
use crate::audit::{self, Actor, AuditEvent};
use crate::citizens;
use crate::crypto::{VaultRecipient, from_base64url};
use crate::state::AppState;
use crate::web::page::{Page, PageError, see_other};
use crate::web::session::CitizenSession;
use crate::web::static_files::vault_script_integrity;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/vault/security", web::get().to(security_page))
        .route("/vault/security/lock/start", web::post().to(lock_start))
        .route("/vault/security/lock/finish", web::post().to(lock_finish))
        .route("/vault/security/passkeys/start", web::post().to(add_start))
        .route(
            "/vault/security/passkeys/finish",
            web::post().to(add_finish),
        )
        .route(
            "/vault/security/passkeys/{id}/remove",
            web::post().to(remove),
        )
        .route("/vault/security/start-over", web::post().to(start_over))
        .route("/vault/unlock/start", web::post().to(unlock_start))
        .route("/vault/unlock/finish", web::post().to(unlock_finish))
        .route("/vault/recovery", web::post().to(recovery))
        .route(
            "/vault/documents/{id}/encrypted",
            web::get().to(encrypted_download),
        );
}

/// A refused JSON call: its status and the code the page shows a message for.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str) -> Self {
        Self { status, code }
    }

    fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "vault security call failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code)
    }
}

impl actix_web::ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "error": self.code }))
    }
}

impl From<crate::db::DbError> for Refusal {
    fn from(error: crate::db::DbError) -> Self {
        Self::internal(error)
    }
}

impl From<diesel::result::Error> for Refusal {
    fn from(error: diesel::result::Error) -> Self {
        Self::internal(error)
    }
}

impl From<PasskeyError> for Refusal {
    fn from(error: PasskeyError) -> Self {
        use StatusCode as S;
        match error {
            PasskeyError::CeremonyExpired => Self::new(S::GONE, "ceremony_expired"),
            PasskeyError::NoPrf => Self::new(S::BAD_REQUEST, "no_prf"),
            PasskeyError::InvalidCredential(_) => Self::new(S::BAD_REQUEST, "invalid_credential"),
            PasskeyError::InvalidAssertion(_) => Self::new(S::BAD_REQUEST, "invalid_assertion"),
            PasskeyError::ProofMismatch => Self::new(S::BAD_REQUEST, "proof_mismatch"),
            PasskeyError::NoPasskey => Self::new(S::CONFLICT, "not_locked"),
            PasskeyError::TooManyAttempts => Self::new(S::TOO_MANY_REQUESTS, "too_many_attempts"),
            other => Self::internal(other),
        }
    }
}

impl From<LockError> for Refusal {
    fn from(error: LockError) -> Self {
        use StatusCode as S;
        match error {
            LockError::AlreadyLocked => Self::new(S::CONFLICT, "already_locked"),
            LockError::InvalidRecoveryCopy => Self::new(S::BAD_REQUEST, "invalid_recovery_copy"),
            LockError::InvalidWrappedIdentity | LockError::InvalidSalt => {
                Self::new(S::BAD_REQUEST, "invalid_wrapped_identity")
            }
            LockError::PasskeyInUse => Self::new(S::CONFLICT, "passkey_in_use"),
            other => Self::internal(other),
        }
    }
}

/// A logged-in citizen whose call carries the session's CSRF token.
fn checked(
    citizen: Result<CitizenSession, PageError>,
    request: &HttpRequest,
) -> Result<CitizenSession, Refusal> {
    let citizen = citizen.map_err(|_| Refusal::new(StatusCode::UNAUTHORIZED, "session_expired"))?;
    let token = request
        .headers()
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    citizen
        .check_csrf(token)
        .map_err(|_| Refusal::new(StatusCode::FORBIDDEN, "csrf"))?;
    Ok(citizen)
}

#[derive(Serialize)]
struct PasskeyLine {
    id: String,
    label: String,
    created: String,
    last_used: String,
}

async fn security_page(
    citizen: CitizenSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (citizen_id, lang) = (citizen.citizen_id().to_owned(), page.lang);
    let (locked, stored) = state
        .db
        .read(move |conn| -> Result<_, PageError> {
            let locked = citizens::is_locked(conn, &citizen_id)
                .map_err(|error| PageError::internal(lang, error))?;
            let stored = passkeys::citizen_passkeys(conn, &citizen_id)
                .map_err(|error| PageError::internal(lang, error))?;
            Ok((locked, stored))
        })
        .await?;
    let day = |at: chrono::NaiveDateTime| super::pages::format_date(page.lang, at);
    let lines: Vec<PasskeyLine> = stored
        .iter()
        .map(|stored| PasskeyLine {
            id: stored.id.clone(),
            label: stored.label.clone(),
            created: day(stored.created_at),
            last_used: stored.last_used_at.map(day).unwrap_or_default(),
        })
        .collect();
    let mut context = citizen.context(&page);
    context.insert("vault_locked", &locked);
    context.insert("can_remove_passkey", &(lines.len() > 1));
    context.insert("passkeys", &lines);
    vault_script_integrity().insert_into(&mut context);
    Ok(page.render(StatusCode::OK, "vault_security.html", &context))
}

#[derive(Deserialize)]
struct LockStart {
    recipient: String,
}

async fn lock_start(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    body: web::Json<LockStart>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let recipient = VaultRecipient::parse(&body.recipient)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "invalid_recipient"))?;
    let citizen_id = citizen.citizen_id().to_owned();
    let app = state.clone();
    let started = state
        .db
        .write(move |conn| -> Result<_, Refusal> {
            if citizens::is_locked(conn, &citizen_id).map_err(Refusal::internal)? {
                return Err(Refusal::new(StatusCode::CONFLICT, "already_locked"));
            }
            Ok(app.passkeys.start_registration(
                conn,
                &citizen_id,
                CeremonyPurpose::Lock,
                Some(&recipient),
            )?)
        })
        .await?;
    Ok(no_store_json(&started))
}

/// What the page sends once a passkey is registered and the identity wrapped for it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasskeyFinish {
    ceremony: String,
    credential: serde_json::Value,
    prf_salt: String,
    wrapped_identity: String,
    #[serde(default)]
    label: String,
    /// Lock only.
    #[serde(default)]
    recovery_copy: Option<String>,
    /// Lock only: the proof opened with the new identity.
    #[serde(default)]
    proof: Option<String>,
}

impl PasskeyFinish {
    /// The registration response as webauthn-rs reads it, and whether the browser
    /// reported the PRF extension enabled (webauthn-rs does not read that part).
    fn credential(&self) -> Result<(RegisterPublicKeyCredential, bool), Refusal> {
        let prf_enabled = self
            .credential
            .pointer("/clientExtensionResults/prf/enabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let credential = serde_json::from_value(self.credential.clone())
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "invalid_credential"))?;
        Ok((credential, prf_enabled))
    }

    fn binary(text: &str, code: &'static str) -> Result<Vec<u8>, Refusal> {
        from_base64url(text).ok_or(Refusal::new(StatusCode::BAD_REQUEST, code))
    }

    fn new_passkey(&self, registered: Registered) -> Result<NewPasskey, Refusal> {
        Ok(NewPasskey {
            credential_id: registered.credential_id,
            record: registered.record,
            prf_salt: Self::binary(&self.prf_salt, "invalid_wrapped_identity")?,
            wrapped_identity: Self::binary(&self.wrapped_identity, "invalid_wrapped_identity")?,
            label: self.label.clone(),
        })
    }
}

#[derive(Serialize)]
struct LockDone {
    documents: usize,
    vouchers: usize,
}

async fn lock_finish(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    body: web::Json<PasskeyFinish>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let body = body.into_inner();
    let (credential, prf_enabled) = body.credential()?;
    let recovery_copy = PasskeyFinish::binary(
        body.recovery_copy.as_deref().unwrap_or_default(),
        "invalid_recovery_copy",
    )?;
    let citizen_id = citizen.citizen_id().to_owned();
    let registered = finish_registration(
        &state,
        &citizen_id,
        CeremonyPurpose::Lock,
        &body,
        credential,
        prf_enabled,
    )
    .await?;
    let recipient = registered
        .recipient
        .clone()
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "proof_mismatch"))?;
    let request = LockRequest {
        recipient,
        passkey: body.new_passkey(registered)?,
        recovery_copy,
    };
    let app = state.clone();
    let report = state
        .db
        .write(move |conn| lock_vault(conn, app.keys.server_keys(), &citizen_id, request))
        .await?;
    Ok(no_store_json(&LockDone {
        documents: report.documents,
        vouchers: report.vouchers,
    }))
}

async fn add_start(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let citizen_id = citizen.citizen_id().to_owned();
    let app = state.clone();
    let started = state
        .db
        .write(move |conn| -> Result<_, Refusal> {
            if !citizens::is_locked(conn, &citizen_id).map_err(Refusal::internal)? {
                return Err(Refusal::new(StatusCode::CONFLICT, "not_locked"));
            }
            Ok(app.passkeys.start_registration(
                conn,
                &citizen_id,
                CeremonyPurpose::AddPasskey,
                None,
            )?)
        })
        .await?;
    Ok(no_store_json(&started))
}

#[derive(Serialize)]
struct Added {
    id: String,
}

async fn add_finish(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    body: web::Json<PasskeyFinish>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let body = body.into_inner();
    let (credential, prf_enabled) = body.credential()?;
    let citizen_id = citizen.citizen_id().to_owned();
    let registered = finish_registration(
        &state,
        &citizen_id,
        CeremonyPurpose::AddPasskey,
        &body,
        credential,
        prf_enabled,
    )
    .await?;
    let passkey = body.new_passkey(registered)?.checked()?;
    let id = state
        .db
        .write(move |conn| -> Result<String, Refusal> {
            let id = insert_passkey(conn, &citizen_id, &passkey)?;
            audit::record(
                conn,
                AuditEvent::new(Actor::Citizen(citizen_id.clone()), "vault.passkey_added")
                    .citizen(&citizen_id),
            )
            .map_err(Refusal::internal)?;
            Ok(id)
        })
        .await?;
    Ok(no_store_json(&Added { id }))
}

#[derive(Deserialize)]
struct RemoveForm {
    csrf: String,
}

async fn remove(
    citizen: CitizenSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<RemoveForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    citizen.check_csrf(&form.csrf)?;
    let lang = page.lang;
    let (citizen_id, passkey_id) = (citizen.citizen_id().to_owned(), path.into_inner());
    state
        .db
        .write(move |conn| passkeys::remove_passkey(conn, &citizen_id, &passkey_id))
        .await
        .map_err(|error| match error {
            RemovalError::NotFound => PageError::not_found(lang),
            RemovalError::LastPasskey => PageError::new(
                StatusCode::CONFLICT,
                lang,
                "vault-security-last-passkey-heading",
                "vault-security-last-passkey-body",
            )
            .with_next("/vault/security", "vault-security-back"),
            other => PageError::internal(lang, other),
        })?;
    Ok(see_other("/vault/security"))
}

#[derive(Deserialize)]
struct StartOverForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// A new, empty vault for a citizen who lost every passkey and the recovery code (after
/// they ticked that they understand the old documents are lost).
async fn start_over(
    citizen: CitizenSession,
    page: Page,
    form: web::Form<StartOverForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    citizen.check_csrf(&form.csrf)?;
    let lang = page.lang;
    if form.confirm != "yes" {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang,
            "locked-start-over-unconfirmed-heading",
            "locked-start-over-unconfirmed-body",
        )
        .with_next("/vault/security", "vault-security-back"));
    }
    let (citizen_id, app) = (citizen.citizen_id().to_owned(), state.clone());
    state
        .db
        .write(move |conn| start_over_vault(conn, app.keys.server_keys(), &citizen_id))
        .await
        .map_err(|error| match error {
            LockError::NotLocked => PageError::new(
                StatusCode::CONFLICT,
                lang,
                "locked-start-over-not-locked-heading",
                "locked-start-over-not-locked-body",
            )
            .with_next("/vault", "vault-security-back"),
            other => PageError::internal(lang, other),
        })?;
    Ok(see_other("/vault"))
}

async fn unlock_start(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let citizen_id = citizen.citizen_id().to_owned();
    let app = state.clone();
    let started = state
        .db
        .write(move |conn| app.passkeys.start_authentication(conn, &citizen_id))
        .await?;
    Ok(no_store_json(&started))
}

#[derive(Deserialize)]
struct UnlockFinish {
    ceremony: String,
    credential: serde_json::Value,
}

async fn unlock_finish(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    body: web::Json<UnlockFinish>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let body = body.into_inner();
    let credential: PublicKeyCredential = serde_json::from_value(body.credential)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "invalid_assertion"))?;
    let citizen_id = citizen.citizen_id().to_owned();
    let app = state.clone();
    let unlocked = state
        .db
        .write(move |conn| {
            committed(app.passkeys.finish_authentication(
                conn,
                &citizen_id,
                &body.ceremony,
                &credential,
            ))
        })
        .await??;
    Ok(no_store_json(&unlocked))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoveryCopy {
    recovery_copy: String,
}

async fn recovery(
    citizen: Result<CitizenSession, PageError>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let citizen = checked(citizen, &request)?;
    let citizen_id = citizen.citizen_id().to_owned();
    let recovery_copy = state
        .db
        .write(move |conn| passkeys::recovery_copy(conn, &citizen_id))
        .await?;
    Ok(no_store_json(&RecoveryCopy { recovery_copy }))
}

/// A document's age header followed by its payload, for the citizen's page to decrypt
/// (`X-Age-Header-Length` says where the payload starts). Nothing is decrypted here.
async fn encrypted_download(
    citizen: CitizenSession,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let id = DocumentId::parse(&path).ok_or_else(|| PageError::not_found(lang))?;
    let document = encrypted_document(&state, citizen.citizen_id(), &id)
        .await
        .map_err(|error| match error {
            super::DocumentError::NotFound => PageError::not_found(lang),
            other => PageError::internal(lang, other),
        })?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/octet-stream"))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header(("X-Age-Header-Length", document.header_length.to_string()))
        .no_chunking(document.length)
        .streaming(document.content))
}

/// Checks a passkey registration against its ceremony. The ceremony is consumed in its
/// own transaction, committed even when the registration is refused: a ceremony serves
/// once, whatever its outcome.
async fn finish_registration(
    state: &web::Data<AppState>,
    citizen_id: &str,
    purpose: CeremonyPurpose,
    body: &PasskeyFinish,
    credential: RegisterPublicKeyCredential,
    prf_enabled: bool,
) -> Result<Registered, Refusal> {
    let (app, citizen_id) = (state.clone(), citizen_id.to_owned());
    let (ceremony, proof) = (body.ceremony.clone(), body.proof.clone());
    Ok(state
        .db
        .write(move |conn| {
            committed(app.passkeys.finish_registration(
                conn,
                &citizen_id,
                purpose,
                RegistrationResponse {
                    ceremony: &ceremony,
                    credential: &credential,
                    prf_enabled,
                    proof: proof.as_deref(),
                },
            ))
        })
        .await??)
}

/// Commits the transaction whatever the ceremony's outcome (its deletion must stick),
/// handing the outcome on.
fn committed<T>(
    outcome: Result<T, PasskeyError>,
) -> Result<Result<T, PasskeyError>, crate::db::DbError> {
    Ok(outcome)
}

fn no_store_json(value: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(value)
}
