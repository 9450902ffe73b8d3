//! Locking a vault: from this transaction on, the server holds nothing that opens it.
//!
//! The citizen's page generated a new vault identity and sends only its public
//! recipient, the identity wrapped by a key derived from the passkey's PRF output, and a
//! copy sealed under the recovery code. Everything escrowed under the old identity moves
//! to the new recipient here — document headers (same file key, new stanza, new MAC;
//! payloads untouched), sealed titles and file names, vault voucher codes — and the
//! escrowed identity is deleted. The notification contacts move to the server's
//! contacts key, because notices must still be sent. All of it commits or none does.

use diesel::prelude::*;

use crate::audit::{self, Actor, AuditEvent};
use crate::citizens::ServerKeys;
use crate::crypto::{
    SealError, VaultIdentity, VaultRecipient, header_stanza_tags, rewrap, seal, unseal,
};
use crate::db::schema::{
    citizens, documents, notices, vault_escrow, vault_passkeys, vault_recovery, vouchers,
};
use crate::db::{Conn, DbError};

/// AES-GCM's nonce and tag around an `AGE-SECRET-KEY-1…` string (74 characters): a
/// wrapped identity is about 102 bytes; anything far from that is not one.
const WRAPPED_IDENTITY_LENGTH: std::ops::RangeInclusive<usize> = 90..=160;
/// A recovery copy is an age file of one scrypt stanza around that string.
const RECOVERY_COPY_MAX_LENGTH: usize = 1024;
/// Per-passkey PRF salts are 32 random bytes.
pub const PRF_SALT_LENGTH: usize = 32;
/// What a citizen may call a passkey.
const LABEL_MAX_CHARS: usize = 60;

/// One passkey able to open a locked vault, as the server keeps it.
pub struct NewPasskey {
    /// The credential id, base64url.
    pub credential_id: String,
    /// The WebAuthn library's record of the credential (public key, sign count), as
    /// JSON: what verifies the passkey's later assertions.
    pub record: String,
    pub prf_salt: Vec<u8>,
    /// The vault identity wrapped by the key derived from this passkey's PRF output.
    pub wrapped_identity: Vec<u8>,
    pub label: String,
}

/// What the citizen's page sends to lock the vault (after the passkey's registration
/// was checked).
pub struct LockRequest {
    pub recipient: VaultRecipient,
    pub passkey: NewPasskey,
    /// The vault identity in an age file sealed under the recovery code.
    pub recovery_copy: Vec<u8>,
}

/// What a lock moved to the new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockReport {
    pub documents: usize,
    pub vouchers: usize,
    pub contacts: usize,
}

