//! `POST /api/v1/recipients`: the vault key a document for someone must be encrypted
//! to, so that a sender can encrypt it on their own machine (end to end). The person
//! is named in the body, never in the URL (names and register numbers stay out of
//! logs). The answer has the same shape whether the person was known or not: an
//! unknown person gets their vault, escrowed, as a delivery would create it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ApiAgent;
use crate::audit::{self, Actor, AuditEvent};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::vault::metadata::parse_recipient;
use crate::vault::resolve_recipient;

/// Lookups an agent may burst to, and how many come back per second. Enough for a
/// bulk run of tens of thousands of lines; counted per instance.
const LOOKUP_BURST: f64 = 1000.0;
const LOOKUPS_PER_SECOND: f64 = 200.0;

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
    if !agent.role.can_deliver() {
        return Err(crate::vault::DocumentError::Forbidden.into());
    }
    if !take_lookup(&agent.id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_lookups",
            "too many recipient lookups; retry in a second",
        ));
    }
    let recipient =
        parse_recipient(query.into_inner().recipient).map_err(crate::vault::DocumentError::from)?;
    let (citizen, _) = resolve_recipient(&state, &recipient).await?;
    let (tenant, agent_id, citizen_id) = (agent.tenant_id.clone(), agent.id.clone(), citizen.id);
    state
        .db
        .write(move |conn| {
            audit::record(
                conn,
                AuditEvent::new(Actor::Agent(agent_id), "recipient.key_given")
                    .tenant(&tenant)
                    .citizen(&citizen_id),
            )
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(RecipientBody {
            recipient: citizen.recipient.to_string(),
        }))
}

/// One token from the agent's bucket, if there is one.
fn take_lookup(agent_id: &str) -> bool {
    static BUCKETS: LazyLock<Mutex<HashMap<String, (f64, Instant)>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut buckets = BUCKETS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    let (tokens, since) = buckets
        .entry(agent_id.to_owned())
        .or_insert((LOOKUP_BURST, now));
    *tokens =
        (*tokens + now.duration_since(*since).as_secs_f64() * LOOKUPS_PER_SECOND).min(LOOKUP_BURST);
    *since = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}
