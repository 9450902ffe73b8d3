//! The URLs a commune registers with its identity providers:
//! `GET /login/{id}` → provider → `GET /login/{id}/callback`, and
//! `POST /logout` → provider's end-session → `GET /logout/callback`.

use actix_web::http::StatusCode;
use actix_web::http::header::{CLEAR_SITE_DATA, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::client_address::client_address;
use super::page::see_other;
use super::page::{Lang, Message, Page, PageError};
use super::session::AuthState;
use crate::audit::{self, Actor, AuditEvent};
use crate::auth::assurance::provider_vouches_for_identity;
use crate::auth::relying_party::{LoginError, VerifiedLogin};
use crate::auth::sessions::{
    self, BROWSER_COOKIE, EndedSession, FlowLimit, FlowPurpose, SESSION_COOKIE, SessionKind,
};
use crate::auth::throttle::AddressKey;
use crate::citizens::{self, ProviderAccount};
use crate::config::Audience;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login/{id}", web::get().to(start_login))
        .route("/login/{id}/callback", web::get().to(finish_login))
        .route("/logout", web::post().to(logout))
        .route("/logout/callback", web::get().to(logged_out))
        .route("/logout/done", web::get().to(logged_out_locally));
}

/// The random value binding a redirect to this browser (reused while it lives).
pub(super) fn browser_value(request: &HttpRequest) -> String {
    request
        .cookie(BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| value.len() == 64)
        .unwrap_or_else(sessions::new_secret)
}

/// Consumes the redirect a provider sent the browser back from: its `state` must be
/// one we issued, unused, unexpired, to this very browser. `None` when it is not.
pub(super) async fn consume_returning_flow(
    request: &HttpRequest,
    state: &AppState,
    purpose: FlowPurpose,
    returned_state: &Option<String>,
    lang: Lang,
) -> Result<Option<sessions::Flow>, PageError> {
    let browser = request
        .cookie(BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_owned());
    let (Some(returned_state), Some(browser)) = (returned_state.clone(), browser) else {
        return Ok(None);
    };
    state
        .db
        .write(move |conn| sessions::consume_flow(conn, purpose, &returned_state, &browser))
        .await
        .map_err(|error| PageError::internal(lang, error))
}

pub(super) fn login_failed(lang: Lang, error: &LoginError) -> PageError {
    let (status, body) = match error {
        LoginError::ProviderUnavailable(_) => (StatusCode::BAD_GATEWAY, "login-error-unavailable"),
        LoginError::ProviderRefused { .. } => (StatusCode::FORBIDDEN, "login-error-refused"),
        LoginError::InvalidState => (StatusCode::BAD_REQUEST, "login-error-state"),
        LoginError::TokenRejected(_) => (StatusCode::BAD_REQUEST, "login-error-token"),
        LoginError::InsufficientLevel => (StatusCode::FORBIDDEN, "login-error-level"),
        LoginError::MissingClaims(_) => (StatusCode::BAD_REQUEST, "login-error-claims"),
    };
    PageError::new(status, lang, "login-failed-title", body).with_cause(format!("{error:?}"))
}

async fn start_login(
    request: HttpRequest,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    redirect_to_provider(&request, &page, &path, &state, &auth, FlowPurpose::Login).await
}

/// Sends the browser to the provider `provider_id` (which must serve the audience of
/// `purpose`), remembering the flow's state and nonce for its return.
pub(super) async fn redirect_to_provider(
    request: &HttpRequest,
    page: &Page,
    provider_id: &str,
    state: &AppState,
    auth: &AuthState,
    purpose: FlowPurpose,
) -> Result<HttpResponse, PageError> {
    let provider = auth
        .providers
        .get(provider_id)
        .filter(|provider| provider.audience() == audience_of(purpose))
        .ok_or_else(|| PageError::not_found(page.lang))?;
    let redirect = provider
        .authorization_redirect()
        .await
        .map_err(|error| login_failed(page.lang, &error))?;
    let browser = browser_value(request);
    let address =
        client_address(request).map(|address| AddressKey::of(&state.keys.hasher, address));
    let recorded = remember_flow(
        state,
        purpose,
        &redirect.state,
        &browser,
        provider.id(),
        &redirect.nonce,
        address,
    )
    .await?;
    if !recorded {
        // Logins started and never finished from this address: answer before storing more.
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            page.lang,
            "login-failed-title",
            "login-error-too-many",
        )
        .with_cause("too many pending logins from one address"));
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, redirect.url.to_string()))
        .cookie(auth.cookie(BROWSER_COOKIE, browser))
        .finish())
}

