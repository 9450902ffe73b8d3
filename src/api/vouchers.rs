//! Redeeming vouchers from a handheld scanner or a site's own software: the same
//! single-statement redemption as the distributor's page. A request sent again with
//! the same `Idempotency-Key` gets the first answer back and redeems nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ApiAgent;
use crate::error::ApiError;
use crate::state::AppState;
use crate::vault::IdempotencyKey;
use crate::vouchers::campaigns;
use crate::vouchers::redeem::{CollectedPlace, ScanOutcome, ScanRefusal};
use crate::vouchers::scan_pages::{SCANNING_ROLES, redeem_for};
use crate::vouchers::scan_requests::{Submission, SubmissionKey};

/// The header naming one redemption request, so that retrying it is safe.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A scanned or typed code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    /// The code as read: case, spaces and dashes do not matter.
    pub code: String,
    /// The distributor checked the person's identity (only this tick is kept).
    #[serde(default)]
    pub identity_checked: bool,
    /// A stable id of the scanning device (up to 100 characters): a code scanned again
    /// is then said to have been collected "at this desk" when this device collected it.
    #[serde(default)]
    pub device: Option<String>,
}

/// What happened to the code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RedemptionBody {
    /// `collected`, `already_collected`, or a refusal code (`code_length`,
    /// `code_character`, `code_check`, `unknown_code`, `other_campaign`,
    /// `revoked_code`, `campaign_closed`, `too_many_failures`).
    pub outcome: &'static str,
    /// How many items to hand over (when collected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allotment: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// True when this answers a request already made with the same `Idempotency-Key`
    /// (nothing was redeemed this time; the answer is the first one's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// When (UTC) and where it was collected (when already collected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_at: Option<chrono::NaiveDateTime>,
    /// `this_desk` (this device), `this_site` or `other_site`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_where: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub message: String,
}

/// Redeem a code at a distribution site.
#[utoipa::path(
    post,
    path = "/api/v1/voucher-sites/{site}/redemptions",
    params(
        ("site" = String, Path, description = "Distribution site id"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "1 to 200 visible ASCII characters, new for each scan: the same request \
                        sent again (a retry) gets the first answer back and redeems nothing"),
    ),
    request_body = RedemptionRequest,
    responses(
        (status = 200, description = "Hand over the allotment", body = RedemptionBody),
        (status = 400, description = "Malformed Idempotency-Key", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "Role may not redeem", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown site, unknown code or another campaign's code", body = RedemptionBody),
        (status = 409, description = "Already collected", body = RedemptionBody),
        (status = 422, description = "Malformed or revoked code, closed campaign (RedemptionBody); \
                                      or an Idempotency-Key already used for another code or site \
                                      (ErrorBody, idempotency_key_reused)", body = RedemptionBody),
        (status = 429, description = "Too many failed scans by this agent", body = RedemptionBody),
    ),
    security(("api_token" = []))
)]
pub async fn redeem(
    state: web::Data<AppState>,
    ApiAgent(agent): ApiAgent,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<RedemptionRequest>,
) -> Result<HttpResponse, ApiError> {
    if !SCANNING_ROLES.contains(&agent.role) {
        return Err(ApiError::forbidden("this role does not redeem vouchers"));
    }
    let key = match request.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|key| IdempotencyKey::is_well_formed(key))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    )
                })?,
        ),
    };
    let device = body.device.as_deref().map(str::trim);
    if device.is_some_and(|device| device.is_empty() || device.len() > 100) {
        return Err(ApiError::unprocessable(
            "invalid_device",
            "device must be 1 to 100 characters",
        ));
    }
    let (tenant_id, site_id) = (agent.tenant_id.clone(), path.into_inner());
    let (campaign, site) = state
        .db
        .read(move |conn| campaigns::find_site(conn, &tenant_id, &site_id))
        .await?
        .ok_or_else(ApiError::not_found)?;
    let submission = redeem_for(
        &state,
        &agent,
        &campaign,
        &site,
        &body.code,
        body.identity_checked,
        device,
        key.map(|key| SubmissionKey::IdempotencyKey(key.to_owned())),
    )
    .await?;
    let (outcome, replayed) = match submission {
        Submission::First(outcome) => (outcome, false),
        Submission::Repeated(outcome) => (outcome, true),
        Submission::KeyReused => {
            return Err(ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for another code or site",
            ));
        }
    };
    let mut answer = RedemptionBody {
        outcome: "collected",
        allotment: None,
        item: None,
        replayed,
        collected_at: None,
        collected_where: None,
        site: None,
        message: String::new(),
    };
    let status = match outcome {
        ScanOutcome::Collected { allotment } => {
            answer.message = format!("hand over {allotment} × {}", campaign.item);
            answer.allotment = Some(allotment);
            answer.item = Some(campaign.item);
            StatusCode::OK
        }
        ScanOutcome::AlreadyCollected { at, place } => {
            answer.outcome = "already_collected";
            answer.message = "already handed over: do not hand over again".to_owned();
            answer.collected_at = Some(at);
            let (collected_where, site_name) = match place {
                CollectedPlace::ThisDesk => ("this_desk", Some(site.name.clone())),
                CollectedPlace::ThisSite => ("this_site", Some(site.name.clone())),
                CollectedPlace::OtherSite(name) => ("other_site", name),
            };
            answer.collected_where = Some(collected_where);
            answer.site = site_name;
            StatusCode::CONFLICT
        }
        ScanOutcome::Refused(refusal) => {
            answer.outcome = refusal.code();
            answer.message = refusal_message(&refusal);
            match refusal {
                ScanRefusal::Unknown | ScanRefusal::OtherCampaign(_) => StatusCode::NOT_FOUND,
                ScanRefusal::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            }
        }
    };
    Ok(HttpResponse::build(status).json(answer))
}

fn refusal_message(refusal: &ScanRefusal) -> String {
    match refusal {
        ScanRefusal::Malformed(error) => error.to_string(),
        ScanRefusal::Unknown => "no campaign of this commune issued this code".to_owned(),
        ScanRefusal::OtherCampaign(name) => format!("this code belongs to the campaign {name:?}"),
        ScanRefusal::Revoked => "this code was revoked (its letter was reported lost)".to_owned(),
        ScanRefusal::CampaignClosed => "the campaign is closed".to_owned(),
        ScanRefusal::TooManyFailures { minutes } => {
            format!("too many failed scans: wait up to {minutes} minutes")
        }
    }
}
