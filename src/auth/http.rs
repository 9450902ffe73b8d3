//! The HTTP client used to reach identity providers (discovery, keys, tokens, userinfo).
//! Provider URLs come from configuration and discovery documents, so the client never
//! follows redirects (a redirect could point it at an internal service) and gives up fast.

use std::time::Duration;

/// How long to wait for a provider to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The outbound HTTP client for talking to identity providers: never follows redirects
/// (SSRF), short timeouts.
pub fn provider_http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .user_agent(concat!("eguichet/", env!("CARGO_PKG_VERSION")))
        .build()
}
