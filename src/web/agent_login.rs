//! Agent login pages: `/agent/login` (email and password, or a provider for agents),
//! `/agent/login/code` (TOTP or recovery code), `/agent/login/enrol` (first second
//! factor), the provider callback, `/agent/logout`, and the agent's home and account.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{CLEAR_SITE_DATA, LOCATION, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::agent_session::{AGENT_SESSION_COOKIE, AgentSession};
use super::client_address::client_address;
use super::login::{
    CallbackQuery, LogoutCallbackQuery, browser_value, consume_returning_flow, login_failed,
    redirect_to_provider, remember_flow, verify_provider_return,
};
use super::page::see_other;
use super::page::{Lang, Message, Page, PageError};
use super::qr::qr_svg;
use super::session::AuthState;
use crate::agents::credentials::{self, NewPassword, RecoveryCode, TotpSecret};
use crate::agents::login::{
    self as agent_login, CodeOutcome, Enrolment, LoggedIn, PasswordChange, PasswordOutcome,
};
use crate::agents::login::{ProviderEmail, ProviderLoginMatch};
use crate::agents::tenant_choice;
use crate::agents::{Agent, login::ProviderLoginRefusal};
use crate::audit::{self, Actor, AuditEvent};
use crate::auth::relying_party::LoginError;
use crate::auth::sessions::{self, BROWSER_COOKIE, FlowPurpose};
use crate::state::AppState;

/// The half-logged-in state between password and code.
const PENDING_COOKIE: &str = "eg_agent_pending";
/// Binds the login forms (before any session exists) to this browser: double submit.
const FORM_COOKIE: &str = "eg_agent_form";
/// A provider login waiting for the person to choose a tenant (`tenant_choice`).
const CHOICE_COOKIE: &str = "eg_agent_choice";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/login", web::get().to(login_page))
        .route("/agent/login", web::post().to(submit_password))
        .route("/agent/login/code", web::get().to(code_page))
        .route("/agent/login/code", web::post().to(submit_code))
        .route("/agent/login/enrol", web::get().to(enrol_page))
        .route("/agent/login/enrol", web::post().to(submit_enrolment))
        .route(
            "/agent/login/oidc/{id}",
            web::get().to(start_provider_login),
        )
        .route(
            "/agent/login/oidc/{id}/callback",
            web::get().to(finish_provider_login),
        )
        .route("/agent/login/tenant", web::get().to(tenant_choice_page))
        .route("/agent/login/tenant", web::post().to(submit_tenant_choice))
        .route("/agent/logout", web::post().to(logout))
        .route("/agent/logout/callback", web::get().to(logged_out))
        .route("/agent/logout/done", web::get().to(logged_out_locally))
        .route("/agent", web::get().to(home))
        .route("/agent/account", web::get().to(account))
        .route("/agent/account/password", web::post().to(change_password))
        .route(
            "/agent/account/recovery-codes",
            web::post().to(regenerate_recovery_codes),
        );
}

/// A cookie scoped to the login pages, gone with the browser.
fn login_cookie<'a>(auth: &AuthState, name: &'a str, value: String) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/agent/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(auth.secure_cookies)
        .finish()
}

/// The pending tenant choice's cookie. `Lax`, not `Strict`: it is set on the return
/// from the provider, a navigation that began on another site, and a `Strict` cookie
/// would not come back on the redirect that follows it.
fn choice_cookie(auth: &AuthState, value: String) -> Cookie<'static> {
    Cookie::build(CHOICE_COOKIE, value)
        .path("/agent/login")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(auth.secure_cookies)
        .finish()
}

fn login_cookie_removal<'a>(auth: &AuthState, name: &'a str) -> Cookie<'a> {
    let mut cookie = login_cookie(auth, name, String::new());
    cookie.make_removal();
    cookie
}

/// The pre-session form token of this browser (reused while it lives).
fn form_token(request: &HttpRequest) -> String {
    request
        .cookie(FORM_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| value.len() == 64)
        .unwrap_or_else(sessions::new_secret)
}

