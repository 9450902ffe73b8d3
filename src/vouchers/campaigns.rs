//! Campaigns and their distribution sites: created and closed by the commune's agents,
//! always read within one tenant.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

use super::VoucherError;
use crate::agents::Agent;
use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::{voucher_campaigns, voucher_sites};
use crate::db::{Conn, DbError, sql_on_either_engine};

const MAX_NAME_CHARS: usize = 120;
const MAX_TEXT_CHARS: usize = 200;
/// A household never gets more than this many items in one voucher.
pub const MAX_ALLOTMENT: i32 = 1000;

/// A campaign as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = voucher_campaigns)]
pub struct Campaign {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub item: String,
    pub default_allotment: i32,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub created_at: NaiveDateTime,
    pub closed_at: Option<NaiveDateTime>,
}

impl Campaign {
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }
}

/// A distribution site of a campaign.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = voucher_sites)]
pub struct Site {
    pub id: String,
    pub campaign_id: String,
    pub name: String,
    pub address: String,
    pub opening_hours: String,
}

/// A campaign as an agent describes it in the form, before it is checked.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct CampaignInput {
    pub name: String,
    pub item: String,
    pub default_allotment: String,
    pub starts_on: String,
    pub ends_on: String,
}

/// A checked campaign description.
struct NewCampaign {
    name: String,
    item: String,
    default_allotment: i32,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
}

impl CampaignInput {
    fn check(&self) -> Result<NewCampaign, VoucherError> {
        let name = required_text(&self.name, MAX_NAME_CHARS, "name")?;
        let item = required_text(&self.item, MAX_TEXT_CHARS, "item")?;
        let default_allotment = parse_allotment(&self.default_allotment)
            .ok_or(VoucherError::Field("default_allotment"))?;
        let starts_on = parse_date(&self.starts_on).ok_or(VoucherError::Field("starts_on"))?;
        let ends_on = parse_date(&self.ends_on).ok_or(VoucherError::Field("ends_on"))?;
        if ends_on < starts_on {
            return Err(VoucherError::Field("ends_on"));
        }
        Ok(NewCampaign {
            name,
            item,
            default_allotment,
            starts_on,
            ends_on,
        })
    }
}

/// A site as typed in the form.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct SiteInput {
    pub name: String,
    pub address: String,
    pub opening_hours: String,
}

/// An allotment as typed: a whole number from 1 to [`MAX_ALLOTMENT`].
pub fn parse_allotment(text: &str) -> Option<i32> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=MAX_ALLOTMENT).contains(n))
}

/// `YYYY-MM-DD` (what a date input sends) or `DD/MM/YYYY`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%d/%m/%Y"))
        .ok()
}

fn required_text(text: &str, max: usize, field: &'static str) -> Result<String, VoucherError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(VoucherError::Field(field));
    }
    Ok(text.to_owned())
}

/// Creates a campaign for the agent's tenant.
pub fn create_campaign(
    conn: &mut Conn,
    agent: &Agent,
    input: &CampaignInput,
) -> Result<String, VoucherError> {
    let new = input.check()?;
    let id = crate::new_id();
    diesel::insert_into(voucher_campaigns::table)
        .values((
            voucher_campaigns::id.eq(&id),
            voucher_campaigns::tenant_id.eq(&agent.tenant_id),
            voucher_campaigns::name.eq(&new.name),
            voucher_campaigns::item.eq(&new.item),
            voucher_campaigns::default_allotment.eq(new.default_allotment),
            voucher_campaigns::starts_on.eq(new.starts_on),
            voucher_campaigns::ends_on.eq(new.ends_on),
            voucher_campaigns::created_by.eq(&agent.id),
            voucher_campaigns::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(agent.id.clone()), "voucher_campaign.created")
            .tenant(&agent.tenant_id)
            .subject("voucher_campaign", &id),
    )?;
    Ok(id)
}

/// The tenant's campaigns, newest first.
pub fn list_campaigns(conn: &mut Conn, tenant_id: &str) -> Result<Vec<Campaign>, DbError> {
    Ok(voucher_campaigns::table
        .filter(voucher_campaigns::tenant_id.eq(tenant_id))
        .order(voucher_campaigns::created_at.desc())
        .select(Campaign::as_select())
        .load(conn)?)
}

/// One campaign of the tenant (another tenant's is not found).
pub fn find_campaign(
    conn: &mut Conn,
    tenant_id: &str,
    campaign_id: &str,
) -> Result<Option<Campaign>, DbError> {
    Ok(voucher_campaigns::table
        .filter(voucher_campaigns::tenant_id.eq(tenant_id))
        .filter(voucher_campaigns::id.eq(campaign_id))
        .select(Campaign::as_select())
        .first(conn)
        .optional()?)
}

/// Closes a campaign: from then on nothing is redeemed or issued. Closing twice is
/// harmless.
pub fn close_campaign(conn: &mut Conn, agent: &Agent, campaign_id: &str) -> Result<(), DbError> {
    let closed = diesel::update(
        voucher_campaigns::table
            .filter(voucher_campaigns::tenant_id.eq(&agent.tenant_id))
            .filter(voucher_campaigns::id.eq(campaign_id))
            .filter(voucher_campaigns::closed_at.is_null()),
    )
    .set((
        voucher_campaigns::closed_at.eq(crate::now()),
        voucher_campaigns::closed_by.eq(&agent.id),
    ))
    .execute(conn)?;
    if closed == 1 {
        audit::record(
            conn,
            AuditEvent::new(Actor::Agent(agent.id.clone()), "voucher_campaign.closed")
                .tenant(&agent.tenant_id)
                .subject("voucher_campaign", campaign_id),
        )?;
    }
    Ok(())
}

