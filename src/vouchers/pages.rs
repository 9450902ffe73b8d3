//! The agent pages of voucher campaigns: the list and creation, one campaign with its
//! sites and figures, closing it, importing households (answered with the letters or
//! the mail-merge file), lost letters, and vouchers placed in a citizen's vault.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::VoucherError;
use super::campaigns::{
    self, Campaign, CampaignCounts, CampaignInput, Site, SiteInput, parse_allotment,
};
use super::households::{ADDRESS_LINES, Household, HouseholdsError, parse_households};
use super::issue::{self, Existing, IssuedCode, VaultVoucher};
use super::print::{self, LetterFormat};
use crate::agents::Role;
use crate::bulk::manifest::LineError;
use crate::state::AppState;
use crate::vault::metadata::Contact;
use crate::vault::{DeliveryMetadata, DocumentError, MetadataError, Recipient};
use crate::web::agent_session::AgentSession;
use crate::web::page::{Lang, Page, PageError, see_other};

/// Who runs campaigns.
const CAMPAIGN_ROLES: &[Role] = &[Role::Admin, Role::Agent];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/vouchers", web::get().to(list))
        .route("/agent/vouchers", web::post().to(create))
        .route("/agent/vouchers/{id}", web::get().to(detail))
        .route("/agent/vouchers/{id}/sites", web::post().to(add_site))
        .route("/agent/vouchers/{id}/close", web::post().to(close))
        .route("/agent/vouchers/{id}/households", web::post().to(import))
        .route("/agent/vouchers/{id}/lost", web::post().to(lost_letter))
        .route("/agent/vouchers/{id}/vault", web::post().to(to_vault));
}

/// A campaign line of the list.
#[derive(Serialize)]
struct CampaignLine {
    campaign: Campaign,
    counts: CampaignCounts,
}

async fn list(
    agent: AgentSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    render_list(
        &agent,
        &page,
        &state,
        StatusCode::OK,
        &CampaignInput::default(),
        None,
    )
    .await
}

async fn render_list(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    status: StatusCode,
    fields: &CampaignInput,
    error: Option<&'static str>,
) -> Result<HttpResponse, PageError> {
    let tenant_id = agent.agent.tenant_id.clone();
    let lines = state
        .db
        .read(
            move |conn| -> Result<Vec<CampaignLine>, crate::db::DbError> {
                campaigns::list_campaigns(conn, &tenant_id)?
                    .into_iter()
                    .map(|campaign| {
                        let counts = campaigns::campaign_counts(conn, &campaign.id)?;
                        Ok(CampaignLine { campaign, counts })
                    })
                    .collect()
            },
        )
        .await?;
    let mut context = agent.context(page);
    context.insert("campaigns", &lines);
    context.insert("fields", fields);
    if let Some(error) = error {
        context.insert("error", error);
    }
    Ok(page.render(status, "agent_campaigns.html", &context))
}

#[derive(Deserialize)]
struct CampaignForm {
    csrf: String,
    #[serde(flatten)]
    fields: CampaignInput,
}

async fn create(
    agent: AgentSession,
    page: Page,
    form: web::Form<CampaignForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let (who, fields) = (agent.agent.clone(), form.fields.clone());
    let created = state
        .db
        .write(move |conn| campaigns::create_campaign(conn, &who, &fields))
        .await;
    match created {
        Ok(id) => Ok(see_other(&format!("/agent/vouchers/{id}"))),
        Err(error) => {
            let key = error_key(&error).ok_or_else(|| PageError::internal(page.lang, &error))?;
            render_list(
                &agent,
                &page,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.fields,
                Some(key),
            )
            .await
        }
    }
}

/// What the campaign page shows after an action, from `?done=`.
#[derive(Deserialize)]
struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// What the campaign page may show besides the campaign.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    lines: Vec<LineError>,
    done: Option<&'static str>,
}

