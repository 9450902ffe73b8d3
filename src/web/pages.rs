//! The public front page (login buttons, FranceConnect first), the stylesheet, the
//! scripts and the icon (browsers ask for `/favicon.ico` on every site; a 404 there is a console error).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::page::Page;
use super::session::{AuthState, CitizenSession};
use super::static_files;
use crate::config::ProviderKind;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/static/app.css", web::get().to(stylesheet))
        .route("/static/favicon.svg", web::get().to(icon))
        .route(
            "/static/bulk-progress.js",
            web::get().to(|| script(include_str!("../../static/bulk-progress.js"))),
        )
        .route(
            "/static/scan.js",
            web::get().to(|| script(include_str!("../../static/scan.js"))),
        )
        .route(
            "/static/vendor/jsQR.js",
            web::get().to(|| script(include_str!("../../static/vendor/jsQR.js"))),
        )
        .route(
            "/static/vault-crypto.js",
            web::get().to(|| script(static_files::VAULT_CRYPTO_JS)),
        )
        .route(
            "/static/vault-security.js",
            web::get().to(|| script(static_files::VAULT_SECURITY_JS)),
        )
        .route(
            "/static/vault-locked.js",
            web::get().to(|| script(static_files::VAULT_LOCKED_JS)),
        )
        .route(
            "/static/agent-deliver.js",
            web::get().to(|| script(static_files::AGENT_DELIVER_JS)),
        )
        .route("/favicon.ico", web::get().to(icon));
}

#[derive(Serialize)]
struct LoginButton {
    id: String,
    kind: &'static str,
    label: String,
}

async fn home(
    session: Option<CitizenSession>,
    page: Page,
    auth: web::Data<AuthState>,
) -> HttpResponse {
    // Someone logged in goes straight to their documents; a stale cookie does not
    // count (it would send the visitor round in circles via the expired page).
    if session.is_some() {
        return HttpResponse::SeeOther()
            .insert_header((LOCATION, "/vault"))
            .finish();
    }
    let buttons: Vec<LoginButton> = auth
        .providers
        .for_citizens()
        .iter()
        .map(|provider| LoginButton {
            id: provider.id().to_owned(),
            kind: match provider.config.kind {
                ProviderKind::Franceconnect => "franceconnect",
                ProviderKind::Fas => "fas",
                ProviderKind::Generic => "generic",
            },
            label: provider.label(),
        })
        .collect();
    let mut context = page.context();
    context.insert("providers", &buttons);
    page.render(StatusCode::OK, "home.html", &context)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/app.css"))
}

/// Scripts are files served from here (the CSP allows no inline script and no other
/// host).
async fn script(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "image/svg+xml"))
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../static/favicon.svg"))
}
