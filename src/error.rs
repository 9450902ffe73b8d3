//! The one error type of the web edge: a stable public code, an HTTP status, a message
//! safe to show, and a private cause that goes to the log only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to an HTTP client as `{"error": CODE, "message": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    cause: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `document_too_large`.
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// Keeps the internal cause for the log; the client never sees it.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required (Authorization: Bearer egt_…)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; nothing was stored, try again later",
        )
        .with_cause(cause)
    }

    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the document store is unavailable; nothing was stored, try again later",
        )
        .with_cause(cause)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; nothing was stored",
        )
        .with_cause(cause)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(
                error.code = self.code,
                error.cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            );
        } else if let Some(cause) = &self.cause {
            tracing::info!(error.code = self.code, error.cause = %cause, "request refused");
        }
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorBody {
            error: self.code,
            message: self.message.clone(),
        })
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(error: crate::db::DbError) -> Self {
        match error {
            crate::db::DbError::Unavailable(_) => Self::database_unavailable(error),
            other => Self::internal(other),
        }
    }
}

impl From<crate::vault::DocumentError> for ApiError {
    fn from(error: crate::vault::DocumentError) -> Self {
        use crate::vault::{DocumentError as E, MetadataError as M};
        let message = error.to_string();
        match error {
            E::Forbidden => Self::forbidden(message),
            E::InvalidRequest(_) => Self::bad_request("invalid_request", message),
            E::Metadata(M::Malformed(_)) => Self::unprocessable("invalid_metadata", message),
            E::Metadata(M::Field(_)) => Self::unprocessable("invalid_metadata", message),
            E::Metadata(M::Recipient(_)) => Self::unprocessable("invalid_recipient", message),
            E::UnknownRecipient => Self::unprocessable("unknown_recipient", message),
            E::UnknownDepartment => Self::unprocessable("unknown_department", message),
            E::ArchivedDepartment => Self::unprocessable("archived_department", message),
            E::DepartmentNotAllowed => {
                Self::new(StatusCode::FORBIDDEN, "department_not_allowed", message)
            }
            E::DepartmentRequired => Self::unprocessable("department_required", message),
            E::AlreadyWithdrawn => Self::new(StatusCode::CONFLICT, "already_withdrawn", message),
            E::WithdrawalReason => Self::unprocessable("withdrawal_reason_required", message),
            E::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "document_too_large", message)
            }
            E::EmptyDocument => Self::unprocessable("empty_document", message),
            E::IdempotencyConflict => {
                Self::new(StatusCode::CONFLICT, "idempotency_key_reused", message)
            }
            E::NotFound => Self::not_found(),
            E::RecipientChanged => Self::new(StatusCode::CONFLICT, "recipient_changed", message),
            E::Storage(cause) => Self::storage_unavailable(cause),
            E::Database(cause) => cause.into(),
            E::Crypto(cause) => Self::internal(cause),
            E::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<crate::vault::KeyLookupError> for ApiError {
    fn from(error: crate::vault::KeyLookupError) -> Self {
        match error {
            crate::vault::KeyLookupError::TooMany => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_lookups",
                "too many recipient lookups; retry in a second",
            ),
            crate::vault::KeyLookupError::Document(error) => error.into(),
        }
    }
}
