//! Notices that tell a citizen a document waits in their vault: the outbox rows written
//! with the delivery, the worker that sends them (email, SMS or, in demo mode, a local
//! outbox), their texts, and the check that no notice ever carries a link.

mod channels;
pub mod demo_outbox;
mod email;
pub mod link_free;
mod outbox;
mod reminder;
mod sms;
mod status;
mod targets;
pub mod texts;
mod worker;

use serde::{Deserialize, Serialize};

use crate::crypto::SealError;
use crate::db::DbError;

pub use channels::Channels;
pub use email::check_email_config;
pub use outbox::{
    Outcome, claim_due_notices, enqueue_document_notices, enqueue_notices,
    forget_withdrawn_document, record_outcomes,
};
pub use reminder::queue_reminders;
pub use sms::check_sms_config;
pub use status::{NoticeStatus, dead_notices_per_tenant, notices_for_documents};
pub use targets::{NoticeTargets, notice_targets};
pub use worker::Worker;

/// How a notice reaches the citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeChannel {
    Email,
    Sms,
}

impl NoticeChannel {
    /// The value stored in `notices.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// Reads a stored value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// New documents wait in the vault.
    Document,
    /// Documents delivered days ago are still unopened.
    Reminder,
}

impl NoticeKind {
    /// The value stored in `notices.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Reminder => "reminder",
        }
    }

    /// Reads a stored value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "document" => Some(Self::Document),
            "reminder" => Some(Self::Reminder),
            _ => None,
        }
    }
}

/// Where a notice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeState {
    /// Waiting for its time (gathering documents, or before a retry).
    Pending,
    /// Claimed by a worker that is sending it.
    Sending,
    Sent,
    /// Given up: refused by a channel, by the link-free check, or out of attempts.
    Dead,
}

impl NoticeState {
    /// The value stored in `notices.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    /// Reads a stored value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "sending" => Some(Self::Sending),
            "sent" => Some(Self::Sent),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// Failures of the notification machinery (not of one send: those are recorded on
/// the notice as a short code).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("sealing: {0}")]
    Crypto(#[from] SealError),
    #[error("{0}")]
    Setup(String),
}

impl From<diesel::result::Error> for NotifyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<crate::citizens::CitizenError> for NotifyError {
    fn from(error: crate::citizens::CitizenError) -> Self {
        match error {
            crate::citizens::CitizenError::Database(error) => Self::Database(error),
            crate::citizens::CitizenError::Key(error) => Self::Crypto(error),
        }
    }
}

impl From<NotifyError> for crate::vault::DocumentError {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::Database(error) => Self::Database(error),
            NotifyError::Crypto(error) => Self::Crypto(error),
            NotifyError::Setup(message) => Self::Internal(message),
        }
    }
}