async fn detail(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    query: web::Query<DoneQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    let done = match query.done.as_deref() {
        Some("site") => Some("voucher-done-site"),
        Some("closed") => Some("voucher-done-closed"),
        Some("revoked") => Some("voucher-done-revoked"),
        Some("vault") => Some("voucher-done-vault"),
        _ => None,
    };
    let outcome = Outcome {
        done,
        ..Outcome::default()
    };
    render_detail(&agent, &page, &state, &path, StatusCode::OK, outcome).await
}

async fn render_detail(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    campaign_id: &str,
    status: StatusCode,
    outcome: Outcome,
) -> Result<HttpResponse, PageError> {
    let (campaign, sites, counts) = load_campaign(agent, page, state, campaign_id).await?;
    let mut context = agent.context(page);
    context.insert("campaign", &campaign);
    context.insert("sites", &sites);
    context.insert("counts", &counts);
    context.insert("address_lines", &(1..=ADDRESS_LINES).collect::<Vec<_>>());
    context.insert("lines", &outcome.lines);
    if let Some(error) = outcome.error {
        context.insert("error", &error);
    }
    if let Some(done) = outcome.done {
        context.insert("done", done);
    }
    Ok(page.render(status, "agent_campaign.html", &context))
}

/// The campaign (of the agent's tenant: another's is not found), its sites and figures.
async fn load_campaign(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    campaign_id: &str,
) -> Result<(Campaign, Vec<Site>, CampaignCounts), PageError> {
    let (tenant_id, id) = (agent.agent.tenant_id.clone(), campaign_id.to_owned());
    state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            let Some(campaign) = campaigns::find_campaign(conn, &tenant_id, &id)? else {
                return Ok(None);
            };
            let sites = campaigns::list_sites(conn, &campaign.id)?;
            let counts = campaigns::campaign_counts(conn, &campaign.id)?;
            Ok(Some((campaign, sites, counts)))
        })
        .await?
        .ok_or_else(|| PageError::not_found(page.lang))
}

/// The locale key of a refusal an agent can act on; `None` for internal failures.
fn error_key(error: &VoucherError) -> Option<&'static str> {
    Some(match error {
        VoucherError::Field("name") => "voucher-error-name",
        VoucherError::Field("item") => "voucher-error-item",
        VoucherError::Field("default_allotment" | "allotment") => "voucher-error-allotment",
        VoucherError::Field("starts_on" | "ends_on") => "voucher-error-dates",
        VoucherError::Field("site_name" | "site_address" | "site_hours") => "voucher-error-site",
        VoucherError::Field("reference") => "voucher-error-reference",
        VoucherError::Field("recipient") => "voucher-error-recipient",
        VoucherError::Field("file") => "voucher-error-file",
        VoucherError::Field("address") => "voucher-error-address",
        VoucherError::Field("contact") => "voucher-error-contact",
        VoucherError::Field(_) => "voucher-error-field",
        VoucherError::CampaignClosed => "voucher-error-closed",
        VoucherError::SiteExists => "voucher-error-site-exists",
        VoucherError::UnknownHousehold => "voucher-error-unknown-household",
        VoucherError::HouseholdHasCode => "voucher-error-household-has-code",
        VoucherError::AlreadyCollected { .. } => "voucher-error-already-collected",
        VoucherError::Lines(_) => "voucher-error-lines",
        VoucherError::Conflict => "voucher-error-conflict",
        VoucherError::Database(_) | VoucherError::Internal(_) => return None,
    })
}

/// A locale key and its arguments, in the page's language.
fn in_words(lang: Lang, (key, args): (&'static str, Vec<(&'static str, String)>)) -> String {
    lang.text_with(key, &args)
}

/// The campaign page again, with what is wrong with the whole households file.
async fn refused_file(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    campaign_id: &str,
    error: &HouseholdsError,
) -> Result<HttpResponse, PageError> {
    let lines = vec![LineError {
        line: 0,
        reason: in_words(page.lang, error.message()),
    }];
    let message = page.lang.text("voucher-error-lines");
    render_refusal(agent, page, state, campaign_id, message, lines).await
}

