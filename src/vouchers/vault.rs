//! The vouchers a citizen holds in their vault: those still to collect with their code
//! (unsealed only for the citizen's own page, or, in a locked vault, handed to the page
//! sealed for it to open), and those already collected.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::VoucherCode;
use super::campaigns::{Site, list_sites};
use crate::citizens::{VaultAccess, vault_access};
use crate::crypto::{MasterKey, unseal};
use crate::db::schema::{tenants, voucher_campaigns, voucher_sites, vouchers};
use crate::db::{Conn, DbError};

/// A voucher as its holder sees it.
pub struct HeldVoucher {
    pub commune: String,
    pub campaign: String,
    pub item: String,
    pub allotment: i32,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub sites: Vec<Site>,
    pub state: HeldState,
}

pub enum HeldState {
    /// To collect: the code to show at the site.
    ToCollect(VoucherCode),
    /// To collect, in a locked vault: the code sealed to the vault, which only the
    /// citizen's page can open.
    ToCollectSealed(Vec<u8>),
    Collected {
        at: NaiveDateTime,
        site: Option<String>,
    },
    /// The campaign closed before it was collected.
    Closed,
    /// Its code was sealed to the key of a vault its holder had to start over: the
    /// town hall issues a new one.
    CodeLost,
}

type HeldRow = (
    String,
    String,
    String,
    String,
    i32,
    NaiveDate,
    NaiveDate,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<Vec<u8>>,
);

/// The citizen's live vouchers (revoked ones are gone), newest first.
pub fn held_vouchers(
    conn: &mut Conn,
    master: &MasterKey,
    citizen_id: &str,
) -> Result<Vec<HeldVoucher>, VaultVoucherError> {
    let rows: Vec<HeldRow> = vouchers::table
        .inner_join(voucher_campaigns::table.inner_join(tenants::table))
        .left_join(
            voucher_sites::table.on(vouchers::redeemed_site_id.eq(voucher_sites::id.nullable())),
        )
        .filter(vouchers::citizen_id.eq(citizen_id))
        .filter(vouchers::revoked_at.is_null())
        .order(vouchers::issued_at.desc())
        .select((
            voucher_campaigns::id,
            tenants::name,
            voucher_campaigns::name,
            voucher_campaigns::item,
            vouchers::allotment,
            voucher_campaigns::starts_on,
            voucher_campaigns::ends_on,
            voucher_campaigns::closed_at,
            vouchers::redeemed_at,
            voucher_sites::name.nullable(),
            vouchers::sealed_code,
        ))
        .load(conn)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // `None` for a locked vault: its codes go to the page sealed.
    let identity = match vault_access(conn, master, citizen_id)
        .map_err(|error| VaultVoucherError::Key(error.to_string()))?
    {
        VaultAccess::Escrowed(identity) => Some(identity),
        VaultAccess::Locked => None,
        VaultAccess::Unknown => return Err(VaultVoucherError::Key("no vault key".to_owned())),
    };
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        let (campaign_id, commune, campaign, item, allotment, starts_on, ends_on) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6);
        let (closed_at, redeemed_at, site, sealed) = (row.7, row.8, row.9, row.10);
        let state = match (redeemed_at, closed_at) {
            (Some(at), _) => HeldState::Collected { at, site },
            (None, Some(_)) => HeldState::Closed,
            (None, None) => match (sealed, &identity) {
                // Its code went with the key of a vault started over.
                (None, _) => HeldState::CodeLost,
                (Some(sealed), None) => HeldState::ToCollectSealed(sealed),
                (Some(sealed), Some(identity)) => {
                    let plain = unseal(identity, &sealed)
                        .map_err(|error| VaultVoucherError::Key(error.to_string()))?;
                    let code = VoucherCode::parse(&String::from_utf8_lossy(&plain))
                        .map_err(|error| VaultVoucherError::Key(error.to_string()))?;
                    HeldState::ToCollect(code)
                }
            },
        };
        held.push(HeldVoucher {
            commune,
            campaign,
            item,
            allotment,
            starts_on,
            ends_on,
            sites: list_sites(conn, &campaign_id)?,
            state,
        });
    }
    Ok(held)
}

#[derive(Debug, thiserror::Error)]
pub enum VaultVoucherError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot open a voucher code: {0}")]
    Key(String),
}

impl From<diesel::result::Error> for VaultVoucherError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}
