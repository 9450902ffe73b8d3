//! The demonstration OpenID provider, mounted only in demo mode. It lets the portal log
//! test citizens in on a laptop through the same relying-party code as production, so it
//! follows FranceConnect v2 strictly: authorize parameters, lifetimes, ES256, JWT userinfo.

mod authorize;
mod citizens;
mod discovery;
mod grants;
mod keys;
mod logout;
mod pages;
mod params;
mod scopes;
mod token;
mod userinfo;

use std::sync::Arc;

use actix_web::web;
use url::Url;

pub use citizens::{DemoCitizen, demo_citizens};

use grants::Grants;
use keys::KeyRing;

/// Largest form or query the provider reads; real requests are well under 4 KiB.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The one relying party the demonstration provider knows, as FranceConnect registers it.
#[derive(Clone)]
pub struct DemoClient {
    pub client_id: String,
    pub client_secret: String,
    /// Callback URIs, compared to the `redirect_uri` parameter as exact strings.
    pub redirect_uris: Vec<Url>,
    /// Where the browser may be sent back after logging out.
    pub post_logout_redirect_uris: Vec<Url>,
}

impl DemoClient {
    fn allows_redirect_uri(&self, candidate: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|uri| uri.as_str() == candidate)
    }

    fn allows_post_logout_redirect_uri(&self, candidate: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|uri| uri.as_str() == candidate)
    }
}

/// An OpenID provider behaving like FranceConnect v2, with fictitious citizens.
///
/// Codes and access tokens live in memory behind mutexes: acceptable only because this
/// provider is for demonstrations and tests, never for production.
pub struct DemoIdentityProvider {
    issuer: Url,
    client: DemoClient,
    keys: KeyRing,
    grants: Grants,
}

impl DemoIdentityProvider {
    /// A provider for `client`, signing with a fresh P-256 key under a random `kid`.
    pub fn new(issuer: Url, client: DemoClient) -> Self {
        Self {
            issuer,
            client,
            keys: KeyRing::generate(),
            grants: Grants::default(),
        }
    }

    /// The issuer URL, as in `iss` and the discovery document.
    pub fn issuer(&self) -> &Url {
        &self.issuer
    }

    /// Registers its routes (under the issuer's path) on an actix app.
    pub fn configure(self: Arc<Self>, cfg: &mut web::ServiceConfig) {
        let prefix = self.path("");
        cfg.service(
            web::scope(&prefix)
                .app_data(web::Data::from(self))
                .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
                .route("", web::get().to(show_directory))
                .route("/", web::get().to(show_directory))
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery::configuration),
                )
                .route("/jwks", web::get().to(discovery::jwks))
                .route("/authorize", web::get().to(authorize::show_citizens))
                .route("/authorize", web::post().to(authorize::choose_citizen))
                .route("/token", web::post().to(token::exchange_code))
                .route("/userinfo", web::get().to(userinfo::userinfo))
                .route("/session/end", web::get().to(logout::end_session)),
        );
    }

    /// Replaces the signing key (new kid), as a provider rotating keys does — for tests
    /// of the relying party. Tokens signed before stay valid as logout hints.
    pub fn rotate_signing_key(&self) {
        self.keys.rotate();
    }

    /// The absolute URL of an endpoint, e.g. `endpoint("/token")`.
    fn endpoint(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.issuer.as_str().trim_end_matches('/'))
    }

    /// The path of an endpoint on this server, e.g. `path("/authorize")`.
    fn path(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.issuer.path().trim_end_matches('/'))
    }
}

/// `GET /demo-idp`: the test citizens and how to address them.
async fn show_directory() -> actix_web::HttpResponse {
    pages::citizen_directory(citizens::demo_citizens())
}
