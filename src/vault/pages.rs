//! The citizen's pages: the list of their documents, a document's download (streamed
//! and decrypted), and their notification settings.

use actix_web::http::StatusCode;
use actix_web::http::header::{
    CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::metadata::{served_content_type, without_bidi_controls};
use super::{DocumentError, DocumentId, SealedMetadata, open_document};
use crate::citizens::{self, Channel, NotificationContacts, VaultAccess};
use crate::crypto::unseal;
use crate::db::schema::{departments, documents, tenants};
use crate::state::AppState;
use crate::vouchers::pages::collected_when_where;
use crate::vouchers::vault::{HeldState, HeldVoucher, held_vouchers};
use crate::web::page::{Lang, Page, PageError};
use crate::web::qr::qr_svg;
use crate::web::session::CitizenSession;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/vault", web::get().to(vault_list))
        .route("/vault/documents/{id}", web::get().to(download))
        .route("/vault/settings", web::get().to(settings))
        .route("/vault/settings", web::post().to(save_settings));
}

/// One line of the list, as the template shows it.
#[derive(Serialize)]
struct DocumentLine {
    id: String,
    title: String,
    file_name: String,
    sender: String,
    department: Option<String>,
    category: String,
    date: String,
    date_iso: String,
    size: String,
    is_new: bool,
    /// Set when the commune withdrew the document: its title is gone, only this stays.
    withdrawn: Option<Withdrawal>,
    /// In a locked vault: the title and file name stay sealed (base64url) for the page
    /// to open; `title` and `file_name` are empty.
    locked: bool,
    sealed_metadata: Option<String>,
    /// Encrypted by the sender before it left their machine, not by the server.
    end_to_end: bool,
    /// Sealed to the key of a vault started over: nobody can open it any more.
    unrecoverable: bool,
}

#[derive(Serialize)]
struct Withdrawal {
    date: String,
    date_iso: String,
    reason: String,
}

type ListRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
    Vec<u8>,
    Option<chrono::NaiveDateTime>,
    Option<String>,
    String,
    Option<chrono::NaiveDateTime>,
);

