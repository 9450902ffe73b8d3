//! Single-use vouchers (a campaign hands out one code per household). This module
//! owns the codes: how they are generated, shown, read back and hashed for storage;
//! and the letters that carry them to households.

mod code;
mod letters;

pub use code::{CodeError, VoucherCode};
pub use letters::{
    DistributionSite, Letter, LetterCampaign, LetterError, LetterTexts, MAX_ADDRESS_LINES,
    write_letters_pdf, write_mail_merge_csv,
};