/// Checks a login form's token against the browser's form cookie.
fn check_form_token(request: &HttpRequest, submitted: &str, lang: Lang) -> Result<(), PageError> {
    match request.cookie(FORM_COOKIE) {
        Some(cookie) if sessions::secrets_match(cookie.value(), submitted) => Ok(()),
        _ => Err(PageError::csrf(lang).with_next("/agent/login", "agent-login-start-again")),
    }
}

/// A provider button on the login page.
#[derive(Serialize)]
struct ProviderButton {
    id: String,
    label: String,
}

/// Renders the login page (with a refusal message when `refused`).
fn render_login(
    page: &Page,
    auth: &AuthState,
    token: String,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> HttpResponse {
    let mut context = page.context();
    let providers: Vec<ProviderButton> = auth
        .providers
        .for_agents()
        .iter()
        .map(|provider| ProviderButton {
            id: provider.id().to_owned(),
            label: provider.label(),
        })
        .collect();
    context.insert("providers", &providers);
    context.insert("csrf", &token);
    context.insert("email", email);
    context.insert("error", &error.map(|key| page.lang.text(key)));
    let mut response = page.render(status, "agent_login.html", &context);
    response
        .add_cookie(&login_cookie(auth, FORM_COOKIE, token))
        .ok();
    response
}

async fn login_page(request: HttpRequest, page: Page, auth: web::Data<AuthState>) -> HttpResponse {
    render_login(&page, &auth, form_token(&request), StatusCode::OK, None, "")
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    email: String,
    password: String,
}

/// The same answer for an unknown email, a wrong password, a disabled or locked
/// account and a throttled address.
const REFUSED: &str = "agent-login-refused";
/// When every password check is taken: the form again, with "try again in a moment".
const BUSY_RETRY_AFTER_SECONDS: &str = "5";

async fn submit_password(
    request: HttpRequest,
    page: Page,
    form: web::Form<PasswordForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf, page.lang)?;
    let form = form.into_inner();
    let answer = |status: StatusCode, message: &str| {
        render_login(
            &page,
            &auth,
            form_token(&request),
            status,
            Some(message),
            &form.email,
        )
    };
    if form.password.chars().count() > credentials::PASSWORD_MAX_CHARS {
        return Ok(answer(StatusCode::UNAUTHORIZED, REFUSED));
    }
    let outcome = agent_login::check_password(
        &state,
        client_address(&request),
        &form.email,
        SecretString::from(form.password.clone()),
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    match outcome {
        PasswordOutcome::Refused => Ok(answer(StatusCode::UNAUTHORIZED, REFUSED)),
        PasswordOutcome::Busy => {
            let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, "agent-login-busy");
            response.headers_mut().insert(
                RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static(BUSY_RETRY_AFTER_SECONDS),
            );
            Ok(response)
        }
        PasswordOutcome::Accepted { pending, enrolled } => {
            let next = if enrolled {
                "/agent/login/code"
            } else {
                "/agent/login/enrol"
            };
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, next))
                .cookie(login_cookie(&auth, PENDING_COOKIE, pending))
                .finish())
        }
    }
}

