//! `POST /token`: authenticates the client (`client_secret_post`), consumes the code and
//! answers an access token and an ES256 ID token, as FranceConnect v2 does.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::DemoIdentityProvider;
use super::grants::{ACCESS_TOKEN_LIFETIME, AccessGrant};
use super::params::Params;

/// How long an ID token is valid, as on FranceConnect.
const ID_TOKEN_LIFETIME_SECONDS: i64 = 60;

/// The claims of an ID token.
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    nonce: &'a str,
    acr: &'a str,
    amr: [&'static str; 1],
}

/// Exchanges an authorization code for tokens.
pub(super) async fn exchange_code(
    provider: web::Data<DemoIdentityProvider>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Ok(params) = Params::from_form(&request, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be an application/x-www-form-urlencoded form",
        );
    };
    // A code is spent by the first request naming it, whatever happens next, so a
    // leaked code cannot be tried again.
    let grant = params
        .single("code")
        .and_then(|code| provider.grants.redeem_code(code));

    let client = &provider.client;
    let authenticated = params.single("client_id") == Some(client.client_id.as_str())
        && params
            .single("client_secret")
            .is_some_and(|secret| same_secret(secret, &client.client_secret));
    if !authenticated {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if let Some(name) = ["grant_type", "code", "redirect_uri"]
        .into_iter()
        .find(|name| params.single(name).is_none())
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("missing or repeated parameter: {name}"),
        );
    }
    if params.single("grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
    }
    let Some(grant) = grant.filter(|grant| {
        grant.client_id == client.client_id
            && params.single("redirect_uri") == Some(grant.redirect_uri.as_str())
    }) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is unknown, expired, already used, or was issued for another redirect_uri",
        );
    };

    let now = chrono::Utc::now().timestamp();
    let id_token = provider.keys.sign(&IdTokenClaims {
        iss: provider.issuer.as_str(),
        sub: grant.citizen.subject_for(&grant.client_id),
        aud: &grant.client_id,
        exp: now + ID_TOKEN_LIFETIME_SECONDS,
        iat: now,
        auth_time: grant.auth_time,
        nonce: &grant.nonce,
        acr: &grant.acr,
        amr: ["pwd"],
    });
    let id_token = match id_token {
        Ok(id_token) => id_token,
        Err(error) => {
            tracing::error!(%error, "demo provider could not sign an ID token");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the ID token could not be signed",
            );
        }
    };
    let lifetime = ACCESS_TOKEN_LIFETIME.as_secs();
    let scope = grant.scope.join(" ");
    let access_token = provider.grants.issue_access_token(AccessGrant {
        citizen: grant.citizen,
        client_id: grant.client_id,
        scope: grant.scope,
        expires_at: now.saturating_add_unsigned(lifetime),
    });
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "id_token": id_token,
            "scope": scope,
        }))
}

/// Compares digests so the time taken says nothing about how much of the secret matched.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> HttpResponse {
    tracing::info!(error.code = error, "demo provider refused a token request");
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}
