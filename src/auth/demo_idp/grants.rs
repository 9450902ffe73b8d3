//! Authorization codes (single use, 30 s) and access tokens (60 s), with FranceConnect's
//! lifetimes. Both are kept in memory, by the SHA-256 of their value: a demonstration
//! provider forgets them on restart, and never holds a usable token in its maps.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::citizens::DemoCitizen;

/// How long an authorization code may be redeemed.
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(30);
/// How long an access token opens userinfo.
pub(super) const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// What a code was issued for, checked at the token endpoint.
#[derive(Clone)]
pub(super) struct CodeGrant {
    pub citizen: &'static DemoCitizen,
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: String,
    pub acr: String,
    pub scope: Vec<String>,
    /// When the citizen chose to log in, in seconds since the epoch.
    pub auth_time: i64,
}

/// What an access token opens at userinfo.
#[derive(Clone)]
pub(super) struct AccessGrant {
    pub citizen: &'static DemoCitizen,
    pub client_id: String,
    pub scope: Vec<String>,
    /// The token's expiry in seconds since the epoch, also the userinfo JWT's `exp`.
    pub expires_at: i64,
}

/// The live codes and access tokens.
#[derive(Default)]
pub(super) struct Grants {
    codes: Mutex<HashMap<[u8; 32], Expiring<CodeGrant>>>,
    access_tokens: Mutex<HashMap<[u8; 32], Expiring<AccessGrant>>>,
}

struct Expiring<T> {
    grant: T,
    until: Instant,
}

impl Grants {
    /// A new code (32 random bytes, hex) for `grant`.
    pub(super) fn issue_code(&self, grant: CodeGrant) -> String {
        issue(&self.codes, grant, Instant::now() + CODE_LIFETIME)
    }

    /// Consumes a code: it is gone after this call whatever the answer.
    pub(super) fn redeem_code(&self, code: &str) -> Option<CodeGrant> {
        self.redeem_code_at(code, Instant::now())
    }

    fn redeem_code_at(&self, code: &str, now: Instant) -> Option<CodeGrant> {
        let entry = lock(&self.codes).remove(&digest(code))?;
        (now < entry.until).then_some(entry.grant)
    }

    /// A new access token (32 random bytes, hex) for `grant`.
    pub(super) fn issue_access_token(&self, grant: AccessGrant) -> String {
        issue(
            &self.access_tokens,
            grant,
            Instant::now() + ACCESS_TOKEN_LIFETIME,
        )
    }

    /// What a live access token opens; it can be used again until it expires.
    pub(super) fn access_grant(&self, token: &str) -> Option<AccessGrant> {
        let tokens = lock(&self.access_tokens);
        let entry = tokens.get(&digest(token))?;
        (Instant::now() < entry.until).then(|| entry.grant.clone())
    }
}

/// Stores a grant under a new random value, dropping expired entries on the way so the
/// map stays small however long the demonstration runs.
fn issue<T>(map: &Mutex<HashMap<[u8; 32], Expiring<T>>>, grant: T, until: Instant) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let value = hex::encode(bytes);
    let now = Instant::now();
    let mut map = lock(map);
    map.retain(|_, entry| entry.until > now);
    map.insert(digest(&value), Expiring { grant, until });
    value
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Each mutation is a single insert or remove, so a poisoned map is still consistent.
fn lock<T>(map: &Mutex<T>) -> MutexGuard<'_, T> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::demo_idp::demo_citizens;

    fn grant() -> CodeGrant {
        CodeGrant {
            citizen: &demo_citizens()[0],
            client_id: "portal".to_owned(),
            redirect_uri: "http://127.0.0.1/callback".to_owned(),
            nonce: "n".repeat(64),
            acr: "eidas1".to_owned(),
            scope: vec!["openid".to_owned()],
            auth_time: 0,
        }
    }

    #[test]
    fn a_code_is_redeemed_once() {
        let grants = Grants::default();
        let code = grants.issue_code(grant());
        assert_eq!(code.len(), 64);
        assert!(grants.redeem_code(&code).is_some());
        assert!(grants.redeem_code(&code).is_none());
    }

    #[test]
    fn a_code_expires_after_thirty_seconds() {
        let grants = Grants::default();
        let code = grants.issue_code(grant());
        let later = Instant::now() + CODE_LIFETIME + Duration::from_secs(1);
        assert!(grants.redeem_code_at(&code, later).is_none());
        // Even an expired attempt consumed it.
        assert!(grants.redeem_code(&code).is_none());
    }

    #[test]
    fn unknown_access_tokens_open_nothing() {
        let grants = Grants::default();
        let token = grants.issue_access_token(AccessGrant {
            citizen: &demo_citizens()[0],
            client_id: "portal".to_owned(),
            scope: vec!["openid".to_owned()],
            expires_at: 0,
        });
        assert!(grants.access_grant(&token).is_some());
        assert!(grants.access_grant(&token).is_some());
        assert!(grants.access_grant(&"0".repeat(64)).is_none());
    }
}