/// The agent session this browser holds already, if any: a new login ends it.
fn agent_session_cookie(request: &HttpRequest) -> Option<String> {
    request
        .cookie(AGENT_SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

fn pending_cookie(request: &HttpRequest) -> Option<String> {
    request
        .cookie(PENDING_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// The half-logged-in state is gone: start again from the password.
fn start_again(lang: Lang) -> PageError {
    PageError::new(
        StatusCode::UNAUTHORIZED,
        lang,
        "agent-login-expired-title",
        "agent-login-expired-message",
    )
    .with_next("/agent/login", "agent-login-start-again")
}

fn render_code(
    page: &Page,
    auth: &AuthState,
    token: String,
    status: StatusCode,
    error: bool,
) -> HttpResponse {
    let mut context = page.context();
    context.insert("csrf", &token);
    context.insert("error", &error.then(|| page.lang.text(REFUSED)));
    let mut response = page.render(status, "agent_code.html", &context);
    response
        .add_cookie(&login_cookie(auth, FORM_COOKIE, token))
        .ok();
    response
}

async fn code_page(request: HttpRequest, page: Page, auth: web::Data<AuthState>) -> HttpResponse {
    if pending_cookie(&request).is_none() {
        return see_other("/agent/login");
    }
    render_code(&page, &auth, form_token(&request), StatusCode::OK, false)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn submit_code(
    request: HttpRequest,
    page: Page,
    form: web::Form<CodeForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf, page.lang)?;
    let pending = pending_cookie(&request).ok_or_else(|| start_again(page.lang))?;
    let outcome = agent_login::check_code(
        &state,
        auth.agent_policy,
        client_address(&request),
        pending,
        form.into_inner().code,
        false,
        agent_session_cookie(&request),
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    match outcome {
        CodeOutcome::LoggedIn(logged_in) => Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, "/agent"))
            .cookie(auth.cookie(AGENT_SESSION_COOKIE, logged_in.session.cookie_value))
            .cookie(login_cookie_removal(&auth, PENDING_COOKIE))
            .finish()),
        CodeOutcome::Refused => Ok(render_code(
            &page,
            &auth,
            form_token(&request),
            StatusCode::UNAUTHORIZED,
            true,
        )),
        CodeOutcome::NotEnrolled => Ok(see_other("/agent/login/enrol")),
        CodeOutcome::Expired | CodeOutcome::AlreadyEnrolled => Err(start_again(page.lang)),
    }
}

fn render_enrolment(
    page: &Page,
    auth: &AuthState,
    token: String,
    agent: &Agent,
    secret: &TotpSecret,
    error: bool,
) -> Result<HttpResponse, PageError> {
    let url = secret
        .otpauth_url(&agent.email)
        .map_err(|error| PageError::internal(page.lang, error))?;
    let qr = qr_svg(&url, &page.lang.text("agent-enrol-qr-label"))
        .ok_or_else(|| PageError::internal(page.lang, "QR code could not be drawn"))?;
    let mut context = page.context();
    context.insert("csrf", &token);
    context.insert("qr_svg", &qr);
    context.insert("secret_groups", &secret.grouped());
    context.insert("error", &error.then(|| page.lang.text(REFUSED)));
    let status = if error {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut response = page.render(status, "agent_enrol.html", &context);
    response
        .add_cookie(&login_cookie(auth, FORM_COOKIE, token))
        .ok();
    Ok(response)
}

async fn enrol_page(
    request: HttpRequest,
    page: Page,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    let Some(pending) = pending_cookie(&request) else {
        return Ok(see_other("/agent/login"));
    };
    let enrolment = agent_login::enrolment(&state, pending)
        .await
        .map_err(|error| PageError::internal(page.lang, error))?;
    match enrolment {
        Enrolment::Ready { agent, secret } => {
            render_enrolment(&page, &auth, form_token(&request), &agent, &secret, false)
        }
        Enrolment::AlreadyEnrolled => Ok(see_other("/agent/login/code")),
        Enrolment::Expired => Err(start_again(page.lang)),
    }
}

async fn submit_enrolment(
    request: HttpRequest,
    page: Page,
    form: web::Form<CodeForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf, page.lang)?;
    let pending = pending_cookie(&request).ok_or_else(|| start_again(page.lang))?;
    let outcome = agent_login::check_code(
        &state,
        auth.agent_policy,
        client_address(&request),
        pending.clone(),
        form.into_inner().code,
        true,
        agent_session_cookie(&request),
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    match outcome {
        CodeOutcome::LoggedIn(logged_in) => {
            let LoggedIn {
                session,
                recovery_codes,
                ..
            } = *logged_in;
            let mut response = render_recovery_codes(&page, &recovery_codes, "/agent");
            response
                .add_cookie(&auth.cookie(AGENT_SESSION_COOKIE, session.cookie_value))
                .ok();
            response
                .add_cookie(&login_cookie_removal(&auth, PENDING_COOKIE))
                .ok();
            Ok(response)
        }
        CodeOutcome::Refused => {
            match agent_login::enrolment(&state, pending)
                .await
                .map_err(|error| PageError::internal(page.lang, error))?
            {
                Enrolment::Ready { agent, secret } => {
                    render_enrolment(&page, &auth, form_token(&request), &agent, &secret, true)
                }
                Enrolment::AlreadyEnrolled | Enrolment::Expired => Err(start_again(page.lang)),
            }
        }
        CodeOutcome::AlreadyEnrolled => Ok(see_other("/agent/login/code")),
        CodeOutcome::NotEnrolled | CodeOutcome::Expired => Err(start_again(page.lang)),
    }
}

/// The recovery codes, shown this once.
fn render_recovery_codes(page: &Page, codes: &[RecoveryCode], next: &str) -> HttpResponse {
    let mut context = page.context();
    let shown: Vec<String> = codes.iter().map(RecoveryCode::display).collect();
    context.insert("codes", &shown);
    context.insert("next_href", next);
    page.render(StatusCode::OK, "agent_recovery_codes.html", &context)
}

fn provider_refused(lang: Lang, refusal: ProviderLoginRefusal) -> PageError {
    let body = match refusal {
        ProviderLoginRefusal::NoEmail | ProviderLoginRefusal::UnknownAgent => {
            "agent-provider-unknown"
        }
        ProviderLoginRefusal::EmailNotVerified => "agent-provider-email-unverified",
        ProviderLoginRefusal::SecondFactorMissing => "agent-provider-second-factor",
    };
    PageError::new(
        StatusCode::FORBIDDEN,
        lang,
        "agent-provider-refused-title",
        body,
    )
    .with_cause(refusal)
    .with_next("/agent/login", "agent-login-start-again")
}

async fn start_provider_login(
    request: HttpRequest,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    redirect_to_provider(
        &request,
        &page,
        &path,
        &state,
        &auth,
        FlowPurpose::AgentLogin,
    )
    .await
}

async fn finish_provider_login(
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
        FlowPurpose::AgentLogin,
    )
    .await?;
    let policy = auth.agent_policy;
    let second_factor = auth.agent_second_factor;
    let provider_id = path.into_inner();
    let previous = agent_session_cookie(&request);
    let outcome = state
        .db
        .write(move |conn| -> Result<_, crate::db::DbError> {
            let claims = ProviderEmail {
                email: login.email.as_deref(),
                email_verified: login.email_verified,
            };
            let found = match agent_login::agent_for_provider_login(
                conn,
                &claims,
                &login.amr,
                second_factor,
            )? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            Ok(Ok(match found {
                ProviderLoginMatch::One(agent) => {
                    ProviderLoginNext::Opened(agent_login::open_agent_session(
                        conn,
                        policy,
                        &agent,
                        Some(&provider_id),
                        Some(&login.id_token),
                        "provider",
                        previous.as_deref(),
                    )?)
                }
                ProviderLoginMatch::Several(agents) => {
                    ProviderLoginNext::Choose(tenant_choice::hold_tenant_choice(
                        conn,
                        &agents,
                        &provider_id,
                        &login.id_token,
                    )?)
                }
            }))
        })
        .await?
        .map_err(|refusal| provider_refused(lang, refusal))?;
    match outcome {
        ProviderLoginNext::Opened(opened) => Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, "/agent"))
            .cookie(auth.cookie(AGENT_SESSION_COOKIE, opened.cookie_value))
            .cookie(auth.removal(BROWSER_COOKIE))
            .finish()),
        ProviderLoginNext::Choose(secret) => Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, "/agent/login/tenant"))
            .cookie(choice_cookie(&auth, secret))
            .cookie(auth.removal(BROWSER_COOKIE))
            .finish()),
    }
}

