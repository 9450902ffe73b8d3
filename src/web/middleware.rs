//! Cross-cutting HTTP concerns: security headers on every response, and a span and one
//! log line per request naming its id and route pattern (never the concrete path,
//! which may hold ids) and as much of the client's address as `[http]
//! log_client_address` allows.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use tracing::Instrument;

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

/// Runs each request in a `request` span carrying a random request id and the route
/// pattern, so that every line logged while serving it (on the blocking pool too, see
/// [`crate::telemetry::spawn_blocking`]) names them; then logs method, route pattern,
/// status, duration and the client address's category. The id is sent back in
/// `X-Request-Id`, for a support request to point at the log lines.
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = hex::encode(crate::crypto::random_bytes::<8>());
    let method = request.method().clone();
    // The resource map answers before routing: the span has the pattern from the start.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let span = tracing::info_span!(
        "request",
        request.id = %request_id,
        http.method = %method,
        http.route = %route,
    );
    let client = super::client_address::client_address_for_log(request.request());
    let mut response = next.call(request).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    span.in_scope(|| {
        tracing::info!(
            http.status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            client.address = client.as_deref(),
            "request"
        );
    });
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

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};

    use actix_web::{App, HttpResponse, test, web};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    /// The fields of a span or event, as text.
    #[derive(Clone, Default, Debug)]
    struct Fields(Vec<(String, String)>);

    impl Fields {
        fn get(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str())
        }
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    /// Each event's message with the fields of the `request` span around it, if any.
    type Logged = Arc<Mutex<Vec<(String, Option<Fields>)>>>;

    struct Recorder(Logged);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
        fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            if let Some(span) = context.span(id) {
                span.extensions_mut().insert(fields);
            }
        }

        fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let message = fields.get("message").unwrap_or_default().to_owned();
            let request = context.event_scope(event).and_then(|scope| {
                scope
                    .from_root()
                    .find(|span| span.name() == "request")
                    .and_then(|span| span.extensions().get::<Fields>().cloned())
            });
            self.0.lock().unwrap().push((message, request));
        }
    }

    async fn handler() -> HttpResponse {
        crate::telemetry::spawn_blocking(|| tracing::info!("on the blocking pool"))
            .await
            .unwrap();
        tracing::info!("in the handler");
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn every_line_of_a_request_names_its_id_and_route_pattern_on_any_thread() {
        let logged = Logged::default();
        let subscriber = tracing_subscriber::registry().with(Recorder(logged.clone()));
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(super::log_request))
                .route("/things/{id}", web::get().to(handler)),
        )
        .await;

        let mut ids = Vec::new();
        for path in ["/things/42", "/things/43"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            let id = response.headers().get("x-request-id").unwrap();
            ids.push(id.to_str().unwrap().to_owned());
        }
        assert_ne!(ids[0], ids[1], "one id per request");

        let logged = logged.lock().unwrap();
        for (index, id) in ids.iter().enumerate() {
            let lines: Vec<&str> = logged
                .iter()
                .filter(|(_, request)| {
                    request.as_ref().and_then(|fields| fields.get("request.id")) == Some(id)
                })
                .map(|(message, _)| message.as_str())
                .collect();
            assert_eq!(
                lines,
                ["on the blocking pool", "in the handler", "request"],
                "request {index}: {logged:?}"
            );
        }
        for (_, request) in logged.iter() {
            let request = request.as_ref().unwrap();
            assert_eq!(request.get("http.route"), Some("/things/{id}"));
            assert!(
                !format!("{request:?}").contains("/things/4"),
                "no concrete path"
            );
        }
    }
}
