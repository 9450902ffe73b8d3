//! Redeeming a code at a distribution site. Single use rests on one conditional UPDATE:
//! when two sites scan the same code at the same instant, the database lets exactly one
//! of them change the row. Everything else here only explains a refusal. A code scanned
//! again is never answered as a success, whoever scans it and however soon: the same
//! submission coming back is recognised by its one-time key (`scan_requests`).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};
use serde::{Deserialize, Serialize};

use super::campaigns::{Campaign, Site};
use super::{CodeError, VoucherCode};
use crate::agents::Agent;
use crate::crypto::{HashDomain, KeyedHasher};
use crate::db::schema::{voucher_campaigns, voucher_scan_failures, voucher_sites, vouchers};
use crate::db::{Conn, DbError, sql_on_either_engine};

/// One scan (or typed code) at a site.
pub struct Scan<'a> {
    pub agent: &'a Agent,
    pub campaign: &'a Campaign,
    pub site: &'a Site,
    /// The code as read, or why it could not be read.
    pub code: Result<VoucherCode, CodeError>,
    /// The distributor ticked "identity checked" (nothing about the identity is kept).
    pub identity_checked: bool,
    /// The scanning device's id, if it sent one.
    pub device: Option<&'a str>,
}

/// How often a distributor may fail before scanning pauses.
#[derive(Debug, Clone, Copy)]
pub struct FailureLimit {
    pub max_failures: u32,
    pub window_minutes: u32,
}

/// What the distributor is told (kept with a scan request, to answer its repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanOutcome {
    /// Hand over the allotment: this scan recorded the pickup.
    Collected {
        allotment: i32,
    },
    /// Already handed over, then (UTC) and there: nothing to hand over.
    AlreadyCollected {
        at: NaiveDateTime,
        place: CollectedPlace,
    },
    Refused(ScanRefusal),
}

/// Where an already collected voucher was handed over, as seen from the desk that
/// scans it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectedPlace {
    /// This very device recorded the pickup.
    ThisDesk,
    /// Another desk of this site (or a device that sent no id).
    ThisSite,
    /// Another site, by its name (none if the site is no longer known).
    OtherSite(Option<String>),
}

/// Why nothing was handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanRefusal {
    /// Not a code: wrong length, foreign character or wrong check character.
    Malformed(CodeError),
    /// Well-formed but issued by no campaign of this commune.
    Unknown,
    /// A code of this commune's other campaign, named.
    OtherCampaign(String),
    /// The code was revoked (its letter was reported lost and replaced).
    Revoked,
    /// The campaign is closed.
    CampaignClosed,
    /// Too many failed scans recently: scanning pauses for a while.
    TooManyFailures { minutes: u32 },
}

impl ScanRefusal {
    /// Stable code for the API, the failure log and the page texts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(CodeError::Length { .. }) => "code_length",
            Self::Malformed(CodeError::Character(_)) => "code_character",
            Self::Malformed(CodeError::Check) => "code_check",
            Self::Unknown => "unknown_code",
            Self::OtherCampaign(_) => "other_campaign",
            Self::Revoked => "revoked_code",
            Self::CampaignClosed => "campaign_closed",
            Self::TooManyFailures { .. } => "too_many_failures",
        }
    }

    /// Failures that look like guessing count towards the distributor's limit; a
    /// revoked or already collected code is a real letter and does not.
    fn counts_towards_limit(&self) -> bool {
        matches!(self, Self::Malformed(_) | Self::Unknown)
    }
}

/// The keyed hash a device id is kept as.
pub fn device_hash(hasher: &KeyedHasher, device: &str) -> String {
    hasher.hash(HashDomain::ScanDevice, device.as_bytes())
}

/// Redeems a scanned code (call in a write transaction). Failures are recorded for
/// the rate limit and the log, without the code.
pub fn redeem(
    conn: &mut Conn,
    hasher: &KeyedHasher,
    limit: FailureLimit,
    scan: &Scan<'_>,
) -> Result<ScanOutcome, DbError> {
    let now = crate::now();
    if recent_failures(conn, &scan.agent.id, now, limit)? >= i64::from(limit.max_failures) {
        return Ok(ScanOutcome::Refused(ScanRefusal::TooManyFailures {
            minutes: limit.window_minutes,
        }));
    }
    let code_hash = match &scan.code {
        Ok(code) => code.keyed_hash(hasher),
        Err(error) => return refuse(conn, scan, ScanRefusal::Malformed(error.clone()), now),
    };
    let device = scan.device.map(|device| device_hash(hasher, device));
    if let Some(allotment) = mark_redeemed(conn, scan, &code_hash, device.as_deref(), now)? {
        return Ok(ScanOutcome::Collected { allotment });
    }
    explain(conn, scan, &code_hash, device.as_deref(), now)
}

#[derive(QueryableByName)]
struct AllotmentRow {
    #[diesel(sql_type = Integer)]
    allotment: i32,
}

/// The single statement that decides: it changes the row only if the code belongs to
/// this open campaign of the tenant and is neither redeemed nor revoked.
fn mark_redeemed(
    conn: &mut Conn,
    scan: &Scan<'_>,
    code_hash: &str,
    device: Option<&str>,
    now: NaiveDateTime,
) -> Result<Option<i32>, DbError> {
    const SQL: &str = "UPDATE vouchers SET redeemed_at = $1, redeemed_site_id = $2, \
         redeemed_by = $3, identity_checked = $4, redeemed_device = $5 \
         WHERE code_hash = $6 AND campaign_id = $7 \
         AND redeemed_at IS NULL AND revoked_at IS NULL \
         AND EXISTS (SELECT 1 FROM voucher_campaigns \
             WHERE id = $7 AND tenant_id = $8 AND closed_at IS NULL) \
         RETURNING allotment";
    let row = sql_on_either_engine!(
        conn,
        SQL,
        AllotmentRow,
        get_result,
        (Timestamp, now),
        (Text, &scan.site.id),
        (Text, &scan.agent.id),
        (Bool, scan.identity_checked),
        (Nullable<Text>, device),
        (Text, code_hash),
        (Text, &scan.campaign.id),
        (Text, &scan.agent.tenant_id),
    )
    .optional()?;
    Ok(row.map(|row| row.allotment))
}