/// Where a provider login for agents goes next.
enum ProviderLoginNext {
    Opened(crate::auth::sessions::NewSession),
    /// Several tenants: the browser holds this secret until the person chooses.
    Choose(String),
}

fn choice_expired(lang: Lang) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        lang,
        "agent-tenant-choice-title",
        "agent-tenant-choice-expired",
    )
    .with_next("/agent/login", "agent-login-start-again")
}

/// `GET /agent/login/tenant`: the tenants where this work email has an account.
async fn tenant_choice_page(
    request: HttpRequest,
    page: Page,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let secret = request
        .cookie(CHOICE_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .ok_or_else(|| choice_expired(lang))?;
    let options = state
        .db
        .read(move |conn| tenant_choice::tenant_options(conn, &secret))
        .await?
        .filter(|options| !options.is_empty())
        .ok_or_else(|| choice_expired(lang))?;
    let token = form_token(&request);
    let mut context = page.context();
    context.insert("options", &options);
    context.insert("csrf", &token);
    let mut response = page.render(StatusCode::OK, "agent_choose_tenant.html", &context);
    response
        .add_cookie(&login_cookie(&auth, FORM_COOKIE, token))
        .ok();
    Ok(response)
}

#[derive(Deserialize)]
struct TenantChoiceForm {
    csrf: String,
    agent: String,
}

/// `POST /agent/login/tenant`: opens the chosen tenant's account (once).
async fn submit_tenant_choice(
    request: HttpRequest,
    page: Page,
    form: web::Form<TenantChoiceForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    check_form_token(&request, &form.csrf, lang)?;
    let secret = request
        .cookie(CHOICE_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .ok_or_else(|| choice_expired(lang))?;
    let policy = auth.agent_policy;
    let agent_id = form.into_inner().agent;
    let previous = agent_session_cookie(&request);
    let opened = state
        .db
        .write(move |conn| -> Result<_, crate::db::DbError> {
            let Some(chosen) = tenant_choice::take_tenant_choice(conn, &secret, &agent_id)? else {
                return Ok(None);
            };
            agent_login::open_agent_session(
                conn,
                policy,
                &chosen.agent,
                Some(&chosen.provider_id),
                Some(&chosen.id_token),
                "provider",
                previous.as_deref(),
            )
            .map(Some)
        })
        .await?
        .ok_or_else(|| choice_expired(lang))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/agent"))
        .cookie(auth.cookie(AGENT_SESSION_COOKIE, opened.cookie_value))
        .cookie({
            let mut removal = choice_cookie(&auth, String::new());
            removal.make_removal();
            removal
        })
        .finish())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Ends the agent session here, then at the provider if it came from one.
async fn logout(
    request: HttpRequest,
    agent: AgentSession,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    agent.check_csrf(&form.csrf)?;
    let Some(cookie) = request
        .cookie(AGENT_SESSION_COOKIE)
        .map(|c| c.value().to_owned())
    else {
        return Ok(see_other("/agent/login"));
    };
    let ended = state
        .db
        .write(move |conn| -> Result<_, crate::db::DbError> {
            let ended = sessions::end_session(conn, &cookie)?;
            if let Some(ended) = &ended {
                audit::record(
                    conn,
                    AuditEvent::new(Actor::Agent(ended.subject_id.clone()), "agent.logged_out")
                        .tenant(&agent.agent.tenant_id)
                        .subject("agent", &ended.subject_id),
                )?;
            }
            Ok(ended)
        })
        .await?;
    let mut response = HttpResponse::SeeOther();
    // Only this cookie goes: a citizen may be logged in on the same kiosk browser.
    response
        .insert_header((CLEAR_SITE_DATA, "\"cache\""))
        .cookie(auth.removal(AGENT_SESSION_COOKIE));
    let provider_logout = match ended {
        Some(sessions::EndedSession {
            provider_id: Some(provider_id),
            id_token: Some(id_token),
            ..
        }) => provider_logout(&request, &state, &auth, &provider_id, &id_token).await?,
        _ => None,
    };
    match provider_logout {
        Some((url, browser)) => Ok(response
            .insert_header((LOCATION, url.to_string()))
            .cookie(auth.cookie(BROWSER_COOKIE, browser))
            .finish()),
        None => Ok(response
            .insert_header((LOCATION, "/agent/logout/done"))
            .finish()),
    }
}

/// The provider's end-session redirect, when the provider offers one.
async fn provider_logout(
    request: &HttpRequest,
    state: &AppState,
    auth: &AuthState,
    provider_id: &str,
    id_token: &str,
) -> Result<Option<(url::Url, String)>, PageError> {
    let Some(provider) = auth.providers.get(provider_id) else {
        return Ok(None);
    };
    let logout_state = sessions::new_secret();
    let Some(url) = provider.logout_redirect(id_token, &logout_state).await else {
        return Ok(None);
    };
    let browser = browser_value(request);
    remember_flow(
        state,
        FlowPurpose::AgentLogout,
        &logout_state,
        &browser,
        provider_id,
        "",
        None,
    )
    .await?;
    Ok(Some((url, browser)))
}

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
        FlowPurpose::AgentLogout,
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
    page.message(
        StatusCode::OK,
        Message::new("logged-out-title", "agent-logged-out-message")
            .next("/agent/login", "login-again"),
    )
}

async fn home(
    page: Page,
    agent: AgentSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let tenant_id = agent.agent.tenant_id.clone();
    let tenant = state
        .db
        .read(move |conn| crate::tenants::tenant_by_id(conn, &tenant_id))
        .await?;
    let mut context = agent.context(&page);
    context.insert(
        "tenant_name",
        &tenant.map(|tenant| tenant.name).unwrap_or_default(),
    );
    Ok(page.render(StatusCode::OK, "agent_home.html", &context))
}

/// What the account page shows about the agent's credentials.
#[derive(Serialize)]
struct AccountFacts {
    has_password: bool,
    second_factor: bool,
    recovery_codes_left: i64,
    provider: Option<String>,
}

async fn account_facts(state: &AppState, agent: &AgentSession) -> Result<AccountFacts, PageError> {
    let agent_id = agent.agent.id.clone();
    let (credentials, left) = state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            Ok((
                credentials::credentials_of(conn, &agent_id)?,
                credentials::remaining_recovery_codes(conn, &agent_id)?,
            ))
        })
        .await?;
    Ok(AccountFacts {
        has_password: credentials
            .as_ref()
            .is_some_and(|c| c.password_hash.is_some()),
        second_factor: credentials.as_ref().is_some_and(|c| c.has_second_factor()),
        recovery_codes_left: left,
        provider: agent.session.provider_id.clone(),
    })
}

