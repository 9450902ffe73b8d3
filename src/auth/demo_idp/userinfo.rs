//! `GET /userinfo`: the claims the granted scope allows, as a signed JWT
//! (`application/jwt`), which FranceConnect v2 requires relying parties to verify.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::DemoIdentityProvider;
use super::grants::AccessGrant;
use super::scopes::released_claims;

/// Answers the identity claims for a live access token.
pub(super) async fn userinfo(
    provider: web::Data<DemoIdentityProvider>,
    request: HttpRequest,
) -> HttpResponse {
    let Some(grant) = bearer_token(&request).and_then(|token| provider.grants.access_grant(token))
    else {
        tracing::info!("demo provider refused a userinfo request");
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
            .finish();
    };
    match provider.keys.sign(&userinfo_claims(&provider, &grant)) {
        Ok(jwt) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .content_type("application/jwt")
            .body(jwt),
        Err(error) => {
            tracing::error!(%error, "demo provider could not sign a userinfo answer");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// `iss`, `aud`, `sub`, `iat`, and `exp` (the access token's, as FranceConnect's
/// oidc-provider sets it), then every identity claim the scope releases.
fn userinfo_claims(provider: &DemoIdentityProvider, grant: &AccessGrant) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), json!(provider.issuer.as_str()));
    claims.insert("aud".to_owned(), json!(grant.client_id));
    claims.insert(
        "sub".to_owned(),
        json!(grant.citizen.subject_for(&grant.client_id)),
    );
    claims.insert("iat".to_owned(), json!(chrono::Utc::now().timestamp()));
    claims.insert("exp".to_owned(), json!(grant.expires_at));
    for name in released_claims(&grant.scope) {
        if let Some(value) = grant.citizen.claim(name) {
            claims.insert(name.to_owned(), json!(value));
        }
    }
    claims
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