type VoucherState = (
    String,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
);

/// Nothing was changed: find out why, and record the failure.
fn explain(
    conn: &mut Conn,
    scan: &Scan<'_>,
    code_hash: &str,
    device: Option<&str>,
    now: NaiveDateTime,
) -> Result<ScanOutcome, DbError> {
    // The code hash is unique: no `LIMIT` (`first`), which SQLite would prepare again
    // at every execution.
    let found: Option<VoucherState> = vouchers::table
        .inner_join(voucher_campaigns::table)
        .left_join(
            voucher_sites::table.on(vouchers::redeemed_site_id.eq(voucher_sites::id.nullable())),
        )
        .filter(vouchers::code_hash.eq(code_hash))
        .filter(voucher_campaigns::tenant_id.eq(&scan.agent.tenant_id))
        .select((
            vouchers::campaign_id,
            voucher_campaigns::name,
            vouchers::revoked_at,
            vouchers::redeemed_at,
            vouchers::redeemed_device,
            voucher_sites::id.nullable(),
            voucher_sites::name.nullable(),
            voucher_campaigns::closed_at,
        ))
        .get_result(conn)
        .optional()?;
    let Some((
        campaign_id,
        campaign_name,
        revoked_at,
        redeemed_at,
        redeemed_device,
        site_id,
        site_name,
        closed_at,
    )) = found
    else {
        return refuse(conn, scan, ScanRefusal::Unknown, now);
    };
    if campaign_id != scan.campaign.id {
        return refuse(conn, scan, ScanRefusal::OtherCampaign(campaign_name), now);
    }
    if let Some(at) = redeemed_at {
        // However soon and from whichever device: a household coming back, or a
        // photocopied letter, is told apart from a success.
        let here = site_id.as_deref() == Some(scan.site.id.as_str());
        let place = if here && device.is_some() && redeemed_device.as_deref() == device {
            CollectedPlace::ThisDesk
        } else if here {
            CollectedPlace::ThisSite
        } else {
            CollectedPlace::OtherSite(site_name)
        };
        record_failure(conn, scan, "already_collected", now)?;
        return Ok(ScanOutcome::AlreadyCollected { at, place });
    }
    if revoked_at.is_some() {
        return refuse(conn, scan, ScanRefusal::Revoked, now);
    }
    if closed_at.is_some() {
        return refuse(conn, scan, ScanRefusal::CampaignClosed, now);
    }
    // The row was free a moment ago but the update did not take it: a concurrent
    // close. Say so rather than guess.
    refuse(conn, scan, ScanRefusal::CampaignClosed, now)
}

fn refuse(
    conn: &mut Conn,
    scan: &Scan<'_>,
    refusal: ScanRefusal,
    now: NaiveDateTime,
) -> Result<ScanOutcome, DbError> {
    let reason = if refusal.counts_towards_limit() {
        format!("limited:{}", refusal.code())
    } else {
        refusal.code().to_owned()
    };
    record_failure(conn, scan, &reason, now)?;
    Ok(ScanOutcome::Refused(refusal))
}

fn record_failure(
    conn: &mut Conn,
    scan: &Scan<'_>,
    reason: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    tracing::warn!(
        agent = %scan.agent.id,
        campaign = %scan.campaign.id,
        site = %scan.site.id,
        reason,
        "voucher scan refused"
    );
    diesel::insert_into(voucher_scan_failures::table)
        .values((
            voucher_scan_failures::id.eq(crate::new_id()),
            voucher_scan_failures::tenant_id.eq(&scan.agent.tenant_id),
            voucher_scan_failures::agent_id.eq(&scan.agent.id),
            voucher_scan_failures::campaign_id.eq(&scan.campaign.id),
            voucher_scan_failures::reason.eq(reason),
            voucher_scan_failures::at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The failures that count towards the limit: the WHERE clause of the partial index
/// `voucher_scan_failures_limited`, word for word. A bound pattern would not match
/// it, and SQLite would prepare the statement again at every execution.
const LIMITED_FAILURE: &str = "voucher_scan_failures.reason LIKE 'limited:%'";

/// Failures of this distributor within the window that count towards the limit.
fn recent_failures(
    conn: &mut Conn,
    agent_id: &str,
    now: NaiveDateTime,
    limit: FailureLimit,
) -> Result<i64, DbError> {
    let since = now - TimeDelta::minutes(i64::from(limit.window_minutes));
    Ok(voucher_scan_failures::table
        .filter(voucher_scan_failures::agent_id.eq(agent_id))
        .filter(voucher_scan_failures::at.gt(since))
        .filter(diesel::dsl::sql::<Bool>(LIMITED_FAILURE))
        .count()
        .get_result(conn)?)
}

/// Deletes refused scans recorded before `before` (past the limit's window, they count
/// for nothing); returns how many went.
pub fn purge_scan_failures(conn: &mut Conn, before: NaiveDateTime) -> Result<usize, DbError> {
    Ok(
        diesel::delete(voucher_scan_failures::table.filter(voucher_scan_failures::at.lt(before)))
            .execute(conn)?,
    )
}