async fn render_account(
    page: &Page,
    state: &AppState,
    agent: &AgentSession,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let facts = account_facts(state, agent).await?;
    let mut context = agent.context(page);
    context.insert("facts", &facts);
    context.insert("notice", &notice.map(|key| page.lang.text(key)));
    context.insert("error", &error.map(|key| page.lang.text(key)));
    Ok(page.render(status, "agent_account.html", &context))
}

async fn account(
    page: Page,
    agent: AgentSession,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    render_account(&page, &state, &agent, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
struct PasswordChangeForm {
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

async fn change_password(
    page: Page,
    agent: AgentSession,
    form: web::Form<PasswordChangeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.check_csrf(&form.csrf)?;
    let form = form.into_inner();
    let refuse = |key: &'static str| {
        render_account(
            &page,
            &state,
            &agent,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some(key),
        )
    };
    if form.new != form.confirm {
        return refuse("agent-password-mismatch").await;
    }
    let Ok(new_password) = NewPassword::parse(&form.new) else {
        return refuse("agent-password-length").await;
    };
    let changed = agent_login::change_password(
        &state,
        agent.agent.clone(),
        agent.session.id_hash.clone(),
        SecretString::from(form.current),
        new_password,
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    match changed {
        PasswordChange::Changed => {}
        PasswordChange::NoPassword => return refuse("agent-password-none").await,
        PasswordChange::WrongCurrent => return refuse("agent-password-wrong").await,
        PasswordChange::Busy => {
            let mut response = render_account(
                &page,
                &state,
                &agent,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some("agent-login-busy"),
            )
            .await?;
            response.headers_mut().insert(
                RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static(BUSY_RETRY_AFTER_SECONDS),
            );
            return Ok(response);
        }
    }
    render_account(
        &page,
        &state,
        &agent,
        StatusCode::OK,
        Some("agent-password-changed"),
        None,
    )
    .await
}

async fn regenerate_recovery_codes(
    page: Page,
    agent: AgentSession,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.check_csrf(&form.csrf)?;
    let facts = account_facts(&state, &agent).await?;
    if !facts.second_factor {
        return Err(PageError::forbidden(page.lang));
    }
    let keys = state.keys.clone();
    let who = agent.agent.clone();
    let codes = state
        .db
        .write(move |conn| credentials::replace_recovery_codes(conn, &keys.hasher, &who))
        .await?;
    let mut response = render_recovery_codes(&page, &codes, "/agent/account");
    // The codes page is a form answer; keep it out of history and caches.
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
