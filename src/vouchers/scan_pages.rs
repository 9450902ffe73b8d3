//! The distributor's pages: pick a site of an open campaign, then scan codes there
//! with the camera (a script served by the portal decodes the QR code and fills the
//! field) or type them. Each answer says at once what to hand over, or why not.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::campaigns::{self, Campaign, Site};
use super::pages::collected_when_where;
use super::redeem::{self, FailureLimit, Scan, ScanOutcome, ScanRefusal};
use super::{CodeError, VoucherCode};
use crate::agents::Role;
use crate::state::AppState;
use crate::web::agent_session::AgentSession;
use crate::web::page::{Lang, Page, PageError};
use crate::web::session::AuthState;

/// Who scans: distributors, and agents helping at a site.
pub const SCANNING_ROLES: &[Role] = &[Role::Admin, Role::Agent, Role::Distributor];

/// The cookie naming this device, so a repeated scan from it is recognised.
const DEVICE_COOKIE: &str = "eg_scan_device";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/scan", web::get().to(sites))
        .route("/agent/scan/{site}", web::get().to(scan_page))
        .route("/agent/scan/{site}", web::post().to(scan));
}

#[derive(Serialize)]
struct OpenCampaign {
    campaign: Campaign,
    sites: Vec<Site>,
}

/// The open campaigns of the tenant and their sites.
async fn sites(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(SCANNING_ROLES)?;
    let tenant_id = agent.agent.tenant_id.clone();
    let open = state
        .db
        .read(
            move |conn| -> Result<Vec<OpenCampaign>, crate::db::DbError> {
                campaigns::list_campaigns(conn, &tenant_id)?
                    .into_iter()
                    .filter(|campaign| !campaign.is_closed())
                    .map(|campaign| {
                        let sites = campaigns::list_sites(conn, &campaign.id)?;
                        Ok(OpenCampaign { campaign, sites })
                    })
                    .collect()
            },
        )
        .await?;
    let mut context = agent.context(&page);
    context.insert("campaigns", &open);
    Ok(page.render(StatusCode::OK, "agent_scan_sites.html", &context))
}

async fn find_site(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    site_id: &str,
) -> Result<(Campaign, Site), PageError> {
    let (tenant_id, id) = (agent.agent.tenant_id.clone(), site_id.to_owned());
    state
        .db
        .read(move |conn| campaigns::find_site(conn, &tenant_id, &id))
        .await?
        .ok_or_else(|| PageError::not_found(page.lang))
}

async fn scan_page(
    agent: AgentSession,
    page: Page,
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, PageError> {
    agent.require(SCANNING_ROLES)?;
    let (campaign, site) = find_site(&agent, &page, &state, &path).await?;
    let mut response = render(&agent, &page, &campaign, &site, StatusCode::OK, None);
    if request.cookie(DEVICE_COOKIE).is_none() {
        let mut device = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut device);
        let mut cookie = auth.cookie(DEVICE_COOKIE, hex::encode(device));
        cookie.set_path("/agent/scan");
        cookie.set_max_age(CookieDuration::days(365));
        response
            .add_cookie(&cookie)
            .map_err(|error| PageError::internal(page.lang, error))?;
    }
    Ok(response)
}

#[derive(Deserialize)]
struct ScanForm {
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    identity_checked: Option<String>,
}

/// The answer as the page shows it.
#[derive(Serialize)]
struct Answer {
    /// `collected`, `repeated`, `already` or `refused`: the page's colour and icon.
    kind: &'static str,
    heading: String,
    detail: Option<String>,
}

