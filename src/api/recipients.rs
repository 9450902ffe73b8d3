//! `POST /api/v1/recipients`: the vault key a document for someone must be encrypted
//! to, so that a sender can encrypt it on their own machine (end to end). The person
//! is named in the body, never in the URL (names and register numbers stay out of
//! logs). See [`crate::vault::vault_key_for`].

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ApiAgent;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::vault::vault_key_for;

/// Who to look up.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientQuery {
    /// As in a delivery's metadata: `{"pivot": {…}}`, `{"nrn": "…"}` or `{"citizen_id": "…"}`.
    #[schema(value_type = crate::vault::metadata::RecipientInput)]
    pub recipient: serde_json::Value,
}

/// The vault key to encrypt to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecipientBody {
    /// An age X25519 recipient, `age1…`.
    pub recipient: String,
}

/// The vault key of a citizen's vault.
#[utoipa::path(
    post,
    path = "/api/v1/recipients",
    request_body = RecipientQuery,
    responses(
        (status = 200, description = "The vault key", body = RecipientBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Role may not deliver", body = ErrorBody),
        (status = 422, description = "Invalid recipient", body = ErrorBody),
        (status = 429, description = "Too many lookups; retry after a second", body = ErrorBody),
    ),
    security(("api_token" = []))
)]
pub async fn recipient_key(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    query: web::Json<RecipientQuery>,
) -> Result<HttpResponse, ApiError> {
    let recipient = vault_key_for(&state, &agent, query.into_inner().recipient).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(RecipientBody {
            recipient: recipient.to_string(),
        }))
}
