//! `GET` and `POST /authorize`: FranceConnect's authorization request rules, the page
//! where one chooses a test citizen, and the code sent back to the relying party.
//!
//! Like FranceConnect, only the documented parameters are accepted, so a relying party
//! that sends anything else fails here rather than in production.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use url::Url;

use super::citizens::{demo_citizens, find_citizen};
use super::grants::CodeGrant;
use super::params::{Params, quotable};
use super::scopes::SUPPORTED_SCOPES;
use super::{DemoIdentityProvider, pages};

/// Parameters every authorization request carries.
const REQUIRED: [&str; 7] = [
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "acr_values",
];
/// Parameters an authorization request may carry.
const OPTIONAL: [&str; 4] = ["prompt", "claims", "ui_locales", "idp_hint"];
/// What the login page adds to the carried request.
const CHOICE: [&str; 2] = ["citizen", "decision"];

/// The shortest `state` and `nonce` accepted (FranceConnect+ and ProConnect: 32).
const MIN_RANDOM_LENGTH: usize = 32;
/// A bound on `state` and `nonce`, which are stored and echoed back.
const MAX_RANDOM_LENGTH: usize = 512;

/// The eIDAS levels, lowest first.
pub(super) const ACR_VALUES: [&str; 3] = ["eidas1", "eidas2", "eidas3"];
/// The `prompt` values FranceConnect still accepts (`none` is being removed).
const PROMPT_VALUES: [&str; 2] = ["login", "consent"];

/// An authorization request that passed every rule, for a registered redirect URI.
struct AuthorizationRequest {
    state: String,
    nonce: String,
    scope: Vec<String>,
    /// The first of `acr_values`: the level the citizen is authenticated at.
    acr: String,
    /// The request's own parameters, to carry through the login page unchanged.
    carried: Vec<(&'static str, String)>,
}

/// `GET /authorize`: validates the request and shows the citizens one may log in as.
pub(super) async fn show_citizens(
    provider: web::Data<DemoIdentityProvider>,
    request: HttpRequest,
) -> HttpResponse {
    let params = Params::from_query(request.query_string());
    let redirect_uri = match registered_redirect_uri(&provider, &params) {
        Ok(redirect_uri) => redirect_uri,
        Err(reason) => return refuse_to_browser(reason),
    };
    match check_request(&params, &[]) {
        Ok(authorization) => pages::citizen_chooser(
            &provider.path("/authorize"),
            &authorization.carried,
            demo_citizens(),
        ),
        Err(description) => refuse_to_client(redirect_uri, &params, &description),
    }
}

/// `POST /authorize`: re-validates the carried request, then sends the relying party a
/// code for the chosen citizen, or `access_denied` if the citizen refused.
pub(super) async fn choose_citizen(
    provider: web::Data<DemoIdentityProvider>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Ok(params) = Params::from_form(&request, &body) else {
        return refuse_to_browser("le formulaire n'a pas le format attendu");
    };
    let redirect_uri = match registered_redirect_uri(&provider, &params) {
        Ok(redirect_uri) => redirect_uri,
        Err(reason) => return refuse_to_browser(reason),
    };
    let authorization = match check_request(&params, &CHOICE) {
        Ok(authorization) => authorization,
        Err(description) => return refuse_to_client(redirect_uri, &params, &description),
    };
    match params.single("decision") {
        Some("refuse") => redirect_with(
            redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the citizen refused to log in"),
            ],
            Some(&authorization.state),
        ),
        Some("accept") => {
            let Some(citizen) = params.single("citizen").and_then(find_citizen) else {
                return refuse_to_browser("choisissez une des identités de test proposées");
            };
            let code = provider.grants.issue_code(CodeGrant {
                citizen,
                client_id: provider.client.client_id.clone(),
                redirect_uri: redirect_uri.as_str().to_owned(),
                nonce: authorization.nonce,
                acr: authorization.acr,
                scope: authorization.scope,
                auth_time: chrono::Utc::now().timestamp(),
            });
            redirect_with(redirect_uri, &[("code", &code)], Some(&authorization.state))
        }
        _ => refuse_to_browser("choisissez de vous connecter ou de refuser"),
    }
}

/// The request's redirect URI, if the client is known and registered it. Until this
/// holds, nothing may be sent to that URI: an error there would be an open redirect.
fn registered_redirect_uri(
    provider: &DemoIdentityProvider,
    params: &Params,
) -> Result<Url, &'static str> {
    let client = &provider.client;
    if params.single("client_id") != Some(client.client_id.as_str()) {
        return Err("le service demandeur est inconnu");
    }
    params
        .single("redirect_uri")
        .filter(|uri| client.allows_redirect_uri(uri))
        .and_then(|uri| Url::parse(uri).ok())
        .ok_or("l'adresse de retour n'est pas enregistrée pour ce service")
}

