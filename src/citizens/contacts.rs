//! Where a citizen wants to be told that a document is waiting. Sealed to their own
//! vault key while the server holds it in escrow, and to the server's contacts key once
//! the vault is locked: the notification worker must be able to read it either way.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::{CitizenError, ServerKeys, VaultAccess, find_citizen};
use crate::audit::{self, Actor, AuditEvent};
use crate::crypto::{SealError, VaultRecipient, seal, unseal};
use crate::db::Conn;
use crate::db::schema::citizens;

/// How to notify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Email,
    Sms,
    Both,
    None,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Self::Email, Self::Sms, Self::Both, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Both => "both",
            Self::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

/// A citizen's notification settings (email and phone already validated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationContacts {
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    pub channel: Channel,
}

/// The citizen's settings, or the defaults when none were saved.
pub fn notification_contacts(
    conn: &mut Conn,
    keys: ServerKeys<'_>,
    citizen_id: &str,
) -> Result<NotificationContacts, CitizenError> {
    Ok(saved_notification_contacts(conn, keys, citizen_id)?.unwrap_or_default())
}

/// The citizen's settings, or `None` when they never saved any.
pub fn saved_notification_contacts(
    conn: &mut Conn,
    keys: ServerKeys<'_>,
    citizen_id: &str,
) -> Result<Option<NotificationContacts>, CitizenError> {
    let sealed: Option<Vec<u8>> = citizens::table
        .find(citizen_id)
        .select(citizens::sealed_contacts)
        .first::<Option<Vec<u8>>>(conn)
        .optional()?
        .flatten();
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = open_contact(conn, keys, citizen_id, &sealed)?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|error| CitizenError::Key(crate::crypto::SealError::Decrypt(error.to_string())))
}

/// Opens a contact sealed for this citizen (their settings, or a notice's frozen
/// address): with the escrowed vault key, or the contacts key once the vault is locked.
pub fn open_contact(
    conn: &mut Conn,
    keys: ServerKeys<'_>,
    citizen_id: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, CitizenError> {
    match super::vault_access(conn, keys.master, citizen_id)? {
        VaultAccess::Escrowed(identity) => Ok(unseal(&identity, sealed)?),
        VaultAccess::Locked => Ok(unseal(keys.contacts, sealed)?),
        VaultAccess::Unknown => Err(CitizenError::Key(SealError::Decrypt(
            "no key opens this citizen's contacts".to_owned(),
        ))),
    }
}

/// Saves the citizen's settings, sealed to their key (or, for a locked vault, to the
/// contacts key), and records that they changed.
pub fn save_notification_contacts(
    conn: &mut Conn,
    contacts_key: &VaultRecipient,
    citizen_id: &str,
    contacts: &NotificationContacts,
) -> Result<(), CitizenError> {
    let citizen = find_citizen(conn, citizen_id)?.ok_or(CitizenError::Database(
        crate::db::DbError::Query(diesel::result::Error::NotFound),
    ))?;
    let plain = serde_json::to_vec(contacts)
        .map_err(|error| CitizenError::Key(crate::crypto::SealError::Encrypt(error.to_string())))?;
    diesel::update(citizens::table.find(citizen_id))
        .set(citizens::sealed_contacts.eq(seal(&citizen.contacts_recipient(contacts_key), &plain)?))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(
            Actor::Citizen(citizen_id.to_owned()),
            "citizen.contacts_updated",
        )
        .citizen(citizen_id)
        .details(serde_json::json!({ "channel": contacts.channel.as_str() })),
    )?;
    Ok(())
}
