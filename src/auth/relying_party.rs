//! The OpenID Connect relying party: one [`IdentityProvider`] per configured provider
//! (FranceConnect, the Belgian FAS, any standard provider, the demonstration one).
//! Discovery is lazy, so the portal starts while a provider is down. The ID token is
//! checked by `openidconnect`; the userinfo JWT, which `openidconnect` cannot verify
//! when it is ES256, is checked against the same cached JWKS.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AuthType, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, LogoutRequest, Nonce,
    OAuth2TokenResponse, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use super::assurance::{acr_satisfies, login_guarantees_identity};
use super::jwks::{JwksCache, JwsError, JwsExpectations};
use crate::citizens::{AssertedIdentity, NationalRegisterNumber, PivotIdentity, PivotInput};
use crate::config::{Audience, ProviderConfig, ProviderKind};

/// A JWKS is fetched again at most this often when an unknown key id shows up.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Leeway for token times (clocks differ a little between servers).
const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

/// Why a login failed. Each variant has a message safe to show to the citizen.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider could not be reached; please try again in a moment")]
    ProviderUnavailable(String),
    #[error("the identity provider refused the login ({error})")]
    ProviderRefused { error: String, description: String },
    #[error("this login link has expired or was already used; please start again")]
    InvalidState,
    #[error("the identity provider's answer could not be verified")]
    TokenRejected(String),
    #[error("this service requires a stronger level of identity verification")]
    InsufficientLevel,
    #[error("the identity provider did not send the identity this service needs")]
    MissingClaims(String),
}

/// What a successful login established.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub issuer: String,
    pub subject: String,
    /// The raw ID token, kept for `id_token_hint` at logout.
    pub id_token: String,
    pub identity: AssertedIdentity,
    /// Whether this login guarantees `identity` (see `auth::assurance`): only then may
    /// it open the documents addressed to that identity.
    pub identity_verified: bool,
    /// How the person authenticated (RFC 8176 `amr`), as the ID token says.
    pub amr: Vec<String>,
    /// The `email` claim of userinfo: an agent's work email (never used for citizens).
    pub email: Option<String>,
    /// The `email_verified` claim (userinfo, else the ID token), when the provider sent it.
    pub email_verified: Option<bool>,
}

/// Where a login redirect goes, and what to remember until it returns.
pub struct AuthorizationRedirect {
    pub url: Url,
    pub state: String,
    pub nonce: String,
}

type Metadata = ProviderMetadataWithLogout;
/// A client built from discovered metadata: authorization endpoint known, token and
/// userinfo endpoints as the provider published them.
type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// One configured identity provider.
pub struct IdentityProvider {
    pub config: ProviderConfig,
    redirect_uri: RedirectUrl,
    post_logout_redirect_uri: PostLogoutRedirectUrl,
    http: reqwest::Client,
    discovered: OnceCell<Discovered>,
}

struct Discovered {
    metadata: Metadata,
    jwks: JwksCache,
}

