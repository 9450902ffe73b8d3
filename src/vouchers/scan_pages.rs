//! The distributor's pages: pick a site of an open campaign, then scan codes there
//! with the camera (a script served by the portal decodes the QR code and fills the
//! field) or type them. Each answer says at once what to hand over, or why not; a code
//! scanned again says when and where it was handed over. Each form carries a one-time
//! token, so that the same form sent twice scans once and shows the same answer.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::campaigns::{self, Campaign, Site};
use super::redeem::{CollectedPlace, FailureLimit, Scan, ScanOutcome, ScanRefusal};
use super::scan_requests::{self, Submission, SubmissionKey};
use super::{CodeError, VoucherCode};
use crate::agents::Role;
use crate::local_time::local_time;
use crate::state::AppState;
use crate::web::agent_session::AgentSession;
use crate::web::middleware::PERMISSIONS_POLICY_CAMERA;
use crate::web::page::{Lang, Page, PageError};
use crate::web::session::AuthState;

/// Who scans: distributors, and agents helping at a site.
pub const SCANNING_ROLES: &[Role] = &[Role::Admin, Role::Agent, Role::Distributor];

/// The cookie naming this device, so that a code scanned again can be said to have
/// been handed over "at this desk".
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
    let token = issue_form_token(&state, &agent, &site).await?;
    let mut response = render(
        &agent,
        &page,
        &campaign,
        &site,
        &token,
        StatusCode::OK,
        None,
    );
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

/// A one-time token for the next scan form at this site.
async fn issue_form_token(
    state: &AppState,
    agent: &AgentSession,
    site: &Site,
) -> Result<String, PageError> {
    let (keys, tenant_id, agent_id, site_id) = (
        state.keys.clone(),
        agent.agent.tenant_id.clone(),
        agent.agent.id.clone(),
        site.id.clone(),
    );
    Ok(state
        .db
        .write(move |conn| {
            scan_requests::issue_form_token(
                conn,
                &keys.hasher,
                &tenant_id,
                &agent_id,
                &site_id,
                crate::now(),
            )
        })
        .await?)
}

#[derive(Deserialize)]
struct ScanForm {
    csrf: String,
    /// The form's one-time token (a page from before tokens has none).
    #[serde(default)]
    scan_token: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    identity_checked: Option<String>,
}

/// The answer as the page shows it.
#[derive(Serialize)]
struct Answer {
    /// `collected`, `already` or `refused`: the page's colour and icon.
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
    let token = form
        .scan_token
        .as_deref()
        .filter(|token| !token.is_empty() && token.len() <= 64);
    let submission = redeem_for(
        &state,
        &agent.agent,
        &campaign,
        &site,
        &form.code,
        form.identity_checked.is_some(),
        device.as_deref(),
        token.map(|token| SubmissionKey::FormToken(token.to_owned())),
    )
    .await
    .map_err(|error| PageError::internal(page.lang, error))?;
    let outcome = submission
        .outcome()
        .cloned()
        .ok_or_else(|| PageError::internal(page.lang, "a form token cannot be reused"))?;
    let answer = answer(
        page.lang,
        state.config.tenant.time_zone,
        &campaign,
        &outcome,
    );
    let next_token = issue_form_token(&state, &agent, &site).await?;
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
        &next_token,
        status,
        Some(answer),
    ))
}

/// Reads a typed or scanned code and redeems it for an agent at a site (the page and
/// the API), once per submission when the submission has a key.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site each in the page and the API, every argument named"
)]
pub async fn redeem_for(
    state: &AppState,
    agent: &crate::agents::Agent,
    campaign: &Campaign,
    site: &Site,
    typed: &str,
    identity_checked: bool,
    device: Option<&str>,
    key: Option<SubmissionKey>,
) -> Result<Submission, crate::db::DbError> {
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
            scan_requests::redeem_once(
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
                key.as_ref(),
            )
        })
        .await
}

/// "at 14:03" today, "on 2020-05-12 at 14:03" another day, in the commune's time.
pub(crate) fn when_text(lang: Lang, zone: chrono_tz::Tz, at: chrono::NaiveDateTime) -> String {
    let (at, today) = (local_time(at, zone), local_time(crate::now(), zone).date());
    let time = at.format("%H:%M").to_string();
    if at.date() == today {
        lang.text_with("scan-when-today", &[("time", time)])
    } else {
        let date = match lang {
            Lang::Fr => at.format("%d/%m/%Y").to_string(),
            Lang::En => at.format("%Y-%m-%d").to_string(),
        };
        lang.text_with("scan-when-day", &[("date", date), ("time", time)])
    }
}

fn answer(lang: Lang, zone: chrono_tz::Tz, campaign: &Campaign, outcome: &ScanOutcome) -> Answer {
    match outcome {
        ScanOutcome::Collected { allotment } => Answer {
            kind: "collected",
            heading: lang.text("scan-collected"),
            detail: Some(format!("{allotment} × {}", campaign.item)),
        },
        ScanOutcome::AlreadyCollected { at, place } => {
            let when = when_text(lang, zone, *at);
            let heading = match place {
                CollectedPlace::ThisDesk => {
                    lang.text_with("scan-already-this-desk", &[("when", when)])
                }
                CollectedPlace::ThisSite => {
                    lang.text_with("scan-already-this-site", &[("when", when)])
                }
                CollectedPlace::OtherSite(Some(site)) => lang.text_with(
                    "scan-already-other-site",
                    &[("when", when), ("site", site.clone())],
                ),
                CollectedPlace::OtherSite(None) => {
                    lang.text_with("scan-already-elsewhere", &[("when", when)])
                }
            };
            Answer {
                kind: "already",
                heading,
                detail: None,
            }
        }
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

/// The scanning page, with its next form token; the only page allowed the camera.
fn render(
    agent: &AgentSession,
    page: &Page,
    campaign: &Campaign,
    site: &Site,
    token: &str,
    status: StatusCode,
    answer: Option<Answer>,
) -> HttpResponse {
    let mut context = agent.context(page);
    context.insert("campaign", campaign);
    context.insert("site", site);
    context.insert("scan_token", token);
    if let Some(answer) = answer {
        context.insert("answer", &answer);
    }
    let mut response = page.render(status, "agent_scan.html", &context);
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("permissions-policy"),
        actix_web::http::header::HeaderValue::from_static(PERMISSIONS_POLICY_CAMERA),
    );
    response
}
