//! The cache against a real provider on loopback: an actix-web server whose key set each
//! test changes and whose fetches it counts. Tokens are signed with fresh P-256 keys and
//! a fixed test-only RSA key (generating one in a debug build takes too long).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::json;

use super::*;
use crate::auth::http::provider_http_client;

const ISSUER: &str = "https://idp.example";
const CLIENT_ID: &str = "eguichet-client";

/// Test-only key, generated once with `openssl genrsa -traditional 2048`.
const RSA_TEST_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAvW4ZdiV7P67g/7uWYhDXFGytJxF4Lm4u+m2Q586algs34TAo
JhPiI9fbuUWrdu+rR8juKMbyM71Meb/keoBufEfZvip3KwCGq6WS43KVh+2T4a7W
fy8hheeL0S998cvwioVFkNjrhj1GUiCwP4SJmdTu9G4lseLMW7FLGDt6FNXp2WNP
oMnMwIBU2n1ZPNZdc9RnFMYwFNId1rUKr/1S6r9+kQn1bJbUlAUYZVwDs8l1wnZL
D//mmPz9czXV+akyEKTbgE20ptuHdQQ/Prcqo265Bxp9YYH8Y8BXkvhL+frcy7Cf
PTyQP4BV3Klam3M53JpvNOvn5k6cI8XiwMo1+wIDAQABAoIBAEaEjwvxZhFN+8qX
vaLiG/8pecgac7/tGqX1VcVFnzyODo5RDBEow72OJOiyq+MJ05xUi3w4m39xT9/e
9KI532d6o+9sBZLHjlqlt6neRRYl9jBEkusj03nyuZT09hCmV/RpKn2CkyMU+nGm
Y5Yxs7vFjfMGchfnkyXrOUZbFdZdKumlZ6uPveK6p4jWwtXkNccIn4mgQGjZO8C8
dz7+5uMK3byqX/kTsPGQ2bdRTIhR9rkyTS0za/STMYlNribr8SsLFMIF1GXpURJi
4rLxhY50uefngJZHSNIEgJr/cyttNbGmFA5dbotvDH8npmsV/ymmLgPjhBP1MpUF
dIy0fOkCgYEA9Fgtyx/gSne49q1Qe3btKWapVGDSATnwnukPae8yoTLfYspDT7jq
IpChf+XSZWkZPiwDmRb42S6WkFo2GCkuNys9g9mLbrT5pwK+7OQbikJ39sl+j+/P
4BPf8ZXE8O/MR48kTBXOHmldlBowJT2sRsuIhaq+oKwWQTwyuSx2+20CgYEAxndU
64vMthARhRG2NA0LDAnpQ87Zj8oFriBmWCLTwvAhqUJ/tQ8avHjfM42JAuSd5/7y
z9zAvI5OT9ZzE6btP7hwK052vVEm8UUZNTS3DNiaam2G2iutOvLcxZC+UFvt/yfA
0ypFGlNSmHpKOZD6pXamZ08rK2Jf0w8HS0Ky7gcCgYAQEqjYfr1LSLrTBy2PIZCS
M52Z3lCSIhSQ73XDGyfycJ0/K1zoJprIMUleV2jSoOo3K8AE1v0BlE31Kun6BuNy
X5bJUIsaei8d7FFQ1eR14M9xXWnE4BqFe+k0RAzTaILAhkr18k0/tOCh+GMIYBkw
Av11BXlKqmdAXUxc3+7ntQKBgA1VaRQmIUu+Cp9JEFew5KQbaluO4xkA9p67OIUF
WfrHzUsk15WffSlaaYx6HtFd8Knse/2xFBXW7bX5b2PLnDbiuk5+iAWyFQ6ymL31
W7L2PnGWCDBSLOI//MsdLVwSwQuabR8CwP/Cx1LNLH1vmxdQwF9Cd2EDy/JPGSta
QNEzAoGAfGtrPLBh+1PK8E5yOL17zZyVanhTd5OXZCUJ9SY6W3j4LbyJNZsM7kWj
YdYV0L2qRXkFQn2BEPoLdYcq3Ibt3Arq91B3ejtuHWOn3IDLXI2OVnyJkxauaDu0
4ytiySyxl3TxzsOOOjROSy4EzpxqBow2JrgNC8WWTH9Jox36jrE=
-----END RSA PRIVATE KEY-----
";