impl IdentityProvider {
    /// `base_url` is the portal's public address; the callback URLs hang off it.
    pub fn new(
        config: ProviderConfig,
        base_url: &Url,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        // Agents come back to their own pages, so a citizen callback never opens an
        // agent session and the other way round.
        let (redirect, post_logout) = match config.audience {
            Audience::Citizen => (format!("login/{}/callback", config.id), "logout/callback"),
            Audience::Agent => (
                format!("agent/login/oidc/{}/callback", config.id),
                "agent/logout/callback",
            ),
        };
        let redirect = base_url
            .join(&redirect)
            .map_err(|error| error.to_string())?;
        let post_logout = base_url
            .join(post_logout)
            .map_err(|error| error.to_string())?;
        Ok(Self {
            config,
            redirect_uri: RedirectUrl::from_url(redirect),
            post_logout_redirect_uri: PostLogoutRedirectUrl::from_url(post_logout),
            http,
            discovered: OnceCell::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn audience(&self) -> Audience {
        self.config.audience
    }

    /// The button label.
    pub fn label(&self) -> String {
        self.config
            .label
            .clone()
            .unwrap_or_else(|| match self.config.kind {
                ProviderKind::Franceconnect => "S'identifier avec FranceConnect".to_owned(),
                ProviderKind::Fas => "eID / itsme".to_owned(),
                ProviderKind::Generic => self.config.id.clone(),
            })
    }

    async fn discovered(&self) -> Result<&Discovered, LoginError> {
        self.discovered
            .get_or_try_init(|| async {
                let metadata = Metadata::discover_async(self.config.issuer.clone(), &self.http)
                    .await
                    .map_err(|error| LoginError::ProviderUnavailable(error.to_string()))?;
                let jwks = JwksCache::new(
                    metadata.jwks_uri().url().clone(),
                    self.http.clone(),
                    JWKS_REFRESH_INTERVAL,
                );
                Ok(Discovered { metadata, jwks })
            })
            .await
    }

    fn client(&self, metadata: &Metadata) -> DiscoveredClient {
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        // client_secret_post only where the provider says it is what it takes
        // (FranceConnect); otherwise the standard default, HTTP Basic.
        let methods = metadata.token_endpoint_auth_methods_supported();
        let basic = methods
            .is_none_or(|methods| methods.iter().any(|m| m.as_ref() == "client_secret_basic"));
        if basic {
            client
        } else {
            client.set_auth_type(AuthType::RequestBody)
        }
    }

    /// Builds the authorization redirect with only the documented parameters.
    pub async fn authorization_redirect(&self) -> Result<AuthorizationRedirect, LoginError> {
        let discovered = self.discovered().await?;
        let state = super::sessions::new_secret();
        let nonce = super::sessions::new_secret();
        let client = self.client(&discovered.metadata);
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || Nonce::new(nonce_for_url),
        );
        for scope in self.config.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr) = &self.config.acr_values {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        let (url, _, _) = request.url();
        Ok(AuthorizationRedirect { url, state, nonce })
    }

    /// Redeems the code at once (FranceConnect codes live 30 s), verifies the ID token
    /// and the userinfo answer, and extracts the identity.
    pub async fn complete_login(
        &self,
        code: &str,
        nonce: &str,
    ) -> Result<VerifiedLogin, LoginError> {
        let discovered = self.discovered().await?;
        let client = self.client(&discovered.metadata);
        let unavailable = |error: String| LoginError::ProviderUnavailable(error);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| unavailable(error.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|error| match error {
                openidconnect::RequestTokenError::ServerResponse(response) => {
                    LoginError::TokenRejected(format!("token endpoint: {}", response.error()))
                }
                other => unavailable(other.to_string()),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| LoginError::TokenRejected("no ID token".to_owned()))?;
        let verified = self.verify_id_token(discovered, id_token, nonce).await?;
        if !acr_satisfies(self.config.acr_values.as_deref(), verified.acr.as_deref()) {
            return Err(LoginError::InsufficientLevel);
        }
        let claims = self
            .fetch_userinfo(discovered, response.access_token(), &verified.subject)
            .await?;
        let identity = match self.config.audience {
            Audience::Citizen => self.asserted_identity(&claims)?,
            // Agents are matched on their work email, never on an identity.
            Audience::Agent => AssertedIdentity::Unmatched,
        };
        let identity_verified =
            login_guarantees_identity(&self.config, verified.acr.as_deref(), &identity);
        Ok(VerifiedLogin {
            issuer: verified.issuer,
            subject: verified.subject,
            id_token: id_token.to_string(),
            identity,
            identity_verified,
            amr: verified.amr,
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned),
            email_verified: claims
                .get("email_verified")
                .and_then(claim_as_bool)
                .or(verified.email_verified),
        })
    }

    /// Verifies signature, issuer, audience, expiry and nonce; on an unknown signing
    /// key the JWKS is fetched again once (rate-limited) and the check repeated.
    async fn verify_id_token(
        &self,
        discovered: &Discovered,
        id_token: &CoreIdToken,
        nonce: &str,
    ) -> Result<IdTokenFacts, LoginError> {
        let nonce = Nonce::new(nonce.to_owned());
        let mut refreshed = false;
        loop {
            let jwks_json = discovered.jwks.json().await.map_err(jws_error)?;
            let jwks: CoreJsonWebKeySet = serde_json::from_value((*jwks_json).clone())
                .map_err(|error| LoginError::TokenRejected(format!("JWKS: {error}")))?;
            let verifier = CoreIdTokenVerifier::new_confidential_client(
                ClientId::new(self.config.client_id.clone()),
                ClientSecret::new(self.config.client_secret.expose_secret().to_owned()),
                discovered.metadata.issuer().clone(),
                jwks,
            )
            .set_allowed_algs([
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            ]);
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => {
                    return Ok(IdTokenFacts {
                        issuer: claims.issuer().to_string(),
                        subject: claims.subject().to_string(),
                        acr: claims.auth_context_ref().map(|acr| acr.to_string()),
                        email_verified: claims.email_verified(),
                        amr: claims
                            .auth_method_refs()
                            .map(|methods| methods.iter().map(|m| m.to_string()).collect())
                            .unwrap_or_default(),
                    });
                }
                Err(error) => {
                    let unknown_key = matches!(
                        error,
                        openidconnect::ClaimsVerificationError::SignatureVerification(
                            openidconnect::SignatureVerificationError::NoMatchingKey
                        )
                    );
                    if unknown_key
                        && !refreshed
                        && discovered
                            .jwks
                            .refresh_if_allowed()
                            .await
                            .map_err(jws_error)?
                    {
                        refreshed = true;
                        continue;
                    }
                    return Err(LoginError::TokenRejected(format!("ID token: {error}")));
                }
            }
        }
    }

    /// Fetches userinfo: a signed JWT (required from FranceConnect and the FAS), or
    /// plain JSON from a generic provider. Its `sub` must be the ID token's.
    async fn fetch_userinfo(
        &self,
        discovered: &Discovered,
        access_token: &AccessToken,
        subject: &str,
    ) -> Result<Map<String, Value>, LoginError> {
        let endpoint = discovered
            .metadata
            .userinfo_endpoint()
            .ok_or_else(|| LoginError::ProviderUnavailable("no userinfo endpoint".to_owned()))?;
        let response = self
            .http
            .get(endpoint.url().clone())
            .bearer_auth(access_token.secret())
            .header(reqwest::header::ACCEPT, "application/jwt, application/json")
            .send()
            .await
            .map_err(|error| LoginError::ProviderUnavailable(error.to_string()))?;
        if !response.status().is_success() {
            return Err(LoginError::TokenRejected(format!(
                "userinfo answered {}",
                response.status()
            )));
        }
        let is_jwt = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/jwt"));
        let body = response
            .text()
            .await
            .map_err(|error| LoginError::ProviderUnavailable(error.to_string()))?;
        let claims = if is_jwt {
            let expected = JwsExpectations {
                algorithms: vec![
                    jsonwebtoken::Algorithm::ES256,
                    jsonwebtoken::Algorithm::RS256,
                ],
                issuer: discovered.metadata.issuer().to_string(),
                audience: self.config.client_id.clone(),
                require_exp: false,
                leeway: CLOCK_LEEWAY,
            };
            discovered
                .jwks
                .verify(body.trim(), &expected)
                .await
                .map_err(jws_error)?
        } else if self.config.kind == ProviderKind::Generic {
            serde_json::from_str(&body)
                .map_err(|error| LoginError::TokenRejected(format!("userinfo: {error}")))?
        } else {
            return Err(LoginError::TokenRejected(
                "userinfo is not a signed JWT".to_owned(),
            ));
        };
        if claims.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(LoginError::TokenRejected(
                "userinfo is about another subject".to_owned(),
            ));
        }
        Ok(claims)
    }

