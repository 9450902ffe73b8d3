//! Turns codes just issued into what the agent downloads: the letters (PDF) or the
//! mail-merge file, in the agent's language. Nothing here is stored.

use super::campaigns::{Campaign, Site};
use super::households::Household;
use super::issue::IssuedCode;
use super::letters::{
    DistributionSite, Letter, LetterCampaign, LetterError, LetterTexts, write_letters_pdf,
    write_mail_merge_csv,
};
use crate::web::page::Lang;

/// What the agent asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterFormat {
    Pdf,
    MailMerge,
}

impl LetterFormat {
    /// `csv` is the mail-merge file; anything else the letters.
    pub fn parse(text: &str) -> Self {
        if text.trim() == "csv" {
            Self::MailMerge
        } else {
            Self::Pdf
        }
    }
}

/// A file ready to send.
pub struct Rendered {
    pub content_type: &'static str,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The letters (or mail-merge rows) of `households`, each with the code issued for its
/// line.
pub fn render(
    lang: Lang,
    tenant_name: &str,
    campaign: &Campaign,
    sites: &[Site],
    households: &[Household],
    codes: &[IssuedCode],
    format: LetterFormat,
) -> Result<Rendered, LetterError> {
    let letters = households
        .iter()
        .zip(codes)
        .map(|(household, issued)| Letter {
            household_reference: &household.reference,
            address: &household.address,
            allotment: u32::try_from(household.allotment).unwrap_or(1),
            code: &issued.code,
        });
    let stamp = crate::now().format("%Y%m%d-%H%M");
    let mut bytes = Vec::new();
    match format {
        LetterFormat::MailMerge => {
            write_mail_merge_csv(letters, &mut bytes)?;
            Ok(Rendered {
                content_type: "text/csv; charset=utf-8",
                file_name: format!("publipostage-{stamp}.csv"),
                bytes,
            })
        }
        LetterFormat::Pdf => {
            let sites: Vec<DistributionSite<'_>> = sites
                .iter()
                .map(|site| DistributionSite {
                    name: &site.name,
                    address: &site.address,
                    hours: &site.opening_hours,
                })
                .collect();
            let (texts, dates) = match lang {
                Lang::Fr => (
                    LetterTexts::french(),
                    format!(
                        "Du {} au {}.",
                        campaign.starts_on.format("%d/%m/%Y"),
                        campaign.ends_on.format("%d/%m/%Y")
                    ),
                ),
                Lang::En => (
                    LetterTexts::english(),
                    format!("From {} to {}.", campaign.starts_on, campaign.ends_on),
                ),
            };
            let letter_campaign = LetterCampaign {
                tenant_name,
                campaign_name: &campaign.name,
                item: &campaign.item,
                dates: &dates,
                sites: &sites,
            };
            write_letters_pdf(&letter_campaign, &texts, letters, &mut bytes)?;
            Ok(Rendered {
                content_type: "application/pdf",
                file_name: format!("courriers-{stamp}.pdf"),
                bytes,
            })
        }
    }
}
