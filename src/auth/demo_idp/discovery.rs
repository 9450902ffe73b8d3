//! `GET /.well-known/openid-configuration` and `GET /jwks`: what a relying party reads
//! before anything else, advertising exactly what FranceConnect v2 offers.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::DemoIdentityProvider;
use super::authorize::ACR_VALUES;
use super::scopes::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};

/// The discovery document.
pub(super) async fn configuration(provider: web::Data<DemoIdentityProvider>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": provider.issuer.as_str(),
        "authorization_endpoint": provider.endpoint("/authorize"),
        "token_endpoint": provider.endpoint("/token"),
        "userinfo_endpoint": provider.endpoint("/userinfo"),
        "jwks_uri": provider.endpoint("/jwks"),
        "end_session_endpoint": provider.endpoint("/session/end"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "userinfo_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": SUPPORTED_CLAIMS,
        "claims_parameter_supported": true,
        "acr_values_supported": ACR_VALUES,
    }))
}

/// The public signing key.
pub(super) async fn jwks(provider: web::Data<DemoIdentityProvider>) -> HttpResponse {
    HttpResponse::Ok().json(provider.keys.jwks())
}