/// Checks the rest of the request against FranceConnect's rules; the error is the
/// `error_description` for the relying party. `extra` names what the login page adds.
fn check_request(params: &Params, extra: &[&str]) -> Result<AuthorizationRequest, String> {
    if let Some(name) = params
        .names()
        .find(|name| !REQUIRED.contains(name) && !OPTIONAL.contains(name) && !extra.contains(name))
    {
        return Err(format!("unknown parameter: {}", quotable(name)));
    }
    if let Some(name) = params.first_repeated() {
        return Err(format!("repeated parameter: {}", quotable(name)));
    }
    let required = |name: &'static str| {
        params
            .single(name)
            .ok_or_else(|| format!("missing parameter: {name}"))
    };
    if required("response_type")? != "code" {
        return Err("response_type must be code".to_owned());
    }
    let scope = parse_scope(required("scope")?)?;
    let state = required("state")?;
    check_random("state", state)?;
    let nonce = required("nonce")?;
    check_random("nonce", nonce)?;
    let acr = parse_acr_values(required("acr_values")?)?;
    if let Some(prompt) = params.single("prompt")
        && !prompt
            .split(' ')
            .all(|value| PROMPT_VALUES.contains(&value))
    {
        return Err("prompt must be login and/or consent".to_owned());
    }
    if let Some(claims) = params.single("claims")
        && !serde_json::from_str::<serde_json::Value>(claims).is_ok_and(|value| value.is_object())
    {
        return Err("claims must be a JSON object".to_owned());
    }

    let carried = REQUIRED
        .iter()
        .chain(OPTIONAL.iter())
        .filter_map(|name| Some((*name, params.single(name)?.to_owned())))
        .collect();
    Ok(AuthorizationRequest {
        state: state.to_owned(),
        nonce: nonce.to_owned(),
        scope,
        acr,
        carried,
    })
}

/// A 400 page: the browser is told, the relying party is not.
fn refuse_to_browser(reason: &'static str) -> HttpResponse {
    tracing::info!(reason, "demo provider refused an authorization request");
    pages::refusal(reason)
}

/// `invalid_request` at the registered redirect URI, with the request's `state`.
fn refuse_to_client(redirect_uri: Url, params: &Params, description: &str) -> HttpResponse {
    tracing::info!(
        reason = description,
        "demo provider refused an authorization request"
    );
    redirect_with(
        redirect_uri,
        &[
            ("error", "invalid_request"),
            ("error_description", description),
        ],
        params.single("state"),
    )
}

/// Space-separated known scopes, `openid` among them.
fn parse_scope(value: &str) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = value.split(' ').map(str::to_owned).collect();
    if let Some(unknown) = scopes
        .iter()
        .find(|scope| !SUPPORTED_SCOPES.contains(&scope.as_str()))
    {
        return Err(format!("unsupported scope: {}", quotable(unknown)));
    }
    if !scopes.iter().any(|scope| scope == "openid") {
        return Err("scope must include openid".to_owned());
    }
    Ok(scopes)
}

/// Space-separated eIDAS levels; the first is the one granted.
fn parse_acr_values(value: &str) -> Result<String, String> {
    let mut levels = value.split(' ');
    let first = levels.next().unwrap_or_default();
    if std::iter::once(first)
        .chain(levels)
        .all(|level| ACR_VALUES.contains(&level))
    {
        Ok(first.to_owned())
    } else {
        Err("acr_values must be eidas1, eidas2 or eidas3".to_owned())
    }
}

/// `state` and `nonce` must be long enough to be unguessable, and printable.
fn check_random(name: &str, value: &str) -> Result<(), String> {
    let length = value.chars().count();
    if length < MIN_RANDOM_LENGTH {
        return Err(format!(
            "{name} must be at least {MIN_RANDOM_LENGTH} characters long"
        ));
    }
    if length > MAX_RANDOM_LENGTH || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(format!(
            "{name} must be at most {MAX_RANDOM_LENGTH} printable ASCII characters"
        ));
    }
    Ok(())
}

/// A 303 to `redirect_uri` with `pairs` and `state` added to its query.
fn redirect_with(
    mut redirect_uri: Url,
    pairs: &[(&str, &str)],
    state: Option<&str>,
) -> HttpResponse {
    {
        let mut query = redirect_uri.query_pairs_mut();
        query.extend_pairs(pairs);
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, redirect_uri.as_str()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_needs_openid_and_known_values() {
        assert!(parse_scope("openid identite_pivot email").is_ok());
        assert!(parse_scope("identite_pivot").is_err());
        assert!(parse_scope("openid address").is_err());
        assert!(parse_scope("openid  email").is_err());
    }

    #[test]
    fn the_first_acr_value_is_granted() {
        assert_eq!(parse_acr_values("eidas2 eidas1").unwrap(), "eidas2");
        assert!(parse_acr_values("eidas1 loa3").is_err());
    }

    #[test]
    fn state_and_nonce_are_long_and_printable() {
        assert!(check_random("nonce", &"a".repeat(32)).is_ok());
        assert!(check_random("nonce", &"a".repeat(31)).is_err());
        assert!(check_random("nonce", &format!("{} b", "a".repeat(32))).is_err());
    }
}
