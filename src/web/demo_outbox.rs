//! `/demo-outbox`: in demonstration mode, the notices that would have been sent by
//! email or SMS. Not mounted in production.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};

use super::page::{Page, PageError};
use crate::notify::demo_outbox::DemoOutbox;

/// Messages shown at most.
const SHOWN: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig, outbox: DemoOutbox) {
    cfg.app_data(web::Data::new(outbox))
        .route("/demo-outbox", web::get().to(demo_outbox));
}

async fn demo_outbox(page: Page, outbox: web::Data<DemoOutbox>) -> Result<HttpResponse, PageError> {
    let outbox = outbox.get_ref().clone();
    let messages = crate::telemetry::spawn_blocking(move || outbox.recent(SHOWN))
        .await
        .map_err(|error| PageError::internal(page.lang, error))?
        .map_err(|error| PageError::internal(page.lang, error))?;
    let mut context = page.context();
    context.insert("messages", &messages);
    let mut response = page.render(StatusCode::OK, "demo_outbox.html", &context);
    response.headers_mut().insert(
        CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
