//! Verifying JSON Web Signatures (ES256, RS256) against a provider's published keys.
//! The key set is fetched on first use and kept; a token signed with a key we do not
//! know triggers one re-fetch (the provider may have rotated its keys), rate-limited so
//! forged key ids cannot make us hammer the provider.

mod claims;
mod header;
mod keys;
#[cfg(test)]
mod tests;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use url::Url;

use self::keys::KeySet;

/// Largest key set we accept; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Why a token, or the key set needed to check it, was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("signature algorithm not allowed: {0}")]
    DisallowedAlgorithm(String),
    #[error("no published key matches the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token comes from another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("cannot fetch the provider's key set: {0}")]
    Fetch(String),
}

/// What a verified token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct JwsExpectations {
    /// Accepted signature algorithms, e.g. `[ES256, RS256]`; HMAC is never accepted.
    pub algorithms: Vec<Algorithm>,
    /// The exact `iss` value.
    pub issuer: String,
    /// A value `aud` must be, or contain.
    pub audience: String,
    /// Whether `exp` must be present (ID tokens); when present it is always checked.
    pub require_exp: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

/// A provider's key set, fetched lazily and shared by every request.
pub struct JwksCache {
    jwks_uri: Url,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    /// The last good key set. Replaced whole, so readers only clone an `Arc` and never
    /// wait for a fetch.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held during a fetch, so at most one request goes to the provider at a time.
    fetch: Mutex<FetchHistory>,
}

/// The last fetch attempt, successful or not: the rate limit counts both, so an
/// unreachable provider costs one request per interval rather than one per login.
#[derive(Default)]
struct FetchHistory {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl JwksCache {
    /// A cache for the key set at `jwks_uri`; nothing is fetched until first use.
    pub fn new(jwks_uri: Url, http: reqwest::Client, min_refresh_interval: Duration) -> Self {
        Self {
            jwks_uri,
            http,
            min_refresh_interval,
            current: RwLock::new(None),
            fetch: Mutex::new(FetchHistory::default()),
        }
    }

    /// The current key set as raw JSON (fetched on first use).
    pub async fn json(&self) -> Result<Arc<Value>, JwsError> {
        Ok(self.key_set().await?.json.clone())
    }

    /// Re-fetches the set unless the last fetch is more recent than the minimum
    /// interval; returns whether it fetched.
    pub async fn refresh_if_allowed(&self) -> Result<bool, JwsError> {
        let mut history = self.fetch.lock().await;
        if history
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refresh_interval)
        {
            return Ok(false);
        }
        history.last_attempt = Some(Instant::now());
        match self.download().await {
            Ok(keys) => {
                tracing::info!(jwks.keys = keys.keys.len(), "provider key set fetched");
                history.last_error = None;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(keys));
                Ok(true)
            }
            Err(error) => {
                history.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Verifies a compact JWS and its registered claims; refetches once (rate-limited)
    /// on an unknown kid.
    pub async fn verify(
        &self,
        compact: &str,
        expected: &JwsExpectations,
    ) -> Result<Map<String, Value>, JwsError> {
        // The algorithm is checked before any key is looked up or fetched.
        let header = header::ProtectedHeader::parse(compact, &expected.algorithms)?;
        let mut keys = self.key_set().await?;
        if keys.select(header.alg, header.kid.as_deref()).is_none() {
            self.refresh_if_allowed().await?;
            // Even without fetching here, a concurrent request may just have done so.
            keys = self.key_set().await?;
        }
        let jwk = keys
            .select(header.alg, header.kid.as_deref())
            .ok_or(JwsError::UnknownKey)?;
        // A published key we cannot load cannot vouch for the token either.
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwsError::BadSignature)?;
        let claims = verify_signature(compact, header.alg, &key)?;
        claims::check_registered_claims(&claims, expected, chrono::Utc::now().timestamp())?;
        Ok(claims)
    }

    fn loaded(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current set, fetching it if none was fetched yet.
    async fn key_set(&self) -> Result<Arc<KeySet>, JwsError> {
        if let Some(keys) = self.loaded() {
            return Ok(keys);
        }
        let mut history = self.fetch.lock().await;
        // Another request may have loaded the set while this one waited.
        if let Some(keys) = self.loaded() {
            return Ok(keys);
        }
        // A provider that is down is asked once per interval, not once per login.
        if history
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refresh_interval)
        {
            return Err(JwsError::Fetch(history.last_error.clone().unwrap_or_else(
                || "no key set fetched yet; retrying after the minimum interval".to_owned(),
            )));
        }
        history.last_attempt = Some(Instant::now());
        match self.download().await {
            Ok(keys) => {
                tracing::info!(jwks.keys = keys.keys.len(), "provider key set fetched");
                // The first load is not a refetch: a key rotation right after start
                // may still fetch the new key once.
                history.last_attempt = None;
                history.last_error = None;
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(keys.clone());
                Ok(keys)
            }
            Err(error) => {
                history.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    async fn download(&self) -> Result<KeySet, JwsError> {
        let mut response = self
            .http
            .get(self.jwks_uri.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|error| JwsError::Fetch(error_chain(&error)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(JwsError::Fetch(format!(
                "the provider answered {}",
                response.status()
            )));
        }
        let too_large = || JwsError::Fetch(format!("key set larger than {MAX_JWKS_BYTES} bytes"));
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        // Content-Length may be absent (chunked), so the limit is enforced while reading.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| JwsError::Fetch(error_chain(&error)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body)
    }
}

/// Checks the signature only; claims are checked by [`claims`], whose rules are the
/// OpenID Connect ones (exact `iss`, `iat` in the past) rather than jsonwebtoken's.
fn verify_signature(
    compact: &str,
    alg: Algorithm,
    key: &DecodingKey,
) -> Result<Map<String, Value>, JwsError> {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Map<String, Value>>(compact, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(error) => Err(match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => JwsError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                JwsError::DisallowedAlgorithm(format!("{alg:?}"))
            }
            _ => JwsError::Malformed(error.to_string()),
        }),
    }
}

/// An error with its causes, which reqwest keeps out of its top-level message.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
