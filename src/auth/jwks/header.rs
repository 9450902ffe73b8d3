//! The protected header of a compact JWS, read before anything else so a token with a
//! refused algorithm (`none`, HMAC, anything not configured) goes no further.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::JwsError;

/// The header fields that decide how a token is verified.
#[derive(Debug)]
pub(super) struct ProtectedHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl ProtectedHeader {
    /// Reads the header of `compact` and refuses any algorithm outside `allowed`.
    pub fn parse(compact: &str, allowed: &[Algorithm]) -> Result<Self, JwsError> {
        let mut parts = compact.split('.');
        let (Some(encoded), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a compact JWS has three parts"));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| malformed("the header is not base64url"))?;
        let header: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| malformed("the header is not a JSON object"))?;

        let name = match header.get("alg") {
            Some(Value::String(name)) => name,
            _ => return Err(malformed("the header has no alg")),
        };
        // A symmetric algorithm cannot be checked against public keys: whoever knows the
        // published key could sign. So HMAC stays refused even if configured.
        let alg = Algorithm::from_str(name)
            .ok()
            .filter(|alg| allowed.contains(alg) && alg.family() != AlgorithmFamily::Hmac)
            .ok_or_else(|| JwsError::DisallowedAlgorithm(name.clone()))?;
        // RFC 7515 §4.1.11: extensions marked critical must be understood; we know none.
        if header.contains_key("crit") {
            return Err(malformed("critical header extensions are not supported"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed("the kid is not a string")),
        };
        Ok(Self { alg, kid })
    }
}

fn malformed(reason: &str) -> JwsError {
    JwsError::Malformed(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    const ALLOWED: &[Algorithm] = &[Algorithm::ES256, Algorithm::RS256, Algorithm::HS256];

    #[test]
    fn reads_alg_and_kid() {
        let header =
            ProtectedHeader::parse(&token_with_header(r#"{"alg":"ES256","kid":"k1"}"#), ALLOWED)
                .unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn refuses_none_hmac_and_unlisted_algorithms_by_name() {
        for (header, name) in [
            (r#"{"alg":"none"}"#, "none"),
            (r#"{"alg":"HS256"}"#, "HS256"),
            (r#"{"alg":"PS256"}"#, "PS256"),
        ] {
            match ProtectedHeader::parse(&token_with_header(header), ALLOWED) {
                Err(JwsError::DisallowedAlgorithm(refused)) => assert_eq!(refused, name),
                other => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_malformed_headers() {
        for token in [
            "only.two".to_owned(),
            "a.b.c.d".to_owned(),
            "!!.e30.c2ln".to_owned(),
            token_with_header("[]"),
            token_with_header(r#"{"kid":"k1"}"#),
            token_with_header(r#"{"alg":"ES256","kid":7}"#),
            token_with_header(r#"{"alg":"ES256","crit":["exp"]}"#),
        ] {
            assert!(
                matches!(
                    ProtectedHeader::parse(&token, ALLOWED),
                    Err(JwsError::Malformed(_))
                ),
                "{token}"
            );
        }
    }
}
