//! The JSON API under `/api/v1`, for business software and the command-line tools.
//! Its OpenAPI description is served at `/api/v1/openapi.json`.

mod auth;
mod bulk_jobs;
mod documents;
mod recipients;
mod vouchers;

use actix_web::{HttpResponse, web};
use utoipa::OpenApi;

pub use auth::ApiAgent;

/// The OpenAPI description of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "e-guichet API",
        description = "Deliver documents into citizens' encrypted vaults and follow them; redeem vouchers at distribution sites."
    ),
    paths(
        documents::deliver_document,
        documents::document_status,
        documents::withdraw_document,
        recipients::recipient_key,
        bulk_jobs::start_bulk_job,
        bulk_jobs::bulk_job_report,
        vouchers::redeem
    ),
    components(schemas(
        crate::error::ErrorBody,
        crate::vault::DocumentStatus,
        crate::vault::DocumentState,
        crate::vault::metadata::DeliveryMetadataInput,
        crate::vault::metadata::RecipientInput,
        crate::vault::metadata::ContactInput,
        crate::citizens::PivotInput,
        documents::DeliveryForm,
        documents::DeliveredBody,
        documents::WithdrawalBody,
        recipients::RecipientQuery,
        recipients::RecipientBody,
        crate::vault::metadata::SenderEncryptionInput,
        bulk_jobs::BulkJobForm,
        bulk_jobs::StartedBody,
        crate::bulk::JobReport,
        crate::bulk::JobState,
        crate::bulk::LineReport,
        crate::bulk::LineState,
        vouchers::RedemptionRequest,
        vouchers::RedemptionBody,
    )),
    modifiers(&BearerToken),
)]
pub struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Registers the API routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::JsonConfig::default().limit(16 * 1024).error_handler(
                |error, _request| {
                    crate::error::ApiError::bad_request("invalid_json", error.to_string()).into()
                },
            ))
            .route("/openapi.json", web::get().to(openapi_json))
            .route("/documents", web::post().to(documents::deliver_document))
            .route("/documents/{id}", web::get().to(documents::document_status))
            .route("/recipients", web::post().to(recipients::recipient_key))
            .route(
                "/documents/{id}/withdraw",
                web::post().to(documents::withdraw_document),
            )
            .route("/bulk-jobs", web::post().to(bulk_jobs::start_bulk_job))
            .route("/bulk-jobs/{id}", web::get().to(bulk_jobs::bulk_job_report))
            .route(
                "/voucher-sites/{site}/redemptions",
                web::post().to(vouchers::redeem),
            )
            .default_service(web::to(unknown_route)),
    );
}

/// API clients get a JSON error for a path or method that does not exist.
async fn unknown_route() -> Result<HttpResponse, crate::error::ApiError> {
    Err(crate::error::ApiError::not_found())
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
