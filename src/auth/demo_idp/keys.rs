//! The provider's ES256 signing key and the public keys of every key it has used, so
//! that a rotation publishes only the new key yet old ID tokens still work as logout hints.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::JwkEcKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The current signing key and the verifying keys of all keys so far.
pub(super) struct KeyRing {
    keys: Mutex<Keys>,
}

struct Keys {
    current: SigningKey,
    verifying: HashMap<String, DecodingKey>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: JwkEcKey,
}

/// The JWKS document.
#[derive(Serialize)]
pub(super) struct JwkSet {
    keys: Vec<PublishedKey>,
}

#[derive(Serialize)]
struct PublishedKey {
    #[serde(flatten)]
    public: JwkEcKey,
    kid: String,
    #[serde(rename = "use")]
    usage: &'static str,
    alg: &'static str,
}

impl KeyRing {
    /// A key ring holding one freshly generated key.
    pub(super) fn generate() -> Self {
        let (current, verifying_key) = generate_key();
        let verifying = HashMap::from([(current.kid.clone(), verifying_key)]);
        Self {
            keys: Mutex::new(Keys { current, verifying }),
        }
    }

    /// Signs with a new key from now on; the old one still verifies.
    pub(super) fn rotate(&self) {
        let (current, verifying_key) = generate_key();
        let mut keys = self.lock();
        keys.verifying.insert(current.kid.clone(), verifying_key);
        keys.current = current;
    }

    /// Signs `claims` as an ES256 JWT carrying the current `kid`.
    pub(super) fn sign<T: Serialize>(&self, claims: &T) -> jsonwebtoken::errors::Result<String> {
        let keys = self.lock();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &keys.current.encoding)
    }

    /// Verifies a JWT signed with any key this provider has had, under `validation`.
    pub(super) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Option<T> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let keys = self.lock();
        let key = keys.verifying.get(&kid)?;
        jsonwebtoken::decode::<T>(token, key, validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The published keys: only the current one, as FranceConnect serves its JWKS.
    pub(super) fn jwks(&self) -> JwkSet {
        let keys = self.lock();
        JwkSet {
            keys: vec![PublishedKey {
                public: keys.current.public.clone(),
                kid: keys.current.kid.clone(),
                usage: "sig",
                alg: "ES256",
            }],
        }
    }

    /// The maps stay consistent whatever panicked while holding the lock: every
    /// mutation is a single insert or assignment.
    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new P-256 key with a random `kid`, and its verifying half.
fn generate_key() -> (SigningKey, DecodingKey) {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret
        .to_pkcs8_der()
        .unwrap_or_else(|_| unreachable!("a generated P-256 key always encodes as PKCS#8"));
    let public = secret.public_key();
    let verifying = DecodingKey::from_ec_der(public.to_encoded_point(false).as_bytes());
    let mut kid = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut kid);
    let signing = SigningKey {
        kid: hex::encode(kid),
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        public: public.to_jwk(),
    };
    (signing, verifying)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        validation
    }

    fn claims() -> Value {
        json!({ "sub": "s", "exp": chrono::Utc::now().timestamp() + 60 })
    }

    #[test]
    fn old_tokens_verify_after_rotation_but_only_the_new_key_is_published() {
        let ring = KeyRing::generate();
        let before = ring.sign(&claims()).unwrap();
        let old_kid = ring.jwks().keys[0].kid.clone();
        ring.rotate();
        let jwks = ring.jwks();
        assert_eq!(jwks.keys.len(), 1);
        assert_ne!(jwks.keys[0].kid, old_kid);
        assert!(ring.verify::<Value>(&before, &validation()).is_some());
        let after = ring.sign(&claims()).unwrap();
        let header = jsonwebtoken::decode_header(&after).unwrap();
        assert_eq!(header.kid.as_deref(), Some(jwks.keys[0].kid.as_str()));
    }

    #[test]
    fn tokens_from_another_key_do_not_verify() {
        let ring = KeyRing::generate();
        let stranger = KeyRing::generate();
        let token = stranger.sign(&claims()).unwrap();
        assert!(ring.verify::<Value>(&token, &validation()).is_none());
    }

    #[test]
    fn published_key_is_a_p256_signing_jwk() {
        let jwks = serde_json::to_value(KeyRing::generate().jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "ES256");
        assert!(key["x"].is_string() && key["y"].is_string() && key.get("d").is_none());
    }
}
