//! Cross-cutting HTTP concerns: security headers on every response, and one log line
//! per request naming the route pattern (never the concrete path, which may hold ids)
//! and as much of the client's address as `[http] log_client_address` allows.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};

/// Powerful browser features no page of the portal uses: all off (a macro, so that
/// both policies are literals).
macro_rules! features_off {
    () => {
        "accelerometer=(), autoplay=(), bluetooth=(), browsing-topics=(), \
         display-capture=(), geolocation=(), gyroscope=(), hid=(), magnetometer=(), \
         microphone=(), midi=(), payment=(), serial=(), usb=(), xr-spatial-tracking=()"
    };
}

/// Every page but the scanning ones: no camera either.
pub const PERMISSIONS_POLICY: &str = concat!("camera=(), ", features_off!());

/// The voucher scanning pages: the portal's own script may use the camera; no frame
/// and no other origin may.
pub const PERMISSIONS_POLICY_CAMERA: &str = concat!("camera=(self), ", features_off!());

/// Headers every response carries. Nothing is cacheable unless a handler says so
/// (the stylesheet): pages and API answers are about a person or an agent, and the
/// portal is used on public kiosks. No inline script or style is ever allowed.
pub fn security_headers(production: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add(("Cache-Control", "no-store"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        // A handler that needs a feature (the scanning pages) sets its own.
        .add(("Permissions-Policy", PERMISSIONS_POLICY));
    if production {
        headers.add((
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        headers
    }
}

/// Logs method, route pattern, status, duration and the client address's category.
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let client = super::client_address::client_address_for_log(request.request());
    let response = next.call(request).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    tracing::info!(
        http.method = %method,
        http.route = %route,
        http.status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        client.address = client.as_deref(),
        "request"
    );
    Ok(response)
}

/// In production every cookie is a `__Host-` cookie: the browser then accepts it only
/// from this exact host over HTTPS, with `Path=/` and no `Domain`, so a neighbouring
/// subdomain cannot plant or overwrite a session or login cookie. The handlers keep
/// using the bare names: outgoing cookies get the prefix (and `Secure`, `Path=/`, no
/// `Domain`), incoming ones have it removed, and incoming cookies without it are
/// dropped, since only a neighbour could have set them.
pub async fn host_prefixed_cookies(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    use actix_web::cookie::Cookie;
    use actix_web::http::header::{COOKIE, HeaderValue, SET_COOKIE};
    const PREFIX: &str = "__Host-";

    let kept: Vec<String> = request
        .headers()
        .get_all(COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(PREFIX).map(str::to_owned))
        .collect();
    let headers = request.headers_mut();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }

    let mut response = next.call(request).await?;
    let set: Vec<String> = response
        .headers()
        .get_all(SET_COOKIE)
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| Cookie::parse(value.to_owned()).ok())
        .map(|mut cookie| {
            cookie.set_name(format!("{PREFIX}{}", cookie.name()));
            cookie.set_path("/");
            cookie.set_secure(true);
            cookie.unset_domain();
            cookie.to_string()
        })
        .collect();
    let headers = response.headers_mut();
    headers.remove(SET_COOKIE);
    for cookie in set {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, value);
        }
    }
    Ok(response)
}
