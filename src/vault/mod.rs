//! Citizens' vaults: delivering encrypted documents into them, reading their status,
//! opening them again, and sweeping payloads that no document points to.

pub mod agent_pages;
pub mod deliveries;
pub mod delivery;
pub mod lock;
pub mod metadata;
pub mod pages;
pub mod passkeys;
mod reading;
mod recipient_keys;
pub mod security_pages;
pub mod sender_encrypted;
mod sweep;

use serde::Serialize;

pub(crate) use delivery::resolve_recipient;
pub use delivery::{
    Delivered, IdempotencyKey, IncomingFile, MANIFEST_LINE_KEY_PREFIX, SealedMetadata, Upload,
    begin_delivery,
};
pub use metadata::{DeliveryMetadata, MetadataError, Recipient};
pub use reading::{
    EncryptedDocument, OpenedDocument, encrypted_document, open_document, read_to_vec,
};
pub use recipient_keys::{KeyLookupError, vault_key_for};
pub use sweep::{ORPHAN_GRACE, sweep_orphan_payloads};

use crate::citizens::CitizenError;
use crate::crypto::SealError;
use crate::db::DbError;
use crate::storage::StorageError;

/// `documents.encrypted_by` of a document the server encrypted as it arrived.
pub const ENCRYPTED_BY_SERVER: &str = "server";
/// `documents.encrypted_by` of a document its sender encrypted (end to end).
pub const ENCRYPTED_BY_SENDER: &str = "sender";

/// A document's identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentId(pub String);

impl DocumentId {
    /// Parses an identifier from a URL (a UUID).
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|id| Self(id.to_string()))
    }
}

/// Where a document stands, derived from its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentState {
    Stored,
    Notified,
    Opened,
    Withdrawn,
}

/// What an agent may see of a delivered document: no title, no recipient.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentStatus {
    pub id: String,
    pub state: DocumentState,
    pub category: String,
    pub department: Option<String>,
    /// Size of the original file, in bytes.
    pub size: i64,
    pub created_at: chrono::NaiveDateTime,
    pub notified_at: Option<chrono::NaiveDateTime>,
    pub first_opened_at: Option<chrono::NaiveDateTime>,
    pub withdrawn_at: Option<chrono::NaiveDateTime>,
    /// Why it was withdrawn, as the agent wrote it (the citizen sees it too).
    pub withdrawal_reason: Option<String>,
    /// Encrypted by its sender before it left their machine; otherwise the server
    /// encrypted it on arrival.
    pub end_to_end: bool,
    /// The citizen lost every way into their locked vault and started a new one: this
    /// document can no longer be opened by anyone; deliver it again.
    pub unrecoverable: bool,
}

/// Errors of the vault, each with a meaning the web edge can tell the client.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("this account may not deliver documents")]
    Forbidden,
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("no citizen with this identifier")]
    UnknownRecipient,
    #[error("no such department in this tenant")]
    UnknownDepartment,
    #[error("this department is archived and receives no new documents")]
    ArchivedDepartment,
    #[error("you do not deliver for this department")]
    DepartmentNotAllowed,
    #[error("name the department this document is delivered for")]
    DepartmentRequired,
    #[error("this document is already withdrawn")]
    AlreadyWithdrawn,
    #[error("give a reason for the withdrawal (1 to 500 characters)")]
    WithdrawalReason,
    #[error("the document is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the document is empty")]
    EmptyDocument,
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyConflict,
    #[error("no such document")]
    NotFound,
    #[error("the vault's key changed (it was locked); ask for its key again and re-encrypt")]
    RecipientChanged,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("encryption: {0}")]
    Crypto(#[from] SealError),
    #[error("{0}")]
    Internal(String),
}

impl From<diesel::result::Error> for DocumentError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<CitizenError> for DocumentError {
    fn from(error: CitizenError) -> Self {
        match error {
            CitizenError::Database(error) => Self::Database(error),
            CitizenError::Key(error) => Self::Crypto(error),
        }
    }
}

impl From<std::io::Error> for DocumentError {
    fn from(error: std::io::Error) -> Self {
        Self::Crypto(SealError::Encrypt(error.to_string()))
    }
}