    fn asserted_identity(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<AssertedIdentity, LoginError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let pivot = || -> Option<Result<PivotIdentity, LoginError>> {
            let input = PivotInput {
                family_name: text("family_name")?,
                given_names: text("given_name")?,
                birthdate: text("birthdate")?,
                birthplace: text("birthplace").unwrap_or_default(),
            };
            Some(
                PivotIdentity::normalise(&input)
                    .map_err(|error| LoginError::MissingClaims(error.to_string())),
            )
        };
        match self.config.kind {
            ProviderKind::Franceconnect => match pivot() {
                Some(identity) => Ok(AssertedIdentity::Pivot(identity?)),
                None => Err(LoginError::MissingClaims(
                    "family_name, given_name and birthdate are required".to_owned(),
                )),
            },
            ProviderKind::Fas => {
                let nrn = text("egovNRN")
                    .ok_or_else(|| LoginError::MissingClaims("egovNRN is required".to_owned()))?;
                NationalRegisterNumber::parse(&nrn)
                    .map(AssertedIdentity::NationalRegisterNumber)
                    .map_err(|error| LoginError::MissingClaims(error.to_string()))
            }
            ProviderKind::Generic => match pivot() {
                Some(Ok(identity)) => Ok(AssertedIdentity::Pivot(identity)),
                _ => Ok(AssertedIdentity::Unmatched),
            },
        }
    }

