//! Bearer API tokens for agents' business software and the bulk-delivery CLI.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::agents::{self, Agent, ApiToken};
use crate::error::ApiError;
use crate::state::AppState;

/// The agent that authenticated the request with `Authorization: Bearer egt_…`.
pub struct ApiAgent(pub Agent);

impl FromRequest for ApiAgent {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let token = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|value| ApiToken::parse(value.trim()).ok());
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(ApiError::unauthorized());
            };
            let now = crate::now();
            // A revoked or expired token, or a disabled agent's, is refused as unknown.
            let found = state
                .db
                .read(move |conn| agents::agent_for_token(conn, &token, now))
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            if found.stale_last_use {
                let token_id = found.token_id.clone();
                state
                    .db
                    .write(move |conn| agents::api_tokens::record_token_use(conn, &token_id, now))
                    .await?;
            }
            Ok(ApiAgent(found.agent))
        })
    }
}
