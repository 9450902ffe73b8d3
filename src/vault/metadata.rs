//! What an agent says about a document they deliver, parsed once into types: the
//! recipient, title, category, optional contact and department.

use serde::{Deserialize, Serialize};

use crate::citizens::{IdentityError, NationalRegisterNumber, PivotIdentity, PivotInput};
use crate::tenants::Slug;

/// Largest accepted `metadata` part.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_TITLE_CHARS: usize = 200;
const MAX_FILE_NAME_CHARS: usize = 200;

/// Why delivery metadata was refused; the message is safe to show to the sender.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is not valid JSON for a delivery: {0}")]
    Malformed(String),
    #[error("recipient: {0}")]
    Recipient(String),
    #[error("{0}")]
    Field(String),
}

/// The `metadata` part as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryMetadataInput {
    /// One of `{"pivot": {…}}`, `{"nrn": "…"}` or `{"citizen_id": "…"}`.
    #[schema(value_type = RecipientInput)]
    pub recipient: serde_json::Value,
    /// Shown to the citizen only; encrypted at rest. Absent when the sender encrypted
    /// the document (`encryption`): the title is then in the sealed metadata.
    #[serde(default)]
    pub title: Option<String>,
    /// Short lowercase label, e.g. `impots`, `etat-civil`.
    pub category: String,
    #[serde(default)]
    pub contact: Option<ContactInput>,
    /// Slug of one of the tenant's departments.
    #[serde(default)]
    pub department: Option<String>,
    /// Set when the sender encrypted the file (the `file` part is then an age file).
    #[serde(default)]
    pub encryption: Option<SenderEncryptionInput>,
}

/// How a sender-encrypted document was encrypted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderEncryptionInput {
    /// The vault key (`age1…`) the file and the sealed metadata are encrypted to, as
    /// `POST /api/v1/recipients` gave it.
    pub recipient: String,
    /// `{"title": …, "file_name": …}` as JSON, age-encrypted to the same key, base64url.
    pub sealed_metadata: String,
}

/// A sender-encrypted delivery, checked as far as the server can.
#[derive(Debug, Clone)]
pub struct SenderEncryption {
    pub recipient: String,
    pub sealed_metadata: Vec<u8>,
}

/// How the recipient is named (documentation of the `recipient` object).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RecipientInput {
    /// French pivot identity.
    Pivot(PivotInput),
    /// Belgian national register number.
    Nrn(String),
    /// A citizen already known to the portal.
    CitizenId(String),
}

/// Where the citizen may be told a document is waiting.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// A parsed recipient.
#[derive(Debug, Clone)]
pub enum Recipient {
    Pivot(PivotIdentity),
    NationalRegisterNumber(NationalRegisterNumber),
    CitizenId(String),
}

/// Validated contact details, in canonical form.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    pub email: Option<String>,
    /// E.164, e.g. `+33612345678`.
    pub phone: Option<String>,
}

/// Parsed, valid delivery metadata.
#[derive(Debug, Clone)]
pub struct DeliveryMetadata {
    pub recipient: Recipient,
    pub title: String,
    pub category: Slug,
    pub contact: Option<Contact>,
    pub department: Option<Slug>,
    /// Set when the sender encrypted the document (then `title` is empty).
    pub encryption: Option<SenderEncryption>,
}

impl DeliveryMetadata {
    /// Parses the JSON of the `metadata` part.
    pub fn parse(json: &[u8]) -> Result<Self, MetadataError> {
        let input: DeliveryMetadataInput = serde_json::from_slice(json)
            .map_err(|error| MetadataError::Malformed(error.to_string()))?;
        let recipient = parse_recipient(input.recipient)?;
        let encryption = input.encryption.map(parse_encryption).transpose()?;
        let title = match (&encryption, input.title) {
            (None, Some(title)) => clean_text(&title, MAX_TITLE_CHARS)
                .ok_or_else(|| field("title must be 1 to 200 characters of text"))?,
            (None, None) => return Err(field("title must be 1 to 200 characters of text")),
            (Some(_), None) => String::new(),
            (Some(_), Some(_)) => {
                return Err(field(
                    "title must not be sent in clear with a sender-encrypted document: seal it",
                ));
            }
        };
        let category = Slug::parse(&input.category)
            .map_err(|error| MetadataError::Field(format!("category: {error}")))?;
        let department = input
            .department
            .map(|slug| {
                Slug::parse(&slug)
                    .map_err(|error| MetadataError::Field(format!("department: {error}")))
            })
            .transpose()?;
        let contact = input.contact.map(parse_contact).transpose()?;
        Ok(Self {
            recipient,
            title,
            category,
            contact,
            department,
            encryption,
        })
    }
}

