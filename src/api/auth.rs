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
            let agent = state
                .db
                .read(move |conn| agents::agent_for_token(conn, &token))
                .await?;
            agent.map(ApiAgent).ok_or_else(ApiError::unauthorized)
        })
    }
}