/// The campaign page again, with the refusal explained.
async fn refused(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    campaign_id: &str,
    error: VoucherError,
) -> Result<HttpResponse, PageError> {
    let key = error_key(&error).ok_or_else(|| PageError::internal(page.lang, &error))?;
    let mut message = page.lang.text(key);
    if let VoucherError::AlreadyCollected { at, site } = &error {
        message = format!(
            "{message} {}",
            collected_when_where(page.lang, state.config.tenant.time_zone, *at, site)
        );
    }
    let lines = match error {
        VoucherError::Lines(lines) => lines
            .iter()
            .map(|refused| LineError {
                line: refused.line,
                reason: in_words(page.lang, refused.problem.message()),
            })
            .collect(),
        _ => Vec::new(),
    };
    render_refusal(agent, page, state, campaign_id, message, lines).await
}

/// The campaign page with a refusal (422) and the lines it names.
async fn render_refusal(
    agent: &AgentSession,
    page: &Page,
    state: &AppState,
    campaign_id: &str,
    message: String,
    lines: Vec<LineError>,
) -> Result<HttpResponse, PageError> {
    let outcome = Outcome {
        error: Some(message),
        lines,
        done: None,
    };
    render_detail(
        agent,
        page,
        state,
        campaign_id,
        StatusCode::UNPROCESSABLE_ENTITY,
        outcome,
    )
    .await
}

/// "on 12/05/2020 at 10:42, Salle des fêtes".
pub(crate) fn collected_when_where(
    lang: Lang,
    zone: chrono_tz::Tz,
    at: chrono::NaiveDateTime,
    site: &Option<String>,
) -> String {
    // The database keeps UTC; people read the commune's time.
    let at = crate::local_time::local_time(at, zone);
    let when = match lang {
        Lang::Fr => at.format("%d/%m/%Y %H:%M").to_string(),
        Lang::En => at.format("%Y-%m-%d %H:%M").to_string(),
    };
    match site {
        Some(site) => format!("{} {when} — {site}", lang.text("voucher-collected-on")),
        None => format!("{} {when}", lang.text("voucher-collected-on")),
    }
}

#[derive(Deserialize)]
struct SiteForm {
    csrf: String,
    #[serde(flatten)]
    fields: SiteInput,
}