async fn vault_list(
    citizen: CitizenSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let (citizen_id, keys) = (citizen.citizen_id().to_owned(), state.keys.clone());
    let (locked, lines) = state
        .db
        .read(
            move |conn| -> Result<(bool, Vec<DocumentLine>), PageError> {
                let access = citizens::vault_access(conn, &keys.master, &citizen_id)
                    .map_err(|error| PageError::internal(lang, error))?;
                let locked = matches!(access, VaultAccess::Locked);
                let rows: Vec<ListRow> = documents::table
                    .inner_join(tenants::table)
                    .left_join(
                        departments::table
                            .on(documents::department_id.eq(departments::id.nullable())),
                    )
                    .filter(documents::citizen_id.eq(&citizen_id))
                    .order(documents::created_at.desc())
                    .select((
                        documents::id,
                        tenants::name,
                        departments::name.nullable(),
                        documents::category,
                        documents::plaintext_size,
                        documents::created_at,
                        documents::first_opened_at,
                        documents::sealed_metadata,
                        documents::withdrawn_at,
                        documents::withdrawal_reason,
                        documents::encrypted_by,
                        documents::unrecoverable_at,
                    ))
                    .load(conn)?;
                if rows.is_empty() {
                    return Ok((locked, Vec::new()));
                }
                // A locked vault's key is not here: its titles go to the page sealed.
                let identity = match access {
                    VaultAccess::Escrowed(identity) => Some(identity),
                    VaultAccess::Locked => None,
                    VaultAccess::Unknown => return Err(PageError::session_expired(lang)),
                };
                let lines = rows
                    .into_iter()
                    .map(|row| {
                        let (
                            id,
                            sender,
                            department,
                            category,
                            size,
                            created_at,
                            opened,
                            sealed,
                            withdrawn_at,
                            reason,
                            encrypted_by,
                            unrecoverable_at,
                        ) = row;
                        // Sealed to the key of a vault started over: nothing opens it.
                        let unrecoverable = unrecoverable_at.is_some();
                        let withdrawn = withdrawn_at.map(|at| Withdrawal {
                            date: format_date(lang, at),
                            date_iso: at.and_utc().to_rfc3339(),
                            reason: reason.unwrap_or_default(),
                        });
                        // A withdrawn document's title and file name were erased.
                        let sealed_metadata = (locked && withdrawn.is_none() && !unrecoverable)
                            .then(|| crate::crypto::base64url(&sealed));
                        let metadata = match (&withdrawn, &identity) {
                            _ if unrecoverable => None,
                            (Some(_), _) | (None, None) => None,
                            (None, Some(identity)) => {
                                let plain = unseal(identity, &sealed)
                                    .map_err(|error| PageError::internal(lang, error))?;
                                Some(
                                    serde_json::from_slice::<SealedMetadata>(&plain)
                                        .map_err(|error| PageError::internal(lang, error))?,
                                )
                            }
                        };
                        // Names delivered before bidirectional controls were cleaned on the
                        // way in are cleaned on the way out.
                        let (title, file_name) = metadata
                            .map(|metadata| {
                                (
                                    without_bidi_controls(&metadata.title),
                                    without_bidi_controls(&metadata.file_name),
                                )
                            })
                            .unwrap_or_default();
                        Ok(DocumentLine {
                            id,
                            title,
                            file_name,
                            sender,
                            department,
                            category,
                            date: format_date(lang, created_at),
                            date_iso: created_at.and_utc().to_rfc3339(),
                            size: format_size(lang, size),
                            is_new: opened.is_none() && withdrawn.is_none() && !unrecoverable,
                            withdrawn,
                            locked,
                            sealed_metadata,
                            end_to_end: encrypted_by == super::ENCRYPTED_BY_SENDER,
                            unrecoverable,
                        })
                    })
                    .collect::<Result<Vec<_>, PageError>>()?;
                Ok((locked, lines))
            },
        )
        .await?;
    let (citizen_id, keys) = (citizen.citizen_id().to_owned(), state.keys.clone());
    let held = state
        .db
        .read(move |conn| held_vouchers(conn, &keys.master, &citizen_id))
        .await
        .map_err(|error| PageError::internal(lang, error))?;
    let (to_collect, done) = voucher_views(lang, state.config.tenant.time_zone, held);
    // A withdrawn document stays listed (with why) but no longer waits for anyone.
    let waiting = lines.iter().filter(|line| line.withdrawn.is_none()).count();
    let mut context = citizen.context(&page);
    context.insert("documents", &lines);
    context.insert("waiting", &waiting);
    context.insert("vouchers_to_collect", &to_collect);
    context.insert("vouchers_done", &done);
    context.insert("vault_locked", &locked);
    crate::web::static_files::vault_script_integrity().insert_into(&mut context);
    Ok(page.render(StatusCode::OK, "vault.html", &context))
}

/// A voucher still to collect, as the vault page shows it.
#[derive(Serialize)]
struct VoucherToCollect {
    campaign: String,
    commune: String,
    item: String,
    allotment: i32,
    dates: String,
    sites: Vec<crate::vouchers::campaigns::Site>,
    code: String,
    qr_svg: String,
    /// In a locked vault: the code sealed for the page to open (base64url); `code` and
    /// `qr_svg` are empty.
    sealed_code: Option<String>,
}

/// A voucher collected (or whose campaign closed): one line.
#[derive(Serialize)]
struct VoucherDone {
    campaign: String,
    commune: String,
    state: String,
}