/// Adds a distribution site to an open campaign.
pub fn add_site(
    conn: &mut Conn,
    agent: &Agent,
    campaign: &Campaign,
    input: &SiteInput,
) -> Result<String, VoucherError> {
    if campaign.is_closed() {
        return Err(VoucherError::CampaignClosed);
    }
    let name = required_text(&input.name, MAX_NAME_CHARS, "site_name")?;
    let address = required_text(&input.address, MAX_TEXT_CHARS, "site_address")?;
    let opening_hours = input.opening_hours.trim();
    if opening_hours.chars().count() > MAX_TEXT_CHARS || opening_hours.chars().any(char::is_control)
    {
        return Err(VoucherError::Field("site_hours"));
    }
    let taken = voucher_sites::table
        .filter(voucher_sites::campaign_id.eq(&campaign.id))
        .filter(voucher_sites::name.eq(&name))
        .count()
        .get_result::<i64>(conn)?;
    if taken > 0 {
        return Err(VoucherError::SiteExists);
    }
    let id = crate::new_id();
    diesel::insert_into(voucher_sites::table)
        .values((
            voucher_sites::id.eq(&id),
            voucher_sites::campaign_id.eq(&campaign.id),
            voucher_sites::name.eq(&name),
            voucher_sites::address.eq(&address),
            voucher_sites::opening_hours.eq(opening_hours),
            voucher_sites::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(agent.id.clone()), "voucher_site.created")
            .tenant(&agent.tenant_id)
            .subject("voucher_campaign", &campaign.id)
            .details(serde_json::json!({ "site": id })),
    )?;
    Ok(id)
}

/// The sites of a campaign, by name.
pub fn list_sites(conn: &mut Conn, campaign_id: &str) -> Result<Vec<Site>, DbError> {
    Ok(voucher_sites::table
        .filter(voucher_sites::campaign_id.eq(campaign_id))
        .order(voucher_sites::name.asc())
        .select(Site::as_select())
        .load(conn)?)
}

/// A site with its campaign, both of the tenant (read at every scan).
pub fn find_site(
    conn: &mut Conn,
    tenant_id: &str,
    site_id: &str,
) -> Result<Option<(Campaign, Site)>, DbError> {
    // No `LIMIT` (`first`): the id is the key, and SQLite prepares a statement with a
    // bound `LIMIT` again at every execution.
    Ok(voucher_sites::table
        .inner_join(voucher_campaigns::table)
        .filter(voucher_campaigns::tenant_id.eq(tenant_id))
        .filter(voucher_sites::id.eq(site_id))
        .select((Campaign::as_select(), Site::as_select()))
        .get_result(conn)
        .optional()?)
}

/// How far a campaign has gone: codes live, collected, revoked, and live ones
/// placed in a vault.
#[derive(Debug, Clone, Default, Serialize, QueryableByName)]
pub struct CampaignCounts {
    #[diesel(sql_type = BigInt)]
    pub issued: i64,
    #[diesel(sql_type = BigInt)]
    pub redeemed: i64,
    #[diesel(sql_type = BigInt)]
    pub revoked: i64,
    #[diesel(sql_type = BigInt)]
    pub in_vaults: i64,
}

/// The four counts in one pass over the campaign's codes.
pub fn campaign_counts(conn: &mut Conn, campaign_id: &str) -> Result<CampaignCounts, DbError> {
    const SQL: &str = "SELECT COUNT(*) - COUNT(revoked_at) AS issued, \
         COUNT(redeemed_at) AS redeemed, COUNT(revoked_at) AS revoked, \
         COUNT(CASE WHEN revoked_at IS NULL THEN citizen_id END) AS in_vaults \
         FROM vouchers WHERE campaign_id = $1";
    Ok(sql_on_either_engine!(
        conn,
        SQL,
        CampaignCounts,
        get_result,
        (Text, campaign_id)
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CampaignInput {
        CampaignInput {
            name: "Masques mai 2020".into(),
            item: "masques lavables".into(),
            default_allotment: "2".into(),
            starts_on: "2020-05-11".into(),
            ends_on: "16/05/2020".into(),
        }
    }

    #[test]
    fn a_campaign_needs_sensible_fields() {
        assert!(input().check().is_ok());
        type Spoil = fn(&mut CampaignInput);
        let cases: [(Spoil, &str); 5] = [
            (|i| i.name = "  ".into(), "name"),
            (|i| i.default_allotment = "0".into(), "default_allotment"),
            (|i| i.default_allotment = "deux".into(), "default_allotment"),
            (|i| i.starts_on = "2020-13-01".into(), "starts_on"),
            (|i| i.ends_on = "2020-05-01".into(), "ends_on"),
        ];
        for (spoil, field) in cases {
            let mut bad = input();
            spoil(&mut bad);
            match bad.check() {
                Err(VoucherError::Field(found)) => assert_eq!(found, field),
                other => panic!("{field}: {:?}", other.err()),
            }
        }
    }
}
