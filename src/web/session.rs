//! Sessions at the HTTP edge: the cookies, and the extractor that turns the session
//! cookie into a logged-in citizen (or the "session expired" page).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::page::{Lang, Page, PageError};
use crate::auth::relying_party::Providers;
use crate::auth::sessions::{self, SESSION_COOKIE, Session, SessionKind, SessionPolicy};
use crate::state::AppState;

/// What the login pages need besides the application state.
pub struct AuthState {
    pub providers: Providers,
    pub policy: SessionPolicy,
    /// Agents' sessions: a shorter idle time.
    pub agent_policy: SessionPolicy,
    /// Whether agents logging in through a provider must have used a second factor.
    pub agent_second_factor: crate::config::SecondFactorPolicy,
    /// `Secure` on every cookie, except for a demo on plain-HTTP localhost.
    pub secure_cookies: bool,
}

impl AuthState {
    /// A cookie with the flags every cookie of ours carries.
    pub fn cookie<'a>(&self, name: &'a str, value: String) -> Cookie<'a> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies)
            .finish()
    }

    /// A cookie that tells the browser to forget `name`.
    pub fn removal<'a>(&self, name: &'a str) -> Cookie<'a> {
        let mut cookie = self.cookie(name, String::new());
        cookie.make_removal();
        cookie
    }
}

/// A logged-in citizen.
pub struct CitizenSession {
    pub session: Session,
    pub lang: Lang,
}

impl CitizenSession {
    pub fn citizen_id(&self) -> &str {
        &self.session.subject_id
    }

    /// A template context for a logged-in page (the logout form needs the CSRF token).
    pub fn context(&self, page: &Page) -> tera::Context {
        let mut context = page.context();
        context.insert("signed_in", &true);
        context.insert("csrf", &self.session.csrf_token);
        context
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        if sessions::secrets_match(submitted, &self.session.csrf_token) {
            Ok(())
        } else {
            Err(PageError::csrf(self.lang))
        }
    }
}

impl FromRequest for CitizenSession {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let lang = Page::of(request).lang;
        let cookie = request.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let auth = request.app_data::<web::Data<AuthState>>().cloned();
        Box::pin(async move {
            let (Some(cookie), Some(state), Some(auth)) = (cookie, state, auth) else {
                return Err(PageError::session_expired(lang));
            };
            let policy = auth.policy;
            // Usually a plain read; the session is touched or deleted only now and then.
            let session = state
                .db
                .read(move |conn| {
                    sessions::find_session(conn, policy, SessionKind::Citizen, &cookie)
                })
                .await
                .map_err(|error| PageError::internal(lang, error))?;
            session
                .map(|session| CitizenSession { session, lang })
                .ok_or_else(|| PageError::session_expired(lang))
        })
    }
}
