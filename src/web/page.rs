//! Rendering pages: templates embedded in the binary (Tera), texts from Fluent locales
//! (French first, then English), the language chosen from `?lang=`, a cookie, or
//! `Accept-Language`. Error pages are rendered the same way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload};
use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{FluentLoader, LanguageIdentifier, Loader};
use tera::{Context, Tera};

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "fr",
        // Bidi isolation marks would end up inside attributes and URLs.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

const LANG_COOKIE: &str = "eg_lang";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("vault.html", include_str!("../../templates/vault.html")),
    (
        "settings.html",
        include_str!("../../templates/settings.html"),
    ),
    (
        "vault_security.html",
        include_str!("../../templates/vault_security.html"),
    ),
    ("message.html", include_str!("../../templates/message.html")),
    (
        "agent_login.html",
        include_str!("../../templates/agent_login.html"),
    ),
    (
        "agent_code.html",
        include_str!("../../templates/agent_code.html"),
    ),
    (
        "agent_choose_tenant.html",
        include_str!("../../templates/agent_choose_tenant.html"),
    ),
    (
        "agent_enrol.html",
        include_str!("../../templates/agent_enrol.html"),
    ),
    (
        "agent_recovery_codes.html",
        include_str!("../../templates/agent_recovery_codes.html"),
    ),
    (
        "agent_home.html",
        include_str!("../../templates/agent_home.html"),
    ),
    (
        "agent_account.html",
        include_str!("../../templates/agent_account.html"),
    ),
    (
        "agent_deliveries.html",
        include_str!("../../templates/agent_deliveries.html"),
    ),
    (
        "agent_delivery.html",
        include_str!("../../templates/agent_delivery.html"),
    ),
    (
        "agent_deliver.html",
        include_str!("../../templates/agent_deliver.html"),
    ),
    (
        "admin_agents.html",
        include_str!("../../templates/admin_agents.html"),
    ),
    (
        "admin_agent.html",
        include_str!("../../templates/admin_agent.html"),
    ),
    (
        "admin_departments.html",
        include_str!("../../templates/admin_departments.html"),
    ),
    (
        "demo_outbox.html",
        include_str!("../../templates/demo_outbox.html"),
    ),
    (
        "agent_bulk.html",
        include_str!("../../templates/agent_bulk.html"),
    ),
    (
        "agent_bulk_job.html",
        include_str!("../../templates/agent_bulk_job.html"),
    ),
    (
        "agent_campaigns.html",
        include_str!("../../templates/agent_campaigns.html"),
    ),
    (
        "agent_campaign.html",
        include_str!("../../templates/agent_campaign.html"),
    ),
    (
        "agent_scan_sites.html",
        include_str!("../../templates/agent_scan_sites.html"),
    ),
    (
        "agent_scan.html",
        include_str!("../../templates/agent_scan.html"),
    ),
    (
        "agent_dashboard.html",
        include_str!("../../templates/agent_dashboard.html"),
    ),
];

static PAGES: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|error| format!("{error:?}"))?;
    tera.autoescape_on(vec![".html"]);
    tera.register_function(
        "fluent",
        FluentLoader::new(&*LOCALES).with_default_lang(Lang::Fr.identifier()),
    );
    Ok(tera)
});

/// Gives another Tera instance (notice texts) the same `fluent` function as pages.
pub(crate) fn register_fluent(tera: &mut Tera) {
    tera.register_function(
        "fluent",
        FluentLoader::new(&*LOCALES).with_default_lang(Lang::Fr.identifier()),
    );
}