async fn add_site(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<SiteForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let (campaign, _, _) = load_campaign(&agent, &page, &state, &path).await?;
    let (who, fields, id) = (
        agent.agent.clone(),
        form.fields.clone(),
        campaign.id.clone(),
    );
    let added = state
        .db
        .write(move |conn| campaigns::add_site(conn, &who, &campaign, &fields))
        .await;
    match added {
        Ok(_) => Ok(see_other(&format!("/agent/vouchers/{id}?done=site"))),
        Err(error) => refused(&agent, &page, &state, &id, error).await,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn close(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let (campaign, _, _) = load_campaign(&agent, &page, &state, &path).await?;
    let (who, id) = (agent.agent.clone(), campaign.id.clone());
    state
        .db
        .write(move |conn| campaigns::close_campaign(conn, &who, &id))
        .await?;
    Ok(see_other(&format!(
        "/agent/vouchers/{}?done=closed",
        campaign.id
    )))
}

/// Most form fields of the households upload before the file.
const MAX_FIELDS: usize = 8;
const MAX_FIELD_BYTES: usize = 1024;

/// The households upload: `csrf`, `format` (letters or mail-merge), `replace`, then
/// the file. The answer is the file to print or send to the postal operator.
async fn import(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    mut body: Multipart,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    let lang = page.lang;
    let (campaign, sites, _) = load_campaign(&agent, &page, &state, &path).await?;
    let limits = state.config.limits.manifest();
    let mut csrf_checked = false;
    let mut format = LetterFormat::Pdf;
    let mut existing = Existing::Refuse;
    let mut file: Option<Vec<u8>> = None;
    let mut fields = 0;
    while let Some(field) = body.next().await {
        let mut field = field.map_err(|error| bad_request(lang, error))?;
        let name = field.name().unwrap_or_default().to_owned();
        let limit = if name == "file" {
            limits.max_bytes
        } else {
            MAX_FIELD_BYTES
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|error| bad_request(lang, error))?;
            if bytes.len() + chunk.len() > limit {
                let error = HouseholdsError::TooLarge { limit };
                return refused_file(&agent, &page, &state, &campaign.id, &error).await;
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "csrf" => {
                agent.check_csrf(&String::from_utf8_lossy(&bytes))?;
                csrf_checked = true;
            }
            "format" => format = LetterFormat::parse(&String::from_utf8_lossy(&bytes)),
            "replace" => existing = Existing::Replace,
            "file" => file = Some(bytes),
            _ => {}
        }
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(bad_request(lang, "too many fields"));
        }
    }
    if !csrf_checked {
        return Err(PageError::csrf(lang));
    }
    let households =
        match file.map(|bytes| parse_households(&bytes, campaign.default_allotment, limits)) {
            Some(Ok(households)) => households,
            Some(Err(HouseholdsError::Lines(lines))) => {
                return refused(
                    &agent,
                    &page,
                    &state,
                    &campaign.id,
                    VoucherError::Lines(lines),
                )
                .await;
            }
            Some(Err(whole)) => {
                return refused_file(&agent, &page, &state, &campaign.id, &whole).await;
            }
            None => {
                return refused(
                    &agent,
                    &page,
                    &state,
                    &campaign.id,
                    VoucherError::Field("file"),
                )
                .await;
            }
        };
    let (who, keys, for_issue) = (agent.agent.clone(), state.keys.clone(), campaign.clone());
    let households = std::sync::Arc::new(households);
    let shared = households.clone();
    let issued = state
        .db
        .write(move |conn| {
            issue::issue_for_households(conn, &keys.hasher, &who, &for_issue, &shared, existing)
        })
        .await;
    match issued {
        Ok(codes) => {
            letters_response(&state, lang, &campaign, &sites, &households, codes, format).await
        }
        Err(error) => refused(&agent, &page, &state, &campaign.id, error).await,
    }
}

/// The letters (or the mail-merge file) of the codes just issued: produced for this
/// answer and kept nowhere.
async fn letters_response(
    state: &AppState,
    lang: Lang,
    campaign: &Campaign,
    sites: &[Site],
    households: &[Household],
    codes: Vec<IssuedCode>,
    format: LetterFormat,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_name(state, &campaign.tenant_id).await?;
    let (campaign, sites, households) = (campaign.clone(), sites.to_vec(), households.to_vec());
    let rendered = crate::telemetry::spawn_blocking(move || {
        print::render(
            lang,
            &tenant,
            &campaign,
            &sites,
            &households,
            &codes,
            format,
        )
    })
    .await
    .map_err(|error| PageError::internal(lang, error))?
    .map_err(|error| PageError::internal(lang, error))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, rendered.content_type))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", rendered.file_name),
        ))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(rendered.bytes))
}

async fn tenant_name(state: &AppState, tenant_id: &str) -> Result<String, PageError> {
    let id = tenant_id.to_owned();
    Ok(state
        .db
        .read(move |conn| crate::tenants::tenant_by_id(conn, &id))
        .await?
        .map(|tenant| tenant.name)
        .unwrap_or_default())
}

fn bad_request(lang: Lang, cause: impl std::fmt::Display) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        lang,
        "error-bad-request-title",
        "error-bad-request-body",
    )
    .with_cause(cause)
}

#[derive(Deserialize)]
struct LostLetterForm {
    csrf: String,
    #[serde(default)]
    reference: String,
    /// `replace` (a new letter) or `revoke` (no new code).
    #[serde(default)]
    action: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    address_1: String,
    #[serde(default)]
    address_2: String,
    #[serde(default)]
    address_3: String,
    #[serde(default)]
    address_4: String,
    #[serde(default)]
    address_5: String,
    #[serde(default)]
    address_6: String,
}

