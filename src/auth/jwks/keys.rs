//! A fetched key set: the raw JSON (the ID token verifier reads it) and the keys parsed
//! from it, with the rules for picking the one key that may verify a given token.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde_json::Value;

use super::JwsError;

/// One version of the provider's key set.
pub(super) struct KeySet {
    pub json: Arc<Value>,
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWK set document. Keys we cannot read are skipped, so one exotic key
    /// does not stop the others from working.
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        let json: Value = serde_json::from_slice(body)
            .map_err(|_| JwsError::Fetch("the key set is not JSON".to_owned()))?;
        let Some(Value::Array(entries)) = json.get("keys") else {
            return Err(JwsError::Fetch("the document is not a JWK set".to_owned()));
        };
        let keys: Vec<Jwk> = entries
            .iter()
            .filter_map(|entry| serde_json::from_value(entry.clone()).ok())
            .collect();
        if keys.len() < entries.len() {
            tracing::debug!(
                jwks.skipped = entries.len() - keys.len(),
                "unreadable keys in the provider's set"
            );
        }
        Ok(Self {
            json: Arc::new(json),
            keys,
        })
    }

    /// The key that verifies a token signed with `alg`: the one named by `kid`, or
    /// without a kid the only key of the right type.
    pub fn select(&self, alg: Algorithm, kid: Option<&str>) -> Option<&Jwk> {
        let mut candidates = self.keys.iter().filter(|jwk| verifies(jwk, alg));
        match kid {
            Some(kid) => candidates.find(|jwk| jwk.common.key_id.as_deref() == Some(kid)),
            None => {
                let only = candidates.next();
                // Two candidates and no kid: guessing would let the wrong key decide.
                candidates.next().is_none().then_some(only).flatten()
            }
        }
    }
}

/// Whether `jwk` may verify a signature made with `alg`: a signing key of the matching
/// type and curve, whose own `alg`, if any, is the same.
fn verifies(jwk: &Jwk, alg: Algorithm) -> bool {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return false;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|operations| !operations.contains(&KeyOperations::Verify))
    {
        return false;
    }
    if common
        .key_algorithm
        .is_some_and(|own| own != KeyAlgorithm::from(alg))
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec_key(extra: Value) -> Value {
        let mut key = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y});
        key.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        key
    }

    fn set(keys: Vec<Value>) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn selected_kid(set: &KeySet, alg: Algorithm, kid: Option<&str>) -> Option<String> {
        set.select(alg, kid)
            .map(|jwk| jwk.common.key_id.clone().unwrap_or_default())
    }

    #[test]
    fn refuses_documents_that_are_not_key_sets() {
        for body in [&b"not json"[..], b"{}", br#"{"keys":"k"}"#, b"[]"] {
            assert!(matches!(KeySet::parse(body), Err(JwsError::Fetch(_))));
        }
    }

    #[test]
    fn skips_unreadable_keys_and_keeps_the_raw_json() {
        let keys = set(vec![
            json!({"kty": "EC", "kid": 42}),
            ec_key(json!({"kid": "a"})),
        ]);
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.json["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn selects_by_kid_and_type() {
        let keys = set(vec![
            ec_key(json!({"kid": "a", "alg": "ES256", "use": "sig"})),
            ec_key(json!({"kid": "enc", "use": "enc"})),
            ec_key(json!({"kid": "384", "alg": "ES384"})),
            ec_key(json!({"kid": "ops", "key_ops": ["encrypt"]})),
            json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": EC_X, "y": EC_Y}),
        ]);
        assert_eq!(
            selected_kid(&keys, Algorithm::ES256, Some("a")).as_deref(),
            Some("a")
        );
        for refused in ["enc", "384", "ops", "p384", "missing"] {
            assert_eq!(selected_kid(&keys, Algorithm::ES256, Some(refused)), None);
        }
        // An EC key never verifies an RSA signature, even under the right kid.
        assert_eq!(selected_kid(&keys, Algorithm::RS256, Some("a")), None);
    }

    #[test]
    fn without_kid_only_a_single_candidate_is_used() {
        let one = set(vec![ec_key(json!({"kid": "a"}))]);
        assert_eq!(
            selected_kid(&one, Algorithm::ES256, None).as_deref(),
            Some("a")
        );
        let two = set(vec![
            ec_key(json!({"kid": "a"})),
            ec_key(json!({"kid": "b"})),
        ]);
        assert_eq!(selected_kid(&two, Algorithm::ES256, None), None);
    }
}