/// Splits the citizen's vouchers into those to collect (with their QR code) and the
/// others, which no longer show a code.
fn voucher_views(
    lang: Lang,
    zone: chrono_tz::Tz,
    held: Vec<HeldVoucher>,
) -> (Vec<VoucherToCollect>, Vec<VoucherDone>) {
    let day = |date: chrono::NaiveDate| match lang {
        Lang::Fr => date.format("%d/%m/%Y").to_string(),
        Lang::En => date.format("%Y-%m-%d").to_string(),
    };
    let mut to_collect = Vec::new();
    let mut done = Vec::new();
    for voucher in held {
        match voucher.state {
            HeldState::ToCollect(code) => to_collect.push(VoucherToCollect {
                qr_svg: qr_svg(code.as_str(), &lang.text("vault-voucher-qr-label"))
                    .unwrap_or_default(),
                code: code.grouped(),
                dates: format!("{} – {}", day(voucher.starts_on), day(voucher.ends_on)),
                campaign: voucher.campaign,
                commune: voucher.commune,
                item: voucher.item,
                allotment: voucher.allotment,
                sites: voucher.sites,
                sealed_code: None,
            }),
            HeldState::ToCollectSealed(sealed) => to_collect.push(VoucherToCollect {
                qr_svg: String::new(),
                code: String::new(),
                sealed_code: Some(crate::crypto::base64url(&sealed)),
                dates: format!("{} – {}", day(voucher.starts_on), day(voucher.ends_on)),
                campaign: voucher.campaign,
                commune: voucher.commune,
                item: voucher.item,
                allotment: voucher.allotment,
                sites: voucher.sites,
            }),
            HeldState::Collected { at, site } => done.push(VoucherDone {
                state: collected_when_where(lang, zone, at, &site),
                campaign: voucher.campaign,
                commune: voucher.commune,
            }),
            HeldState::CodeLost => done.push(VoucherDone {
                state: lang.text("vault-voucher-code-lost"),
                campaign: voucher.campaign,
                commune: voucher.commune,
            }),
            HeldState::Closed => done.push(VoucherDone {
                state: lang.text("vault-voucher-closed"),
                campaign: voucher.campaign,
                commune: voucher.commune,
            }),
        }
    }
    (to_collect, done)
}

async fn download(
    citizen: CitizenSession,
    page: Page,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let lang = page.lang;
    let id = DocumentId::parse(&path).ok_or_else(|| PageError::not_found(lang))?;
    let opened = open_document(&state, citizen.citizen_id(), &id)
        .await
        .map_err(|error| match error {
            DocumentError::NotFound => PageError::not_found(lang),
            other => PageError::internal(lang, other),
        })?;
    // Whatever type the agent declared, only an inert one reaches the browser, always
    // as a download it may not sniff, and sandboxed should it ever be shown.
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, served_content_type(&opened.content_type)))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox; frame-ancestors 'none'",
        ))
        .insert_header((
            CONTENT_DISPOSITION,
            content_disposition(&opened.metadata.file_name),
        ))
        // The length is the plaintext's: if decryption fails midway the transfer is
        // cut short and the browser reports it, instead of saving a partial file.
        .no_chunking(u64::try_from(opened.size).unwrap_or_default())
        .streaming(opened.content))
}