/// Fails at start, not at the first request, if a template does not parse.
pub fn check_templates() -> Result<(), String> {
    PAGES.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The languages pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    fn parse(tag: &str) -> Option<Self> {
        let primary = tag
            .trim()
            .split(['-', '_', ';'])
            .next()?
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(Self::Fr),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Fr => "fr",
            Self::En => "en",
        }
    }

    fn identifier(self) -> LanguageIdentifier {
        match self {
            Self::Fr => fluent_templates::langid!("fr"),
            Self::En => fluent_templates::langid!("en"),
        }
    }

    /// A text from the locales.
    pub fn text(self, key: &str) -> String {
        LOCALES.lookup(&self.identifier(), key)
    }

    /// A text from the locales with its arguments, e.g. `("line", "3")`.
    pub fn text_with(self, key: &str, args: &[(&'static str, String)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue> = args
            .iter()
            .map(|(name, value)| (Cow::Borrowed(*name), FluentValue::from(value.clone())))
            .collect();
        LOCALES.lookup_with_args(&self.identifier(), key, &args)
    }
}

/// The language of a request, and whether the visitor just chose it.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub lang: Lang,
    chosen: bool,
    /// Whether the language cookie carries `Secure`: like every cookie of ours, unless
    /// a demonstration runs on plain-HTTP localhost.
    secure_cookie: bool,
}

/// Whether this server marks its cookies `Secure` (yes unless told otherwise).
fn secure_cookies(request: &HttpRequest) -> bool {
    request
        .app_data::<actix_web::web::Data<super::session::AuthState>>()
        .is_none_or(|auth| auth.secure_cookies)
}

impl Page {
    pub fn of(request: &HttpRequest) -> Self {
        let from_query = request
            .query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("lang="))
            .and_then(Lang::parse);
        if let Some(lang) = from_query {
            return Self {
                lang,
                chosen: true,
                secure_cookie: secure_cookies(request),
            };
        }
        let from_cookie = request
            .cookie(LANG_COOKIE)
            .and_then(|cookie| Lang::parse(cookie.value()));
        let from_header = || {
            request
                .headers()
                .get(actix_web::http::header::ACCEPT_LANGUAGE)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').find_map(Lang::parse))
        };
        Self {
            lang: from_cookie.or_else(from_header).unwrap_or(Lang::Fr),
            chosen: false,
            secure_cookie: true,
        }
    }

    /// The context every template needs.
    pub fn context(&self) -> Context {
        let mut context = Context::new();
        context.insert("lang", self.lang.code());
        context.insert("signed_in", &false);
        context.insert("agent_signed_in", &false);
        context
    }

    /// Renders `template` with `context` as a complete HTML answer.
    pub fn render(&self, status: StatusCode, template: &str, context: &Context) -> HttpResponse {
        let html = match PAGES.as_ref() {
            Ok(tera) => tera.render(template, context),
            Err(error) => {
                tracing::error!(error = %error, "templates failed to load");
                return HttpResponse::InternalServerError().finish();
            }
        };
        match html {
            Ok(html) => {
                let mut response = HttpResponse::build(status);
                response.content_type("text/html; charset=utf-8");
                if self.chosen {
                    response.cookie(
                        Cookie::build(LANG_COOKIE, self.lang.code())
                            .path("/")
                            .same_site(SameSite::Lax)
                            .http_only(true)
                            .secure(self.secure_cookie)
                            .max_age(actix_web::cookie::time::Duration::days(365))
                            .finish(),
                    );
                }
                response.body(html)
            }
            Err(error) => {
                tracing::error!(template, error = ?error, "page failed to render");
                HttpResponse::InternalServerError().finish()
            }
        }
    }

    /// A page with a heading, one message and one link onwards.
    pub fn message(&self, status: StatusCode, message: Message) -> HttpResponse {
        let mut context = self.context();
        context.insert("heading", &self.lang.text(message.heading));
        context.insert(
            "message",
            &message.text.unwrap_or_else(|| self.lang.text(message.body)),
        );
        context.insert("next_href", message.next_href);
        context.insert("next_label", &self.lang.text(message.next_label));
        context.insert(
            "is_error",
            &(status.is_client_error() || status.is_server_error()),
        );
        self.render(status, "message.html", &context)
    }
}

impl FromRequest for Page {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(request)))
    }
}

/// What a message page says (locale keys).
pub struct Message {
    pub heading: &'static str,
    pub body: &'static str,
    /// Replaces `body` when the text is already composed.
    pub text: Option<String>,
    pub next_href: &'static str,
    pub next_label: &'static str,
}

impl Message {
    pub fn new(heading: &'static str, body: &'static str) -> Self {
        Self {
            heading,
            body,
            text: None,
            next_href: "/",
            next_label: "back-home",
        }
    }