fn parse_encryption(input: SenderEncryptionInput) -> Result<SenderEncryption, MetadataError> {
    let recipient = crate::crypto::VaultRecipient::parse(&input.recipient)
        .map_err(|_| field("encryption.recipient must be a vault key (age1…)"))?
        .to_string();
    let sealed_metadata = crate::crypto::from_base64url(&input.sealed_metadata)
        .filter(|bytes| bytes.len() <= super::sender_encrypted::MAX_SEALED_METADATA_BYTES)
        .ok_or_else(|| field("encryption.sealed_metadata must be base64url, at most 8 KiB"))?;
    super::sender_encrypted::check_single_x25519(&sealed_metadata).map_err(|_| {
        field("encryption.sealed_metadata must be age-encrypted to exactly one vault key")
    })?;
    Ok(SenderEncryption {
        recipient,
        sealed_metadata,
    })
}

fn field(message: &str) -> MetadataError {
    MetadataError::Field(message.to_owned())
}

pub fn parse_recipient(value: serde_json::Value) -> Result<Recipient, MetadataError> {
    let recipient_error = |message: String| MetadataError::Recipient(message);
    let input: RecipientInput = serde_json::from_value(value).map_err(|_| {
        recipient_error(
            "must be exactly one of {\"pivot\": {family_name, given_names, birthdate, birthplace}}, \
             {\"nrn\": \"…\"} or {\"citizen_id\": \"…\"}"
                .to_owned(),
        )
    })?;
    let identity_error = |error: IdentityError| recipient_error(error.to_string());
    match input {
        RecipientInput::Pivot(pivot) => PivotIdentity::normalise(&pivot)
            .map(Recipient::Pivot)
            .map_err(identity_error),
        RecipientInput::Nrn(nrn) => NationalRegisterNumber::parse(&nrn)
            .map(Recipient::NationalRegisterNumber)
            .map_err(identity_error),
        RecipientInput::CitizenId(id) => uuid::Uuid::parse_str(&id)
            .map(|id| Recipient::CitizenId(id.to_string()))
            .map_err(|_| recipient_error("citizen_id is not a valid identifier".to_owned())),
    }
}

fn parse_contact(input: ContactInput) -> Result<Contact, MetadataError> {
    let email = input
        .email
        .filter(|email| !email.trim().is_empty())
        .map(|email| {
            let email = email.trim().to_owned();
            if email.len() <= 254 && email_address::EmailAddress::is_valid(&email) {
                Ok(email)
            } else {
                Err(field("contact.email is not a valid email address"))
            }
        })
        .transpose()?;
    let phone = input
        .phone
        .filter(|phone| !phone.trim().is_empty())
        .map(|phone| {
            normalise_phone(&phone).ok_or_else(|| {
                field("contact.phone must be an international number (+33…, +32…) or a French or Belgian national one")
            })
        })
        .transpose()?;
    Ok(Contact { email, phone })
}

/// E.164 from `+33 6 12 34 56 78`, `06 12 34 56 78` (France) or `0470 12 34 56`
/// (Belgium, ten digits starting with 04).
pub fn normalise_phone(text: &str) -> Option<String> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let international = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_owned()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_owned()
    } else if let Some(rest) = compact.strip_prefix('0') {
        match compact.len() {
            10 if compact.starts_with("04") && !compact.starts_with("040") => {
                format!("32{rest}")
            }
            10 => format!("33{rest}"),
            _ => return None,
        }
    } else {
        return None;
    };
    let valid = (8..=15).contains(&international.len())
        && international.bytes().all(|b| b.is_ascii_digit())
        && !international.starts_with('0');
    valid.then(|| format!("+{international}"))
}

/// Trims, refuses control characters, and bounds the length.
fn clean_text(text: &str, max_chars: usize) -> Option<String> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.chars().count() <= max_chars
        && !text.chars().any(char::is_control);
    ok.then(|| text.to_owned())
}

/// A file name safe to show and to offer in `Content-Disposition`: no path, no
/// control characters (bidirectional ones included), bounded length.
pub fn safe_file_name(raw: Option<&str>) -> String {
    let base = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = without_bidi_controls(base)
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':'))
        .take(MAX_FILE_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "document".to_owned()
    } else {
        cleaned
    }
}

/// A validated `Content-Type` for the stored document.
pub fn safe_content_type(raw: Option<&str>) -> String {
    raw.and_then(|value| value.parse::<mime::Mime>().ok())
        .map(|mime| mime.essence_str().to_owned())
        .filter(|essence| essence.len() <= 100)
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// Characters that reorder how text is displayed (embeddings, overrides, isolates and
/// marks): in a file name they can show `avis` U+202E `fdp.exe` as `avisexe.pdf`.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The text without bidirectional control characters: for what a document was
/// delivered with before names were cleaned on the way in.
pub fn without_bidi_controls(text: &str) -> String {
    text.chars().filter(|c| !is_bidi_control(*c)).collect()
}

/// Media types a browser only ever displays or saves, never runs: documents are served
/// as one of these or as `application/octet-stream`. An allow-list, so a type nobody
/// thought of (HTML, SVG, XML, script, and whatever comes next) can never execute on
/// the portal's origin, whatever the agent declared.
const INERT_CONTENT_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
    "text/csv",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/zip",
];