async fn scan(
    agent: AgentSession,
    page: Page,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ScanForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(SCANNING_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let (campaign, site) = find_site(&agent, &page, &state, &path).await?;
    let device = request
        .cookie(DEVICE_COOKIE)
        .map(|cookie| cookie.value().to_owned());
    let outcome = redeem_for(
        &state,
        &agent.agent,
        &campaign,
        &site,
        &form.code,
        form.identity_checked.is_some(),
        device.as_deref(),
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    let answer = answer(page.lang, &campaign, &outcome);
    let status = match outcome {
        ScanOutcome::Collected { .. } => StatusCode::OK,
        ScanOutcome::AlreadyCollected { .. } => StatusCode::CONFLICT,
        ScanOutcome::Refused(ScanRefusal::TooManyFailures { .. }) => StatusCode::TOO_MANY_REQUESTS,
        ScanOutcome::Refused(ScanRefusal::Unknown | ScanRefusal::OtherCampaign(_)) => {
            StatusCode::NOT_FOUND
        }
        ScanOutcome::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(render(
        &agent,
        &page,
        &campaign,
        &site,
        status,
        Some(answer),
    ))
}

/// Reads a typed or scanned code and redeems it for an agent at a site (the page and
/// the API).
pub async fn redeem_for(
    state: &AppState,
    agent: &crate::agents::Agent,
    campaign: &Campaign,
    site: &Site,
    typed: &str,
    identity_checked: bool,
    device: Option<&str>,
) -> Result<ScanOutcome, crate::db::DbError> {
    let code: Result<VoucherCode, CodeError> = VoucherCode::parse(typed);
    let limit = FailureLimit {
        max_failures: state.config.limits.max_failed_scans,
        window_minutes: state.config.limits.failed_scan_window_minutes,
    };
    let (keys, agent, campaign, site) = (
        state.keys.clone(),
        agent.clone(),
        campaign.clone(),
        site.clone(),
    );
    let device = device.map(str::to_owned);
    state
        .db
        .write(move |conn| {
            redeem::redeem(
                conn,
                &keys.hasher,
                limit,
                &Scan {
                    agent: &agent,
                    campaign: &campaign,
                    site: &site,
                    code,
                    identity_checked,
                    device: device.as_deref(),
                },
            )
        })
        .await
}

fn answer(lang: Lang, campaign: &Campaign, outcome: &ScanOutcome) -> Answer {
    let hand_over = |allotment: i32| format!("{allotment} × {}", campaign.item);
    match outcome {
        ScanOutcome::Collected {
            allotment,
            repeated: false,
        } => Answer {
            kind: "collected",
            heading: lang.text("scan-collected"),
            detail: Some(hand_over(*allotment)),
        },
        ScanOutcome::Collected {
            allotment,
            repeated: true,
        } => Answer {
            kind: "repeated",
            heading: lang.text("scan-repeated"),
            detail: Some(hand_over(*allotment)),
        },
        ScanOutcome::AlreadyCollected { at, site } => Answer {
            kind: "already",
            heading: lang.text("scan-already"),
            detail: Some(collected_when_where(lang, *at, site)),
        },
        ScanOutcome::Refused(refusal) => Answer {
            kind: "refused",
            heading: lang.text(&format!(
                "scan-refused-{}",
                refusal.code().replace('_', "-")
            )),
            detail: match refusal {
                ScanRefusal::OtherCampaign(name) => Some(name.clone()),
                // The heading already says what is wrong; the detail adds only what
                // reads the same in every language (the error's own text is English).
                ScanRefusal::Malformed(CodeError::Length { expected, found }) => {
                    Some(format!("{found} / {expected}"))
                }
                ScanRefusal::Malformed(CodeError::Character(c)) => Some(match lang {
                    Lang::Fr => format!("« {c} »"),
                    Lang::En => format!("“{c}”"),
                }),
                ScanRefusal::Malformed(CodeError::Check) => None,
                ScanRefusal::TooManyFailures { minutes } => Some(format!("{minutes} min")),
                _ => None,
            },
        },
    }
}

fn render(
    agent: &AgentSession,
    page: &Page,
    campaign: &Campaign,
    site: &Site,
    status: StatusCode,
    answer: Option<Answer>,
) -> HttpResponse {
    let mut context = agent.context(page);
    context.insert("campaign", campaign);
    context.insert("site", site);
    if let Some(answer) = answer {
        context.insert("answer", &answer);
    }
    page.render(status, "agent_scan.html", &context)
}