    /// The provider's end-session URL for an RP-initiated logout, or `None` when the
    /// provider has none (or is unreachable: the local logout still happened).
    pub async fn logout_redirect(&self, id_token: &str, state: &str) -> Option<Url> {
        let discovered = self.discovered().await.ok()?;
        let endpoint: &EndSessionUrl = discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let id_token: CoreIdToken = id_token.parse().ok()?;
        let request = LogoutRequest::from(endpoint.clone())
            .set_id_token_hint(&id_token)
            .set_post_logout_redirect_uri(self.post_logout_redirect_uri.clone())
            .set_state(CsrfToken::new(state.to_owned()));
        Some(request.http_get_url())
    }
}

/// What a verified ID token says.
struct IdTokenFacts {
    issuer: String,
    subject: String,
    acr: Option<String>,
    amr: Vec<String>,
    email_verified: Option<bool>,
}

/// A boolean claim, also when a provider writes it as a string (`"true"`), as some do.
fn claim_as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(value) => Some(*value),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn jws_error(error: JwsError) -> LoginError {
    match error {
        JwsError::Fetch(cause) => LoginError::ProviderUnavailable(cause),
        other => LoginError::TokenRejected(format!("userinfo: {other}")),
    }
}

/// All configured providers, by id.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<IdentityProvider>>,
}

impl Providers {
    pub fn new(list: Vec<IdentityProvider>) -> Self {
        Self {
            list: list.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<IdentityProvider>> {
        self.list
            .iter()
            .find(|provider| provider.id() == id)
            .cloned()
    }

    /// Providers for citizens, FranceConnect first (its rules require first position).
    pub fn for_citizens(&self) -> Vec<Arc<IdentityProvider>> {
        let mut citizens: Vec<_> = self
            .list
            .iter()
            .filter(|provider| provider.audience() == Audience::Citizen)
            .cloned()
            .collect();
        citizens.sort_by_key(|provider| provider.config.kind != ProviderKind::Franceconnect);
        citizens
    }

    /// Providers for agents (ProConnect…), in configuration order.
    pub fn for_agents(&self) -> Vec<Arc<IdentityProvider>> {
        self.list
            .iter()
            .filter(|provider| provider.audience() == Audience::Agent)
            .cloned()
            .collect()
    }
}