/// `attachment` with an ASCII fallback and the exact name in RFC 5987 form, without
/// the bidirectional controls a name delivered before they were cleaned may hold.
fn content_disposition(file_name: &str) -> String {
    let file_name = &without_bidi_controls(file_name);
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

pub(super) fn format_date(lang: Lang, at: chrono::NaiveDateTime) -> String {
    match lang {
        Lang::Fr => at.format("%d/%m/%Y").to_string(),
        Lang::En => at.format("%Y-%m-%d").to_string(),
    }
}

pub(super) fn format_size(lang: Lang, bytes: i64) -> String {
    let (value, unit) = match bytes {
        b if b < 1024 => {
            return format!("{b} {}", if lang == Lang::Fr { "octets" } else { "bytes" });
        }
        b if b < 1024 * 1024 => (
            b as f64 / 1024.0,
            if lang == Lang::Fr { "Ko" } else { "KB" },
        ),
        b => (
            b as f64 / (1024.0 * 1024.0),
            if lang == Lang::Fr { "Mo" } else { "MB" },
        ),
    };
    let text = format!("{value:.1}");
    match lang {
        Lang::Fr => format!("{} {unit}", text.replace('.', ",")),
        Lang::En => format!("{text} {unit}"),
    }
}

async fn settings(
    citizen: CitizenSession,
    page: Page,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (citizen_id, keys, lang) = (
        citizen.citizen_id().to_owned(),
        state.keys.clone(),
        page.lang,
    );
    let contacts = state
        .db
        .read(move |conn| {
            citizens::notification_contacts(conn, keys.server_keys(), &citizen_id)
                .map_err(|error| PageError::internal(lang, error))
        })
        .await?;
    Ok(render_settings(
        &citizen,
        &page,
        &contacts,
        StatusCode::OK,
        None,
        false,
    ))
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    channel: String,
}

async fn save_settings(
    citizen: CitizenSession,
    page: Page,
    form: web::Form<SettingsForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    citizen.check_csrf(&form.csrf)?;
    let lang = page.lang;
    let typed = NotificationContacts {
        email: Some(form.email.trim().to_owned()).filter(|email| !email.is_empty()),
        phone: Some(form.phone.trim().to_owned()).filter(|phone| !phone.is_empty()),
        channel: Channel::parse(&form.channel).unwrap_or_default(),
    };
    let invalid = |key: &str| {
        Ok(render_settings(
            &citizen,
            &page,
            &typed,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(lang.text(key)),
            false,
        ))
    };
    let email = match &typed.email {
        Some(email) if !email_address::EmailAddress::is_valid(email) => {
            return invalid("settings-invalid-email");
        }
        other => other.clone(),
    };
    let phone = match &typed.phone {
        Some(phone) => match super::metadata::normalise_phone(phone) {
            Some(phone) => Some(phone),
            None => return invalid("settings-invalid-phone"),
        },
        None => None,
    };
    let needs_email = matches!(typed.channel, Channel::Email | Channel::Both);
    let needs_phone = matches!(typed.channel, Channel::Sms | Channel::Both);
    if (needs_email && email.is_none()) || (needs_phone && phone.is_none()) {
        return invalid("settings-missing-contact");
    }
    let contacts = NotificationContacts {
        email,
        phone,
        channel: typed.channel,
    };
    let (citizen_id, saved) = (citizen.citizen_id().to_owned(), contacts.clone());
    let contacts_key = state.keys.contacts.recipient();
    state
        .db
        .write(move |conn| {
            citizens::save_notification_contacts(conn, &contacts_key, &citizen_id, &saved)
                .map_err(|error| PageError::internal(lang, error))
        })
        .await?;
    Ok(render_settings(
        &citizen,
        &page,
        &contacts,
        StatusCode::OK,
        None,
        true,
    ))
}

fn render_settings(
    citizen: &CitizenSession,
    page: &Page,
    contacts: &NotificationContacts,
    status: StatusCode,
    error: Option<String>,
    saved: bool,
) -> HttpResponse {
    let mut context = citizen.context(page);
    context.insert("email", contacts.email.as_deref().unwrap_or_default());
    context.insert("phone", contacts.phone.as_deref().unwrap_or_default());
    context.insert("channel", contacts.channel.as_str());
    context.insert("channels", &Channel::ALL.map(Channel::as_str).to_vec());
    context.insert("error", &error);
    context.insert("saved", &saved);
    page.render(status, "settings.html", &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_safe_and_exact() {
        assert_eq!(
            content_disposition("avis taxe 2026.pdf"),
            "attachment; filename=\"avis taxe 2026.pdf\"; filename*=UTF-8''avis%20taxe%202026.pdf"
        );
        let header = content_disposition("Attestation d'hébergement \"x\".pdf");
        assert!(header.starts_with("attachment; filename=\"Attestation d'h_bergement _x_.pdf\""));
        assert!(header.contains("h%C3%A9bergement"));
        let spoofed = content_disposition("avis\u{202E}fdp.exe");
        assert_eq!(
            spoofed,
            "attachment; filename=\"avisfdp.exe\"; filename*=UTF-8''avisfdp.exe"
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(format_size(Lang::Fr, 1_572_864), "1,5 Mo");
        assert_eq!(format_size(Lang::En, 2048), "2.0 KB");
        assert_eq!(format_size(Lang::Fr, 12), "12 octets");
    }
}