    pub fn next(mut self, href: &'static str, label: &'static str) -> Self {
        self.next_href = href;
        self.next_label = label;
        self
    }
}

/// An error answered with a page rather than JSON.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub lang: Lang,
    pub heading: &'static str,
    pub body: &'static str,
    cause: Option<String>,
    /// Answer with a redirect there instead of a page (e.g. to a login form).
    redirect: Option<&'static str>,
    /// Where the page's link leads (default: home, or "log in again" when expired).
    next: Option<(&'static str, &'static str)>,
}

impl PageError {
    pub fn new(status: StatusCode, lang: Lang, heading: &'static str, body: &'static str) -> Self {
        Self {
            status,
            lang,
            heading,
            body,
            cause: None,
            redirect: None,
            next: None,
        }
    }

    /// Points the page's link at `href`, labelled by the locale key `label`.
    pub fn with_next(mut self, href: &'static str, label: &'static str) -> Self {
        self.next = Some((href, label));
        self
    }

    /// Not logged in on a page one can simply reload: send the browser to `location`.
    pub fn redirect(lang: Lang, location: &'static str) -> Self {
        let mut error = Self::session_expired(lang);
        error.status = StatusCode::SEE_OTHER;
        error.redirect = Some(location);
        error
    }

    /// Logged in, but this page is not for this role.
    pub fn forbidden(lang: Lang) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            lang,
            "forbidden-title",
            "forbidden-message",
        )
    }

    /// Not logged in, or the session ended.
    pub fn session_expired(lang: Lang) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            lang,
            "expired-title",
            "expired-message",
        )
    }

    /// Missing, or not this citizen's: the same answer either way.
    pub fn not_found(lang: Lang) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            lang,
            "not-found-title",
            "not-found-message",
        )
    }

    pub fn csrf(lang: Lang) -> Self {
        Self::new(StatusCode::FORBIDDEN, lang, "csrf-title", "csrf-message")
    }

    pub fn internal(lang: Lang, cause: impl std::fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            "error-title",
            "error-message",
        );
        error.cause = Some(cause.to_string());
        error
    }

    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.heading, self.status)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(location) = self.redirect {
            return HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, location))
                .finish();
        }
        let cause = self.cause.as_deref().unwrap_or("");
        if self.status.is_server_error() {
            tracing::error!(
                error.page = self.heading,
                error.cause = cause,
                "page failed"
            );
        } else if !cause.is_empty() {
            tracing::info!(
                error.page = self.heading,
                error.cause = cause,
                "page refused"
            );
        }
        let page = Page {
            lang: self.lang,
            chosen: false,
            secure_cookie: true,
        };
        let next = if let Some(next) = self.next {
            next
        } else if self.status == StatusCode::UNAUTHORIZED {
            ("/", "login-again")
        } else {
            ("/", "back-home")
        };
        page.message(
            self.status,
            Message::new(self.heading, self.body).next(next.0, next.1),
        )
    }
}

impl From<diesel::result::Error> for PageError {
    fn from(error: diesel::result::Error) -> Self {
        Self::internal(Lang::Fr, error)
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(error: crate::db::DbError) -> Self {
        Self::internal(Lang::Fr, error)
    }
}

/// A redirect after a form or a login step (303: the browser follows with a GET).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location.to_owned()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_every_key_exists_in_both_languages() {
        check_templates().unwrap();
        for (_, source) in TEMPLATES {
            for key in source
                .split("key=\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
            {
                if key.ends_with('-') {
                    continue; // composed keys, e.g. settings-channel- ~ option
                }
                for lang in [Lang::Fr, Lang::En] {
                    let text = lang.text(key);
                    assert!(
                        !text.is_empty() && text != key,
                        "{key} missing in {}",
                        lang.code()
                    );
                }
            }
        }
    }

    #[test]
    fn language_tags_are_understood() {
        assert_eq!(Lang::parse("fr-BE"), Some(Lang::Fr));
        assert_eq!(Lang::parse("en;q=0.8"), Some(Lang::En));
        assert_eq!(Lang::parse("nl"), None);
    }
}