/// What the fake provider shares with its handlers.
#[derive(Clone)]
struct Published {
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

/// A fake identity provider serving its key set (and a few bad answers) on loopback.
struct Provider {
    base: Url,
    published: Published,
    server: ServerHandle,
}

impl Provider {
    async fn start(keys: &[&SigningKey]) -> Self {
        let published = Published {
            jwks: Arc::new(Mutex::new(Value::Null)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let data = web::Data::new(published.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/jwks", web::get().to(serve_jwks))
                .route("/redirect", web::get().to(redirect_to_jwks))
                .route(
                    "/error",
                    web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
                )
                .route(
                    "/discovery",
                    web::get()
                        .to(|| async { HttpResponse::Ok().json(json!({ "issuer": ISSUER })) }),
                )
                .route("/oversized", web::get().to(oversized_key_set))
                .route(
                    "/oversized-chunked",
                    web::get().to(oversized_chunked_key_set),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let provider = Self {
            base,
            published,
            server: handle,
        };
        provider.publish(keys);
        provider
    }

    /// Replaces the published key set.
    fn publish(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys.iter().map(|key| key.public_jwk.clone()).collect();
        *self.published.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    /// How many times the key set was served.
    fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    fn cache_at(&self, path: &str, min_refresh_interval: Duration) -> JwksCache {
        JwksCache::new(
            self.base.join(path).unwrap(),
            provider_http_client(Duration::from_secs(5)).unwrap(),
            min_refresh_interval,
        )
    }

    fn cache(&self, min_refresh_interval: Duration) -> JwksCache {
        self.cache_at("jwks", min_refresh_interval)
    }

    async fn stop(&self) {
        self.server.stop(false).await;
    }
}

async fn serve_jwks(published: web::Data<Published>) -> HttpResponse {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    let body = published.jwks.lock().unwrap().to_string();
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .body(body)
}

async fn redirect_to_jwks() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/jwks"))
        .finish()
}

fn padded_key_set() -> String {
    json!({ "keys": [], "padding": "x".repeat(MAX_JWKS_BYTES) }).to_string()
}

async fn oversized_key_set() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(padded_key_set())
}

/// The same body without a Content-Length, so only the reading loop can stop it.
async fn oversized_chunked_key_set() -> HttpResponse {
    let chunks: Vec<Result<bytes::Bytes, actix_web::Error>> = padded_key_set()
        .into_bytes()
        .chunks(8 * 1024)
        .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
        .collect();
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(futures::stream::iter(chunks))
}

/// A provider signing key and its public JWK (with `kid`, `alg` and `use`).
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl SigningKey {
    fn es256(kid: &str) -> Self {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        )
    }

    fn rs256(kid: &str) -> Self {
        let encoding = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        let jwk = serde_json::to_value(jwk).unwrap();
        Self::new(kid, Algorithm::RS256, encoding, jwk)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, mut public_jwk: Value) -> Self {
        public_jwk["kid"] = json!(kid);
        public_jwk["alg"] = json!(format!("{alg:?}"));
        public_jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public_jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(Some(&self.kid), claims)
    }

    fn sign_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "citizen-7",
        "iat": now,
        "exp": now + 300,
    })
}

fn claims_with(field: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[field] = value;
    claims
}

fn expected() -> JwsExpectations {
    JwsExpectations {
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        issuer: ISSUER.to_owned(),
        audience: CLIENT_ID.to_owned(),
        require_exp: true,
        leeway: Duration::from_secs(30),
    }
}

/// The userinfo flavour: `exp` optional.
fn expected_for_userinfo() -> JwsExpectations {
    JwsExpectations {
        require_exp: false,
        ..expected()
    }
}

/// A token whose header is exactly `header`, signed with nothing.
fn unsigned_token(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_cache_can_be_shared_between_requests() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<JwksCache>();
    shareable::<Arc<JwksCache>>();
}

#[tokio::test]
async fn es256_token_verifies_and_the_raw_set_is_exposed() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache(MINUTE);
    assert_eq!(provider.fetches(), 0, "nothing is fetched before first use");

