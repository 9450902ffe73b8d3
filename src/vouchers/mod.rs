//! Single-use vouchers: a campaign hands out one code per household (printed on a
//! letter, or placed in the citizen's vault), and a distributor redeems it once at a
//! distribution site. The database keeps keyed hashes of the codes and the allotments;
//! never a code in clear, never an address. It also renders the letters that carry the
//! codes to households.

pub mod campaigns;
mod code;
pub mod households;
pub mod issue;
mod letters;
pub mod pages;
pub mod print;
pub mod redeem;
pub mod scan_pages;
pub mod scan_requests;
pub mod vault;

use chrono::NaiveDateTime;

pub use code::{CodeError, VoucherCode};
pub use letters::{
    DistributionSite, Letter, LetterCampaign, LetterError, LetterTexts, MAX_ADDRESS_LINES,
    write_letters_pdf, write_mail_merge_csv,
};

use crate::db::DbError;
use households::HouseholdLineError;

/// Why a voucher action was refused; each has a stable code and a clear message.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    /// A form field is missing or out of range (the field's name).
    #[error("the field {0} is missing or invalid")]
    Field(&'static str),
    #[error("the campaign is closed")]
    CampaignClosed,
    #[error("a site of this campaign already has that name")]
    SiteExists,
    #[error("no live code for this household reference in this campaign")]
    UnknownHousehold,
    #[error("this household already has a code in this campaign")]
    HouseholdHasCode,
    #[error("this household has already collected")]
    AlreadyCollected {
        at: NaiveDateTime,
        site: Option<String>,
    },
    /// Households that cannot get a code; nothing was issued.
    #[error("{} line(s) refused", .0.len())]
    Lines(Vec<HouseholdLineError>),
    #[error("another import for the same households ran at the same time; try again")]
    Conflict,
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<diesel::result::Error> for VoucherError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}
