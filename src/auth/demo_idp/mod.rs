//! The demonstration OpenID provider, mounted only in demo mode.
pub struct DemoClient { pub client_id: String, pub client_secret: String, pub redirect_uris: Vec<url::Url>, pub post_logout_redirect_uris: Vec<url::Url> }
pub struct DemoIdentityProvider;
impl DemoIdentityProvider {
    pub fn new(_issuer: url::Url, _client: DemoClient) -> Self { Self }
    pub fn configure(self: std::sync::Arc<Self>, _cfg: &mut actix_web::web::ServiceConfig) {}
}