    let verified = cache
        .verify(&key.sign(&claims()), &expected())
        .await
        .unwrap();
    assert_eq!(verified["sub"], "citizen-7");
    // Without a kid, the only ES256 key of the set is used.
    let kidless = key.sign_with_kid(None, &claims());
    cache.verify(&kidless, &expected()).await.unwrap();

    let json = cache.json().await.unwrap();
    assert_eq!(json["keys"][0]["kid"], "es-1");
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test]
async fn rs256_token_verifies() {
    let rsa = SigningKey::rs256("rs-1");
    let ec = SigningKey::es256("es-1");
    let provider = Provider::start(&[&ec, &rsa]).await;
    let cache = provider.cache(MINUTE);
    let verified = cache
        .verify(&rsa.sign(&claims()), &expected())
        .await
        .unwrap();
    assert_eq!(verified["iss"], ISSUER);
}

#[tokio::test]
async fn none_and_hmac_are_refused_before_any_key_lookup() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache(MINUTE);

    let none = unsigned_token(json!({"alg": "none", "kid": "es-1"}), &claims());
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(key.public_jwk.to_string().as_bytes()),
    )
    .unwrap();
    let hmac_listed = JwsExpectations {
        algorithms: vec![Algorithm::ES256, Algorithm::HS256],
        ..expected()
    };
    let only_rs256 = JwsExpectations {
        algorithms: vec![Algorithm::RS256],
        ..expected()
    };
    for (token, expectations, refused) in [
        (&none, &expected(), "none"),
        (&hmac, &expected(), "HS256"),
        (&hmac, &hmac_listed, "HS256"),
        (&key.sign(&claims()), &only_rs256, "ES256"),
    ] {
        match cache.verify(token, expectations).await {
            Err(JwsError::DisallowedAlgorithm(alg)) => assert_eq!(alg, refused),
            other => panic!("{refused}: {other:?}"),
        }
    }
    assert_eq!(
        provider.fetches(),
        0,
        "refused before the key set was needed"
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache(MINUTE);
    let verify = |claims: Value| {
        let token = key.sign(&claims);
        let cache = &cache;
        async move { cache.verify(&token, &expected()).await }
    };

    let wrong_issuer = verify(claims_with("iss", json!("https://evil.example"))).await;
    assert!(matches!(wrong_issuer, Err(JwsError::WrongIssuer)));
    for audience in [json!("another-client"), json!(["another-client", "third"])] {
        let result = verify(claims_with("aud", audience)).await;
        assert!(matches!(result, Err(JwsError::WrongAudience)));
    }
    verify(claims_with("aud", json!(["another-client", CLIENT_ID])))
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_tokens_are_refused_and_userinfo_may_omit_exp() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache(MINUTE);
    let an_hour_ago = chrono::Utc::now().timestamp() - 3600;

    let expired = key.sign(&claims_with("exp", json!(an_hour_ago)));
    for expectations in [expected(), expected_for_userinfo()] {
        let result = cache.verify(&expired, &expectations).await;
        assert!(matches!(result, Err(JwsError::Expired)));
    }

    let mut userinfo = claims();
    userinfo.as_object_mut().unwrap().remove("exp");
    let userinfo = key.sign(&userinfo);
    cache
        .verify(&userinfo, &expected_for_userinfo())
        .await
        .unwrap();
    let result = cache.verify(&userinfo, &expected()).await;
    assert!(matches!(result, Err(JwsError::Malformed(_))));

    let future = key.sign(&claims_with("nbf", json!(an_hour_ago + 7200)));
    let result = cache.verify(&future, &expected()).await;
    assert!(matches!(result, Err(JwsError::NotYetValid)));
}