/// The `Content-Type` a stored document is served with: its declared type when that is
/// inert, `application/octet-stream` otherwise.
pub fn served_content_type(declared: &str) -> &'static str {
    let essence = declared
        .parse::<mime::Mime>()
        .map(|mime| mime.essence_str().to_ascii_lowercase())
        .unwrap_or_default();
    INERT_CONTENT_TYPES
        .iter()
        .find(|inert| **inert == essence)
        .copied()
        .unwrap_or("application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<DeliveryMetadata, MetadataError> {
        DeliveryMetadata::parse(json.to_string().as_bytes())
    }

    #[test]
    fn a_complete_delivery_parses() {
        let metadata = parse(serde_json::json!({
            "recipient": {"pivot": {"family_name": "Dupont", "given_names": "Marie",
                                    "birthdate": "1980-07-30", "birthplace": "75056"}},
            "title": "Avis de taxe foncière",
            "category": "impots",
            "contact": {"email": "marie@example.org", "phone": "06 12 34 56 78"},
            "department": "finances"
        }))
        .unwrap();
        assert!(matches!(metadata.recipient, Recipient::Pivot(_)));
        let contact = metadata.contact.unwrap();
        assert_eq!(contact.phone.as_deref(), Some("+33612345678"));
    }

    #[test]
    fn unknown_recipient_forms_are_named_as_such() {
        for recipient in [
            serde_json::json!({"email": "x@example.org"}),
            serde_json::json!({"pivot": {}, "nrn": "85073003328"}),
            serde_json::json!("Marie Dupont"),
        ] {
            let error = parse(serde_json::json!({
                "recipient": recipient, "title": "t", "category": "impots"
            }))
            .unwrap_err();
            assert!(matches!(error, MetadataError::Recipient(_)), "{error}");
        }
    }

    #[test]
    fn malformed_metadata_is_refused() {
        assert!(matches!(
            DeliveryMetadata::parse(b"{not json"),
            Err(MetadataError::Malformed(_))
        ));
        // A title may only be missing beside a sender's sealed one.
        let missing_title =
            serde_json::json!({"recipient": {"nrn": "85073003328"}, "category": "x1"});
        assert!(matches!(parse(missing_title), Err(MetadataError::Field(_))));
        let control = serde_json::json!({"recipient": {"nrn": "85073003328"},
                                          "title": "a\u{0007}b", "category": "impots"});
        assert!(matches!(parse(control), Err(MetadataError::Field(_))));
    }

    #[test]
    fn phones_are_normalised_to_e164() {
        assert_eq!(
            normalise_phone("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("0470 12 34 56").as_deref(),
            Some("+32470123456")
        );
        assert_eq!(
            normalise_phone("0033612345678").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(normalise_phone("12345"), None);
        assert_eq!(normalise_phone("+33 6 12 34 ab"), None);
    }

    #[test]
    fn file_names_lose_paths_and_tricks() {
        assert_eq!(safe_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(safe_file_name(Some("C:\\x\\avis.pdf")), "avis.pdf");
        assert_eq!(safe_file_name(Some("a\"b\r\n.pdf")), "ab.pdf");
        assert_eq!(safe_file_name(Some("..")), "document");
        assert_eq!(safe_file_name(None), "document");
        assert_eq!(
            safe_file_name(Some("avis\u{202E}fdp.exe")),
            "avisfdp.exe",
            "a right-to-left override would show it as avisexe.pdf"
        );
        for bidi in [
            '\u{202A}', '\u{202D}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert_eq!(safe_file_name(Some(&format!("a{bidi}b.pdf"))), "ab.pdf");
        }
    }

    #[test]
    fn only_inert_types_are_served_as_declared() {
        for inert in [
            "application/pdf",
            "image/png",
            "text/plain",
            "TEXT/CSV; charset=utf-8",
        ] {
            assert_ne!(
                served_content_type(inert),
                "application/octet-stream",
                "{inert}"
            );
        }
        for active in [
            "text/html",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/javascript",
            "application/javascript",
            "text/xml",
            "application/xml",
            "text/xsl",
            "application/x-shockwave-flash",
            "multipart/x-mixed-replace",
            "not a type",
            "",
        ] {
            assert_eq!(
                served_content_type(active),
                "application/octet-stream",
                "{active}"
            );
        }
    }
}