fn audience_of(purpose: FlowPurpose) -> Audience {
    match purpose {
        FlowPurpose::AgentLogin | FlowPurpose::AgentLogout => Audience::Agent,
        FlowPurpose::Login | FlowPurpose::Logout => Audience::Citizen,
    }
}

/// Checks a provider's return to `/…/{id}/callback` (our state, this browser, no
/// error) and exchanges the code: the verified login, or the page saying why not.
pub(super) async fn verify_provider_return(
    request: &HttpRequest,
    lang: Lang,
    provider_id: &str,
    query: &CallbackQuery,
    state: &AppState,
    auth: &AuthState,
    purpose: FlowPurpose,
) -> Result<VerifiedLogin, PageError> {
    let invalid_state = || login_failed(lang, &LoginError::InvalidState);
    let provider = auth
        .providers
        .get(provider_id)
        .filter(|provider| provider.audience() == audience_of(purpose))
        .ok_or_else(|| PageError::not_found(lang))?;
    let flow = consume_returning_flow(request, state, purpose, &query.state, lang)
        .await?
        .filter(|flow| flow.provider_id == provider.id())
        .ok_or_else(invalid_state)?;
    if let Some(error) = &query.error {
        let refused = LoginError::ProviderRefused {
            error: error.chars().take(100).collect(),
            description: query
                .error_description
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        };
        return Err(login_failed(lang, &refused));
    }
    let code = query.code.as_deref().ok_or_else(invalid_state)?;
    provider
        .complete_login(code, &flow.nonce)
        .await
        .map_err(|error| login_failed(lang, &error))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    pub(super) code: Option<String>,
    pub(super) state: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
}

async fn finish_login(
    request: HttpRequest,
    page: Page,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let login = verify_provider_return(
        &request,
        lang,
        &path,
        &query,
        &state,
        &auth,
        FlowPurpose::Login,
    )
    .await?;

    let keys = state.keys.clone();
    let policy = auth.policy;
    let provider_id = path.into_inner();
    // One browser, one session: the one it held before ends with this login.
    let previous = request
        .cookie(SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned());
    let providers = auth.providers.clone();
    let opened = state
        .db
        .write(move |conn| -> Result<_, PageError> {
            let account = ProviderAccount {
                issuer: &login.issuer,
                subject: &login.subject,
                provider_id: &provider_id,
                identity_verified: login.identity_verified,
            };
            let provider_vouches = |id: &str| {
                providers
                    .get(id)
                    .is_some_and(|provider| provider_vouches_for_identity(&provider.config))
            };
            let (citizen_id, _) = citizens::citizen_for_login(
                conn,
                &keys.master,
                &keys.hasher,
                &account,
                &login.identity,
                &provider_vouches,
            )
            .map_err(|error| PageError::internal(lang, error))?;
            if let Some(previous) = &previous {
                sessions::end_session(conn, previous)?;
            }
            let opened = sessions::open_session(
                conn,
                policy,
                SessionKind::Citizen,
                &citizen_id,
                Some(&provider_id),
                Some(&login.id_token),
            )?;
            audit::record(
                conn,
                AuditEvent::new(Actor::Citizen(citizen_id.clone()), "citizen.logged_in")
                    .citizen(&citizen_id)
                    .details(serde_json::json!({ "provider": provider_id })),
            )?;
            Ok(opened)
        })
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/vault"))
        .cookie(auth.cookie(SESSION_COOKIE, opened.cookie_value))
        .cookie(auth.removal(BROWSER_COOKIE))
        .finish())
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// Ends the session here, then at the provider.
async fn logout(
    request: HttpRequest,
    page: Page,
    form: web::Form<LogoutForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let Some(cookie) = request.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(see_other("/"));
    };
    // The CSRF token is checked against the session before anything is ended.
    let policy = auth.policy;
    let lookup = cookie.clone();
    let session = state
        .db
        .read(move |conn| sessions::find_session(conn, policy, SessionKind::Citizen, &lookup))
        .await?;
    let Some(session) = session else {
        return Ok(see_other("/"));
    };
    if !sessions::secrets_match(&form.csrf, &session.csrf_token) {
        return Err(PageError::csrf(lang));
    }
    let ended = state
        .db
        .write(move |conn| -> Result<_, crate::db::DbError> {
            let ended = sessions::end_session(conn, &cookie)?;
            if let Some(ended) = &ended {
                audit::record(
                    conn,
                    AuditEvent::new(
                        Actor::Citizen(ended.subject_id.clone()),
                        "citizen.logged_out",
                    )
                    .citizen(&ended.subject_id),
                )?;
            }
            Ok(ended)
        })
        .await?;

    let provider_logout = match ended {
        Some(ended) => provider_logout(&request, &state, &auth, ended).await?,
        None => None,
    };
    let mut response = HttpResponse::SeeOther();
    // Cookies are cleared at the very end (`/logout/callback`): the redirect must
    // still be matched to this browser when it comes back.
    response
        .insert_header((CLEAR_SITE_DATA, "\"cache\", \"storage\""))
        .cookie(auth.removal(SESSION_COOKIE));
    match provider_logout {
        Some((url, browser)) => Ok(response
            .insert_header((LOCATION, url.to_string()))
            .cookie(auth.cookie(BROWSER_COOKIE, browser))
            .finish()),
        None => Ok(response.insert_header((LOCATION, "/logout/done")).finish()),
    }
}