/// Why a vault could not be locked; none of them changed anything.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("this vault is already locked")]
    AlreadyLocked,
    #[error("this vault is not locked")]
    NotLocked,
    #[error("the recovery copy is not an age file sealed under one passphrase")]
    InvalidRecoveryCopy,
    #[error("the wrapped vault key does not have the expected size")]
    InvalidWrappedIdentity,
    #[error("the PRF salt must be {PRF_SALT_LENGTH} bytes")]
    InvalidSalt,
    #[error("this passkey already opens a vault")]
    PasskeyInUse,
    #[error("a sealed value of the vault could not be moved: {0}")]
    Key(#[from] SealError),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for LockError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

impl NewPasskey {
    /// Checks what the server can of what the page sent: sizes, and a label trimmed to
    /// something a list can show.
    pub fn checked(self) -> Result<Self, LockError> {
        if self.prf_salt.len() != PRF_SALT_LENGTH {
            return Err(LockError::InvalidSalt);
        }
        if !WRAPPED_IDENTITY_LENGTH.contains(&self.wrapped_identity.len()) {
            return Err(LockError::InvalidWrappedIdentity);
        }
        let label: String = self
            .label
            .chars()
            .filter(|c| !c.is_control())
            .take(LABEL_MAX_CHARS)
            .collect();
        Ok(Self {
            label: label.trim().to_owned(),
            ..self
        })
    }
}

/// Locks the citizen's vault. Runs inside the caller's write transaction: a failure
/// anywhere (or a restart mid-way) leaves the vault exactly as it was.
pub fn lock_vault(
    conn: &mut Conn,
    keys: ServerKeys<'_>,
    citizen_id: &str,
    request: LockRequest,
) -> Result<LockReport, LockError> {
    let passkey = request.passkey.checked()?;
    check_recovery_copy(&request.recovery_copy)?;
    // Deleting the escrow row is what claims the lock: of two locks at once, the
    // second finds nothing to delete (and waits for the first's transaction to end).
    let wrapped: Option<Vec<u8>> = diesel::delete(vault_escrow::table.find(citizen_id))
        .returning(vault_escrow::wrapped_identity)
        .get_result(conn)
        .optional()?;
    let old = keys
        .master
        .unwrap_identity(&wrapped.ok_or(LockError::AlreadyLocked)?)?;
    let new = &request.recipient;

    let documents = move_documents(conn, citizen_id, &old, new)?;
    let vouchers = move_voucher_codes(conn, citizen_id, &old, new)?;
    let contacts = move_contacts(conn, citizen_id, &old, &keys.contacts.recipient())?;
    diesel::update(citizens::table.find(citizen_id))
        .set((
            citizens::recipient.eq(new.to_string()),
            citizens::locked_at.eq(crate::now()),
        ))
        .execute(conn)?;
    insert_passkey(conn, citizen_id, &passkey)?;
    diesel::insert_into(vault_recovery::table)
        .values((
            vault_recovery::citizen_id.eq(citizen_id),
            vault_recovery::sealed_identity.eq(&request.recovery_copy),
            vault_recovery::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Citizen(citizen_id.to_owned()), "vault.locked")
            .citizen(citizen_id)
            .details(serde_json::json!({
                "documents": documents,
                "vouchers": vouchers,
                "contacts": contacts,
            })),
    )?;
    Ok(LockReport {
        documents,
        vouchers,
        contacts,
    })
}

/// Stores one more passkey of a vault. The credential id is unique across vaults: a
/// passkey already registered (here or elsewhere) is refused.
pub fn insert_passkey(
    conn: &mut Conn,
    citizen_id: &str,
    passkey: &NewPasskey,
) -> Result<String, LockError> {
    let taken: i64 = vault_passkeys::table
        .filter(vault_passkeys::credential_id.eq(&passkey.credential_id))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Err(LockError::PasskeyInUse);
    }
    let id = crate::new_id();
    diesel::insert_into(vault_passkeys::table)
        .values((
            vault_passkeys::id.eq(&id),
            vault_passkeys::citizen_id.eq(citizen_id),
            vault_passkeys::credential_id.eq(&passkey.credential_id),
            vault_passkeys::passkey.eq(&passkey.record),
            vault_passkeys::prf_salt.eq(&passkey.prf_salt),
            vault_passkeys::wrapped_identity.eq(&passkey.wrapped_identity),
            vault_passkeys::label.eq(&passkey.label),
            vault_passkeys::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// A recovery copy must be an age file sealed under a passphrase, and only that: a
/// copy sealed to some key instead would let that key's holder open the vault.
fn check_recovery_copy(copy: &[u8]) -> Result<(), LockError> {
    if copy.len() > RECOVERY_COPY_MAX_LENGTH {
        return Err(LockError::InvalidRecoveryCopy);
    }
    let tags = header_stanza_tags(copy).map_err(|_| LockError::InvalidRecoveryCopy)?;
    match tags.as_slice() {
        [only] if only.starts_with("scrypt ") => Ok(()),
        _ => Err(LockError::InvalidRecoveryCopy),
    }
}

type DocumentKeys = (String, Vec<u8>, Vec<u8>);

/// Every document still in the vault: new header, metadata sealed again. The payloads
/// in the object store are not touched. (A withdrawn document kept neither; one left
/// unrecoverable by a start-over has no key to move.)
fn move_documents(
    conn: &mut Conn,
    citizen_id: &str,
    old: &VaultIdentity,
    new: &VaultRecipient,
) -> Result<usize, LockError> {
    let rows: Vec<DocumentKeys> = documents::table
        .filter(documents::citizen_id.eq(citizen_id))
        .filter(documents::withdrawn_at.is_null())
        .filter(documents::unrecoverable_at.is_null())
        .select((
            documents::id,
            documents::age_header,
            documents::sealed_metadata,
        ))
        .load(conn)?;
    for (id, header, sealed) in &rows {
        let header = rewrap(header, old, new)?;
        let sealed = seal(new, &unseal(old, sealed)?)?;
        diesel::update(documents::table.find(id))
            .set((
                documents::age_header.eq(header),
                documents::sealed_metadata.eq(sealed),
            ))
            .execute(conn)?;
    }
    Ok(rows.len())
}

/// The codes of the vouchers placed in the vault.
fn move_voucher_codes(
    conn: &mut Conn,
    citizen_id: &str,
    old: &VaultIdentity,
    new: &VaultRecipient,
) -> Result<usize, LockError> {
    let rows: Vec<(String, Vec<u8>)> = vouchers::table
        .filter(vouchers::citizen_id.eq(citizen_id))
        .filter(vouchers::sealed_code.is_not_null())
        .select((vouchers::id, vouchers::sealed_code.assume_not_null()))
        .load(conn)?;
    for (id, sealed) in &rows {
        let sealed = seal(new, &unseal(old, sealed)?)?;
        diesel::update(vouchers::table.find(id))
            .set(vouchers::sealed_code.eq(sealed))
            .execute(conn)?;
    }
    Ok(rows.len())
}

/// The citizen's settings and the address frozen in each of their notices (reminders
/// read those), moved from the key `old` to `new` (to the server's contacts key when a
/// vault is locked, back to the vault's key when it starts over).
fn move_contacts(
    conn: &mut Conn,
    citizen_id: &str,
    old: &VaultIdentity,
    new: &VaultRecipient,
) -> Result<usize, LockError> {
    let settings: Option<Vec<u8>> = citizens::table
        .find(citizen_id)
        .select(citizens::sealed_contacts)
        .first(conn)?;
    let mut moved = 0;
    if let Some(sealed) = settings {
        diesel::update(citizens::table.find(citizen_id))
            .set(citizens::sealed_contacts.eq(seal(new, &unseal(old, &sealed)?)?))
            .execute(conn)?;
        moved += 1;
    }
    let frozen: Vec<(String, Vec<u8>)> = notices::table
        .filter(notices::citizen_id.eq(citizen_id))
        .select((notices::id, notices::sealed_contact))
        .load(conn)?;
    for (id, sealed) in &frozen {
        diesel::update(notices::table.find(id))
            .set(notices::sealed_contact.eq(seal(new, &unseal(old, sealed)?)?))
            .execute(conn)?;
    }
    Ok(moved + frozen.len())
}

/// What starting over left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartOverReport {
    /// Documents no key opens any more: the commune is told to deliver them again.
    pub unrecoverable: usize,
}

/// Gives a citizen who lost every passkey and the recovery code a new, empty vault:
/// a new key (escrowed, as for any vault never locked), no passkey, no recovery copy.
/// The documents sealed to the lost key stay listed as unrecoverable — nobody can open
/// them any more, the server included — and their senders see which to deliver again.
/// Voucher codes sealed to the lost key are dropped (the commune issues new ones).
pub fn start_over(
    conn: &mut Conn,
    keys: ServerKeys<'_>,
    citizen_id: &str,
) -> Result<StartOverReport, LockError> {
    // Unlocking the row is what claims the start-over: of two at once, one finds the
    // vault no longer locked.
    let identity = VaultIdentity::generate();
    let unlocked = diesel::update(
        citizens::table
            .find(citizen_id)
            .filter(citizens::locked_at.is_not_null()),
    )
    .set((
        citizens::recipient.eq(identity.recipient().to_string()),
        citizens::locked_at.eq(None::<chrono::NaiveDateTime>),
    ))
    .execute(conn)?;
    if unlocked == 0 {
        return Err(LockError::NotLocked);
    }
    diesel::insert_into(vault_escrow::table)
        .values((
            vault_escrow::citizen_id.eq(citizen_id),
            vault_escrow::wrapped_identity.eq(keys.master.wrap_identity(&identity)?),
        ))
        .execute(conn)?;
    diesel::delete(vault_passkeys::table.filter(vault_passkeys::citizen_id.eq(citizen_id)))
        .execute(conn)?;
    diesel::delete(vault_recovery::table.find(citizen_id)).execute(conn)?;
    // The contacts go back under the vault's own (escrowed) key, as for any vault
    // never locked.
    move_contacts(conn, citizen_id, keys.contacts, &identity.recipient())?;
    let unrecoverable = diesel::update(
        documents::table
            .filter(documents::citizen_id.eq(citizen_id))
            .filter(documents::withdrawn_at.is_null())
            .filter(documents::unrecoverable_at.is_null()),
    )
    .set(documents::unrecoverable_at.eq(crate::now()))
    .execute(conn)?;
    diesel::update(
        vouchers::table
            .filter(vouchers::citizen_id.eq(citizen_id))
            .filter(vouchers::sealed_code.is_not_null()),
    )
    .set(vouchers::sealed_code.eq(None::<Vec<u8>>))
    .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Citizen(citizen_id.to_owned()), "vault.started_over")
            .citizen(citizen_id)
            .details(serde_json::json!({ "unrecoverable_documents": unrecoverable })),
    )?;
    Ok(StartOverReport { unrecoverable })
}