#[tokio::test]
async fn a_signature_by_another_key_or_over_other_claims_is_refused() {
    let published = SigningKey::es256("es-1");
    let impostor = SigningKey::es256("es-1");
    let provider = Provider::start(&[&published]).await;
    let cache = provider.cache(MINUTE);

    let forged = impostor.sign(&claims());
    let result = cache.verify(&forged, &expected()).await;
    assert!(matches!(result, Err(JwsError::BadSignature)));

    // A genuine signature moved onto other claims.
    let genuine = published.sign(&claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    let other_claims = URL_SAFE_NO_PAD.encode(claims_with("sub", json!("citizen-8")).to_string());
    let spliced = format!("{}.{}.{}", parts[0], other_claims, parts[2]);
    let result = cache.verify(&spliced, &expected()).await;
    assert!(matches!(result, Err(JwsError::BadSignature)));
}

#[tokio::test]
async fn key_rotation_refetches_once_then_unknown_kids_are_rate_limited() {
    let old = SigningKey::es256("2025-key");
    let new = SigningKey::es256("2026-key");
    let provider = Provider::start(&[&old]).await;
    let interval = Duration::from_millis(800);
    let cache = provider.cache(interval);
    cache
        .verify(&old.sign(&claims()), &expected())
        .await
        .unwrap();
    assert_eq!(provider.fetches(), 1);

    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    provider.publish(&[&new]);
    cache
        .verify(&new.sign(&claims()), &expected())
        .await
        .unwrap();
    assert_eq!(provider.fetches(), 2, "one refetch for the new kid");

    let forger = SigningKey::es256("forged-kid");
    let result = cache.verify(&forger.sign(&claims()), &expected()).await;
    assert!(matches!(result, Err(JwsError::UnknownKey)));
    assert!(!cache.refresh_if_allowed().await.unwrap());
    assert_eq!(provider.fetches(), 2, "no refetch within the interval");

    // Once the interval has passed, a refresh goes to the provider again.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(cache.refresh_if_allowed().await.unwrap());
    assert_eq!(provider.fetches(), 3);
}

#[tokio::test]
async fn concurrent_first_use_fetches_once() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = Arc::new(provider.cache(MINUTE));
    let token = key.sign(&claims());
    let verifications = (0..16).map(|_| {
        let (cache, token) = (cache.clone(), token.clone());
        tokio::spawn(async move { cache.verify(&token, &expected()).await })
    });
    for result in futures::future::join_all(verifications).await {
        result.unwrap().unwrap();
    }
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_fetch_error() {
    let key = SigningKey::es256("es-1");
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cache = JwksCache::new(
        Url::parse(&format!("http://{closed_port}/jwks")).unwrap(),
        provider_http_client(Duration::from_secs(5)).unwrap(),
        MINUTE,
    );
    let result = cache.verify(&key.sign(&claims()), &expected()).await;
    assert!(matches!(result, Err(JwsError::Fetch(_))), "{result:?}");
    // Within the interval the failure is remembered rather than retried.
    assert!(matches!(cache.json().await, Err(JwsError::Fetch(_))));
}

#[tokio::test]
async fn cached_keys_outlive_a_provider_outage() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache(Duration::ZERO);
    cache
        .verify(&key.sign(&claims()), &expected())
        .await
        .unwrap();
    provider.stop().await;

    cache
        .verify(&key.sign(&claims()), &expected())
        .await
        .unwrap();
    let rotated = SigningKey::es256("es-2");
    let result = cache.verify(&rotated.sign(&claims()), &expected()).await;
    assert!(matches!(result, Err(JwsError::Fetch(_))), "{result:?}");
    cache
        .verify(&key.sign(&claims()), &expected())
        .await
        .unwrap();
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let key = SigningKey::es256("es-1");
    let provider = Provider::start(&[&key]).await;
    let cache = provider.cache_at("redirect", MINUTE);
    match cache.json().await {
        Err(JwsError::Fetch(reason)) => assert!(reason.contains("302"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(provider.fetches(), 0, "the redirect target was never asked");
}

#[tokio::test]
async fn errors_foreign_documents_and_oversized_sets_are_fetch_errors() {
    let provider = Provider::start(&[]).await;
    for (path, reason) in [
        ("error", "500"),
        ("missing", "404"),
        ("discovery", "not a JWK set"),
        ("oversized", "larger than"),
        ("oversized-chunked", "larger than"),
    ] {
        match provider.cache_at(path, MINUTE).json().await {
            Err(JwsError::Fetch(error)) => assert!(error.contains(reason), "{path}: {error}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}