impl LostLetterForm {
    fn address(&self) -> Vec<String> {
        [
            &self.address_1,
            &self.address_2,
            &self.address_3,
            &self.address_4,
            &self.address_5,
            &self.address_6,
        ]
        .into_iter()
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
    }
}

/// A lost letter: revoke the household's code and, usually, print a replacement.
async fn lost_letter(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<LostLetterForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let lang = page.lang;
    let (campaign, sites, _) = load_campaign(&agent, &page, &state, &path).await?;
    let reference = form.reference.trim().to_owned();
    if reference.is_empty() {
        return refused(
            &agent,
            &page,
            &state,
            &campaign.id,
            VoucherError::Field("reference"),
        )
        .await;
    }
    let replace = form.action != "revoke";
    if replace && form.address().is_empty() {
        let error = VoucherError::Field("address");
        return refused(&agent, &page, &state, &campaign.id, error).await;
    }
    let (who, keys, for_revoke, lookup) = (
        agent.agent.clone(),
        state.keys.clone(),
        campaign.clone(),
        reference.clone(),
    );
    let revoked = state
        .db
        .write(move |conn| {
            issue::revoke_household(conn, &keys.hasher, &who, &for_revoke, &lookup, replace)
        })
        .await;
    match revoked {
        Ok(Some((code, allotment))) => {
            let household = Household {
                line: 2,
                reference,
                allotment,
                address: form.address(),
            };
            let codes = vec![IssuedCode { line: 2, code }];
            let format = LetterFormat::parse(&form.format);
            letters_response(&state, lang, &campaign, &sites, &[household], codes, format).await
        }
        Ok(None) => Ok(see_other(&format!(
            "/agent/vouchers/{}?done=revoked",
            campaign.id
        ))),
        Err(error) => refused(&agent, &page, &state, &campaign.id, error).await,
    }
}

#[derive(Deserialize)]
struct VaultForm {
    csrf: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    allotment: String,
    #[serde(default)]
    replace: Option<String>,
    #[serde(default)]
    recipient_kind: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    given_names: String,
    #[serde(default)]
    birthdate: String,
    #[serde(default)]
    birthplace: String,
    #[serde(default)]
    nrn: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
}

impl VaultForm {
    /// The recipient and contact through the delivery metadata parser, so both name a
    /// citizen (and where to tell them) the same way.
    fn addressee(&self) -> Result<(Recipient, Option<Contact>), VoucherError> {
        let recipient = if self.recipient_kind == "nrn" {
            serde_json::json!({ "nrn": self.nrn })
        } else {
            serde_json::json!({ "pivot": {
                "family_name": self.family_name,
                "given_names": self.given_names,
                "birthdate": self.birthdate.trim(),
                "birthplace": self.birthplace.trim(),
            }})
        };
        let optional = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let (email, phone) = (optional(&self.email), optional(&self.phone));
        let contact = (email.is_some() || phone.is_some())
            .then(|| serde_json::json!({ "email": email, "phone": phone }));
        let raw = serde_json::json!({
            "recipient": recipient,
            "title": "voucher",
            "category": "voucher",
            "contact": contact,
        })
        .to_string();
        match DeliveryMetadata::parse(raw.as_bytes()) {
            Ok(metadata) => Ok((metadata.recipient, metadata.contact)),
            Err(MetadataError::Recipient(_)) => Err(VoucherError::Field("recipient")),
            Err(_) => Err(VoucherError::Field("contact")),
        }
    }
}