/// The provider's end-session redirect for the session just ended (and the browser
/// value it is bound to), when the session came from a provider that offers one.
async fn provider_logout(
    request: &HttpRequest,
    state: &AppState,
    auth: &AuthState,
    ended: EndedSession,
) -> Result<Option<(url::Url, String)>, PageError> {
    let (Some(provider_id), Some(id_token)) = (ended.provider_id, ended.id_token) else {
        return Ok(None);
    };
    let Some(provider) = auth.providers.get(&provider_id) else {
        return Ok(None);
    };
    let logout_state = sessions::new_secret();
    let Some(url) = provider.logout_redirect(&id_token, &logout_state).await else {
        return Ok(None);
    };
    let browser = browser_value(request);
    // A logout needs a session: not counted against the address.
    remember_flow(
        state,
        FlowPurpose::Logout,
        &logout_state,
        &browser,
        &provider_id,
        "",
        None,
    )
    .await?;
    Ok(Some((url, browser)))
}

/// Records a redirect to a provider, to be matched when the browser comes back. With
/// the client's `address`, refused (false, nothing stored) when that address already
/// has `[session] pending_logins_per_address` logins pending.
pub(super) async fn remember_flow(
    state: &AppState,
    purpose: FlowPurpose,
    flow_state: &str,
    browser: &str,
    provider_id: &str,
    nonce: &str,
    address: Option<AddressKey>,
) -> Result<bool, PageError> {
    let (flow_state, browser, provider_id, nonce) = (
        flow_state.to_owned(),
        browser.to_owned(),
        provider_id.to_owned(),
        nonce.to_owned(),
    );
    let pending = state.config.session.pending_logins_per_address;
    Ok(state
        .db
        .write(move |conn| {
            let limit = address
                .as_ref()
                .map(|address| FlowLimit { address, pending });
            sessions::record_flow(
                conn,
                purpose,
                &flow_state,
                &browser,
                &provider_id,
                &nonce,
                limit,
            )
        })
        .await?)
}

#[derive(Deserialize)]
pub(super) struct LogoutCallbackQuery {
    pub(super) state: Option<String>,
}

/// The provider sends the browser back here; the `state` must be the one we sent.
async fn logged_out(
    request: HttpRequest,
    page: Page,
    query: web::Query<LogoutCallbackQuery>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    consume_returning_flow(
        &request,
        &state,
        FlowPurpose::Logout,
        &query.state,
        page.lang,
    )
    .await?
    .ok_or_else(|| login_failed(page.lang, &LoginError::InvalidState))?;
    let mut response = logged_out_page(&page);
    response.add_cookie(&auth.removal(BROWSER_COOKIE)).ok();
    Ok(response)
}

async fn logged_out_locally(page: Page) -> HttpResponse {
    logged_out_page(&page)
}

fn logged_out_page(page: &Page) -> HttpResponse {
    let mut response = page.message(
        StatusCode::OK,
        Message::new("logged-out-title", "logged-out-message").next("/", "login-again"),
    );
    response.headers_mut().insert(
        CLEAR_SITE_DATA,
        actix_web::http::header::HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""),
    );
    response
}
