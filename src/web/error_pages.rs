//! Every error answer is a real one: an unknown URL, a wrong method, a form the
//! framework could not read, all get a page in the portal's look and the visitor's
//! language instead of an empty or plain-text body. Under `/api` they get the API's
//! JSON error body instead. Answers a handler already rendered are left alone.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::page::{Message, Page};
use crate::error::ApiError;

/// Replaces a bare error answer (no body type, or plain text written by the
/// framework, which may name internals) with a page or a JSON error.
pub async fn render_error_pages(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let response = next.call(request).await?;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_rendered(response.headers()) {
        return Ok(response.map_into_left_body());
    }
    let (request, original) = response.into_parts();
    let path = request.path();
    let mut replacement = if path == "/api" || path.starts_with("/api/") {
        let (code, message) = api_words(status);
        ApiError::new(status, code, message).error_response()
    } else {
        Page::of(&request).message(status, page_words(status).next("/", "back-home"))
    };
    // Keep what the original said besides its body: `Allow`, `Retry-After`,
    // `WWW-Authenticate`, cookies.
    for (name, value) in original.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            replacement
                .headers_mut()
                .append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, replacement).map_into_right_body())
}

/// Whether a handler already wrote a real answer (an HTML page, JSON, an image…).
fn is_rendered(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| !value.starts_with("text/plain"))
}

fn page_words(status: StatusCode) -> Message {
    match status {
        StatusCode::NOT_FOUND => Message::new("not-found-title", "not-found-message"),
        StatusCode::METHOD_NOT_ALLOWED => Message::new("error-method-title", "error-method-body"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            Message::new("error-too-large-title", "error-too-large-body")
        }
        StatusCode::UNAUTHORIZED => Message::new("expired-title", "expired-message"),
        StatusCode::FORBIDDEN => Message::new("forbidden-title", "forbidden-message"),
        status if status.is_server_error() => Message::new("error-title", "error-message"),
        _ => Message::new("error-bad-request-title", "error-bad-request-body"),
    }
}

fn api_words(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "a valid API token is required"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        status if status.is_server_error() => ("internal_error", "an internal error occurred"),
        _ => ("bad_request", "the request could not be read"),
    }
}