/// Places a voucher in a citizen's vault (found by pivot identity or NRN).
async fn to_vault(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    form: web::Form<VaultForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(CAMPAIGN_ROLES)?;
    agent.check_csrf(&form.csrf)?;
    let lang = page.lang;
    let (campaign, _, _) = load_campaign(&agent, &page, &state, &path).await?;
    let id = campaign.id.clone();
    let reference = form.reference.trim().to_owned();
    let allotment = if form.allotment.trim().is_empty() {
        Some(campaign.default_allotment)
    } else {
        parse_allotment(&form.allotment)
    };
    let checked = match (reference.is_empty(), allotment, form.addressee()) {
        (true, _, _) => Err(VoucherError::Field("reference")),
        (_, None, _) => Err(VoucherError::Field("allotment")),
        (_, _, Err(error)) => Err(error),
        (false, Some(allotment), Ok(addressee)) => Ok((allotment, addressee)),
    };
    let (allotment, (recipient, contact)) = match checked {
        Ok(checked) => checked,
        Err(error) => return refused(&agent, &page, &state, &id, error).await,
    };
    let citizen = match crate::vault::resolve_recipient(&state, &recipient).await {
        Ok((citizen, _)) => citizen,
        Err(DocumentError::UnknownRecipient) => {
            let error = VoucherError::Field("recipient");
            return refused(&agent, &page, &state, &id, error).await;
        }
        Err(error) => return Err(PageError::internal(lang, error)),
    };
    let existing = if form.replace.is_some() {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    // The citizen is told that something is waiting, in the same words as for a
    // document: the notice names neither the campaign nor the voucher.
    let targets = crate::notify::notice_targets(&state, &citizen, contact.as_ref())
        .await
        .map_err(|error| PageError::internal(lang, error))?;
    let coalesce = std::time::Duration::from_secs(state.config.notify.coalesce_seconds);
    let (who, keys) = (agent.agent.clone(), state.keys.clone());
    let placed = state
        .db
        .write(move |conn| {
            let voucher = VaultVoucher {
                citizen: &citizen,
                household_reference: &reference,
                allotment,
            };
            issue::issue_to_vault(conn, &keys.hasher, &who, &campaign, &voucher, existing)?;
            crate::notify::enqueue_notices(conn, &who.tenant_id, &citizen.id, &targets, coalesce)?;
            Ok(())
        })
        .await;
    match placed {
        Ok(()) => Ok(see_other(&format!("/agent/vouchers/{id}?done=vault"))),
        Err(error) => refused(&agent, &page, &state, &id, error).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vouchers::households::LineProblem;

    /// Every refusal of a households file reads as a sentence in both languages, its
    /// arguments in place.
    #[test]
    fn households_refusals_are_worded_in_both_languages() {
        let whole = [
            HouseholdsError::Empty,
            HouseholdsError::TooLarge { limit: 10 },
            HouseholdsError::TooManyLines { limit: 10 },
            HouseholdsError::MissingColumns("reference".into()),
            HouseholdsError::DuplicateColumn("reference".into()),
            HouseholdsError::Malformed("bad quote".into()),
            HouseholdsError::Lines(Vec::new()),
        ];
        let lines = [
            LineProblem::MissingReference,
            LineProblem::LongReference,
            LineProblem::SameHousehold { first: 2 },
            LineProblem::BadAllotment,
            LineProblem::MissingAddress,
            LineProblem::LongAddress { line: 3 },
            LineProblem::HasCode,
            LineProblem::HasCollected,
        ];
        let messages = whole
            .iter()
            .map(HouseholdsError::message)
            .chain(lines.iter().map(LineProblem::message));
        for (key, args) in messages {
            for lang in [Lang::Fr, Lang::En] {
                let text = lang.text_with(key, &args);
                let missing = lang.text_with("households-no-such-key", &[]);
                assert!(text != missing && !text.contains('{'), "{key}: {text}");
                for (_, value) in &args {
                    assert!(text.contains(value.as_str()), "{key}: {text}");
                }
            }
        }
        assert_eq!(
            Lang::Fr.text_with(
                "households-line-long-address",
                &[("line", "3".into()), ("max", "100".into())]
            ),
            "address_3 : 100 caractères imprimables au plus."
        );
    }
}
