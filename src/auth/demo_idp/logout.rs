//! `GET /session/end`: RP-initiated logout as FranceConnect v2 does it. All three
//! parameters are required, the hint must be one of this provider's ID tokens for the
//! client, and the browser only goes back to a registered URI, with `state`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, Validation};
use serde::de::IgnoredAny;
use url::Url;

use super::params::Params;
use super::{DemoIdentityProvider, pages};

/// The parameters FranceConnect's logout accepts.
const ACCEPTED: [&str; 4] = [
    "id_token_hint",
    "state",
    "post_logout_redirect_uri",
    "ui_locales",
];

/// Ends the session and sends the browser back to the relying party.
pub(super) async fn end_session(
    provider: web::Data<DemoIdentityProvider>,
    request: HttpRequest,
) -> HttpResponse {
    let params = Params::from_query(request.query_string());
    match check(&provider, &params) {
        Ok(mut redirect_uri) => {
            if let Some(state) = params.single("state") {
                redirect_uri.query_pairs_mut().append_pair("state", state);
            }
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, redirect_uri.as_str()))
                .finish()
        }
        Err(reason) => {
            tracing::info!(reason, "demo provider refused a logout request");
            pages::refusal(reason)
        }
    }
}

/// The registered URI to go back to, or why the request is refused.
fn check(provider: &DemoIdentityProvider, params: &Params) -> Result<Url, &'static str> {
    if params.names().any(|name| !ACCEPTED.contains(&name)) {
        return Err("la demande de déconnexion contient un paramètre inconnu");
    }
    let (Some(hint), Some(_state), Some(redirect_uri)) = (
        params.single("id_token_hint"),
        params.single("state"),
        params.single("post_logout_redirect_uri"),
    ) else {
        return Err("la demande de déconnexion est incomplète");
    };
    if !provider
        .client
        .allows_post_logout_redirect_uri(redirect_uri)
    {
        return Err("l'adresse de retour après déconnexion n'est pas enregistrée");
    }
    if provider
        .keys
        .verify::<IgnoredAny>(hint, &hint_validation(provider))
        .is_none()
    {
        return Err("le jeton d'identité fourni n'a pas été émis pour ce service");
    }
    Url::parse(redirect_uri).map_err(|_| "l'adresse de retour après déconnexion est invalide")
}

/// The hint is checked for issuer, audience and signature, not expiry: ID tokens live a
/// minute and a citizen logs out much later.
fn hint_validation(provider: &DemoIdentityProvider) -> Validation {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud", "sub"]);
    validation.set_issuer(&[provider.issuer.as_str()]);
    validation.set_audience(&[provider.client.client_id.as_str()]);
    validation
}
