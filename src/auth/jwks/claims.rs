//! The registered claims of a verified token, checked as OpenID Connect states them:
//! `iss` is one exact string, `aud` is or contains us, and `exp`, `nbf` and `iat` agree
//! with our clock give or take the leeway.

use serde_json::{Map, Value};

use super::{JwsError, JwsExpectations};

/// Checks `iss`, `aud`, `exp`, `nbf` and `iat` at time `now` (Unix seconds).
pub(super) fn check_registered_claims(
    claims: &Map<String, Value>,
    expected: &JwsExpectations,
    now: i64,
) -> Result<(), JwsError> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer.as_str()) {
        return Err(JwsError::WrongIssuer);
    }
    let audience_matches = match claims.get("aud") {
        Some(Value::String(audience)) => *audience == expected.audience,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(expected.audience.as_str())),
        _ => false,
    };
    if !audience_matches {
        return Err(JwsError::WrongAudience);
    }

    let now = now as f64;
    let leeway = expected.leeway.as_secs_f64();
    match numeric_date(claims, "exp")? {
        // RFC 7519 §4.1.4: the token is valid only *before* its expiry.
        Some(exp) if now - leeway >= exp => return Err(JwsError::Expired),
        None if expected.require_exp => {
            return Err(JwsError::Malformed("the token has no exp".to_owned()));
        }
        _ => {}
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(JwsError::NotYetValid);
    }
    // A token issued in the future comes from a wrong clock or a forger.
    if numeric_date(claims, "iat")?.is_some_and(|iat| now + leeway < iat) {
        return Err(JwsError::NotYetValid);
    }
    Ok(())
}

/// A NumericDate claim (seconds, possibly fractional), if present.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, JwsError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|seconds| seconds.is_finite())
            .map(Some)
            .ok_or_else(|| JwsError::Malformed(format!("{name} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn expectations(require_exp: bool) -> JwsExpectations {
        JwsExpectations {
            algorithms: vec![jsonwebtoken::Algorithm::ES256],
            issuer: "https://idp.example".to_owned(),
            audience: "client-1".to_owned(),
            require_exp,
            leeway: Duration::from_secs(30),
        }
    }

    fn check(claims: Value, require_exp: bool) -> Result<(), JwsError> {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        check_registered_claims(&claims, &expectations(require_exp), NOW)
    }

    fn base() -> Value {
        json!({"iss": "https://idp.example", "aud": "client-1", "exp": NOW + 60})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = base();
        claims[field] = value;
        claims
    }

    fn without(field: &str) -> Value {
        let mut claims = base();
        claims.as_object_mut().unwrap().remove(field);
        claims
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert!(check(base(), true).is_ok());
        for iss in [
            json!("https://idp.example/"),
            json!(["https://idp.example"]),
            Value::Null,
        ] {
            assert!(matches!(
                check(with("iss", iss), true),
                Err(JwsError::WrongIssuer)
            ));
        }
        assert!(matches!(
            check(without("iss"), true),
            Err(JwsError::WrongIssuer)
        ));
    }

    #[test]
    fn audience_is_or_contains_us() {
        assert!(check(with("aud", json!(["other", "client-1"])), true).is_ok());
        for aud in [json!("other"), json!(["other"]), json!([]), json!(1)] {
            assert!(matches!(
                check(with("aud", aud), true),
                Err(JwsError::WrongAudience)
            ));
        }
        assert!(matches!(
            check(without("aud"), true),
            Err(JwsError::WrongAudience)
        ));
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        assert!(check(with("exp", json!(NOW - 29)), true).is_ok());
        assert!(check(with("exp", json!(NOW as f64 - 29.5)), true).is_ok());
        assert!(matches!(
            check(with("exp", json!(NOW - 30)), true),
            Err(JwsError::Expired)
        ));
        assert!(matches!(
            check(with("exp", json!("soon")), true),
            Err(JwsError::Malformed(_))
        ));
    }

    #[test]
    fn exp_is_required_only_when_asked_but_always_checked() {
        assert!(check(without("exp"), false).is_ok());
        assert!(matches!(
            check(without("exp"), true),
            Err(JwsError::Malformed(_))
        ));
        assert!(matches!(
            check(with("exp", json!(NOW - 3600)), false),
            Err(JwsError::Expired)
        ));
    }

    #[test]
    fn not_before_and_issued_at_may_not_be_in_the_future() {
        assert!(check(with("nbf", json!(NOW + 30)), true).is_ok());
        assert!(check(with("iat", json!(NOW + 30)), true).is_ok());
        assert!(matches!(
            check(with("nbf", json!(NOW + 31)), true),
            Err(JwsError::NotYetValid)
        ));
        assert!(matches!(
            check(with("iat", json!(NOW + 31)), true),
            Err(JwsError::NotYetValid)
        ));
    }
}
