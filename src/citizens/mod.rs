//! Citizens and their vault keys. A citizen row exists as soon as a document is
//! addressed to them, before any login: it holds the vault's public recipient and keyed
//! hashes of the identities they were named by. The vault key itself rests in escrow
//! (wrapped by the master key) until the citizen locks the vault; a locked vault's key
//! exists only wrapped by the citizen's passkeys and recovery code (`vault::lock`).

mod contacts;
mod identity;
mod login;

use diesel::prelude::*;

pub use contacts::{
    Channel, NotificationContacts, notification_contacts, open_contact, save_notification_contacts,
    saved_notification_contacts,
};
pub use identity::{IdentityError, NationalRegisterNumber, PivotIdentity, PivotInput};
pub use login::{AssertedIdentity, LoginMatch, ProviderAccount, citizen_for_login};

use crate::crypto::{HashDomain, KeyedHasher, MasterKey, SealError, VaultIdentity, VaultRecipient};
use crate::db::schema::{citizens, vault_escrow};
use crate::db::{AnyConnection, Conn, DbError};

/// How a document names its recipient, reduced to what may be stored.
#[derive(Debug, Clone)]
pub enum RecipientIndex {
    /// Keyed hash of a normalised pivot identity.
    Pivot(String),
    /// Keyed hash of a national register number.
    NationalRegisterNumber(String),
}

impl RecipientIndex {
    pub fn of_pivot(hasher: &KeyedHasher, pivot: &PivotIdentity) -> Self {
        Self::Pivot(hasher.hash(HashDomain::PivotIdentity, pivot.canonical().as_bytes()))
    }

    pub fn of_nrn(hasher: &KeyedHasher, nrn: &NationalRegisterNumber) -> Self {
        Self::NationalRegisterNumber(
            hasher.hash(HashDomain::NationalRegisterNumber, nrn.as_str().as_bytes()),
        )
    }
}

/// What encrypting to a citizen needs: their id and public recipient.
#[derive(Clone)]
pub struct CitizenKey {
    pub id: String,
    pub recipient: VaultRecipient,
    /// Whether the vault is locked: the server holds nothing that opens it.
    pub locked: bool,
}

impl CitizenKey {
    /// The key the citizen's notification contacts are sealed to: their own while the
    /// server holds it in escrow, the server's contacts key once the vault is locked
    /// (notices must still be sent, so the server must still read where to).
    pub fn contacts_recipient(&self, contacts_key: &VaultRecipient) -> VaultRecipient {
        if self.locked {
            contacts_key.clone()
        } else {
            self.recipient.clone()
        }
    }
}

/// The keys the server holds that citizens' records need: the master key, which opens
/// escrowed vault keys, and the contacts key, which opens the notification contacts of
/// locked vaults.
#[derive(Clone, Copy)]
pub struct ServerKeys<'a> {
    pub master: &'a MasterKey,
    pub contacts: &'a VaultIdentity,
}

/// Errors of the citizen records.
#[derive(Debug, thiserror::Error)]
pub enum CitizenError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("vault key: {0}")]
    Key(#[from] SealError),
}

impl From<diesel::result::Error> for CitizenError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

#[derive(Insertable)]
#[diesel(table_name = citizens)]
struct NewCitizen {
    id: String,
    recipient: String,
    pivot_hash: Option<String>,
    nrn_hash: Option<String>,
    created_at: chrono::NaiveDateTime,
}

/// The citizen with this id.
pub fn find_citizen(conn: &mut Conn, id: &str) -> Result<Option<CitizenKey>, CitizenError> {
    let found: Option<(String, String, Option<chrono::NaiveDateTime>)> = citizens::table
        .find(id)
        .select(KEY_COLUMNS)
        .first(conn)
        .optional()?;
    found.map(citizen_key).transpose()
}

const KEY_COLUMNS: (citizens::id, citizens::recipient, citizens::locked_at) =
    (citizens::id, citizens::recipient, citizens::locked_at);

fn citizen_key(
    (id, recipient, locked_at): (String, String, Option<chrono::NaiveDateTime>),
) -> Result<CitizenKey, CitizenError> {
    Ok(CitizenKey {
        id,
        recipient: VaultRecipient::parse(&recipient)?,
        locked: locked_at.is_some(),
    })
}

/// Whether the citizen's vault is locked (false for an unknown citizen).
pub fn is_locked(conn: &mut Conn, id: &str) -> Result<bool, CitizenError> {
    Ok(find_citizen(conn, id)?.is_some_and(|citizen| citizen.locked))
}

/// The citizen named by `index`, created (with a new vault key) if nobody was named so
/// before. Safe under concurrency: two deliveries to the same new person give one row.
pub fn find_or_create_citizen(
    conn: &mut Conn,
    master: &MasterKey,
    index: &RecipientIndex,
) -> Result<CitizenKey, CitizenError> {
    if let Some(found) = find_by_index(conn, index)? {
        return Ok(found);
    }
    insert_citizen(conn, master, Some(index))?;
    find_by_index(conn, index)?
        .ok_or_else(|| DbError::Query(diesel::result::Error::NotFound).into())
}

/// Creates a citizen with a new vault key, escrowed under the master key in the same
/// transaction: the one way a citizen row comes to exist. `None` when another row
/// already holds `index` (a concurrent delivery won the race).
pub(crate) fn insert_citizen(
    conn: &mut Conn,
    master: &MasterKey,
    index: Option<&RecipientIndex>,
) -> Result<Option<String>, CitizenError> {
    let identity = VaultIdentity::generate();
    let (pivot_hash, nrn_hash) = match index {
        Some(RecipientIndex::Pivot(hash)) => (Some(hash.clone()), None),
        Some(RecipientIndex::NationalRegisterNumber(hash)) => (None, Some(hash.clone())),
        None => (None, None),
    };
    let row = NewCitizen {
        id: crate::new_id(),
        recipient: identity.recipient().to_string(),
        pivot_hash,
        nrn_hash,
        created_at: crate::now(),
    };
    let wrapped_identity = master.wrap_identity(&identity)?;
    conn.transaction(|conn| {
        // An insert that loses a race must not abort the surrounding PostgreSQL
        // transaction, hence ON CONFLICT DO NOTHING (which diesel's multi-backend
        // connection does not offer, so each engine gets the same statement).
        let insert = diesel::insert_into(citizens::table).values(&row);
        let inserted = match conn {
            AnyConnection::Postgresql(conn) => insert.on_conflict_do_nothing().execute(conn)?,
            AnyConnection::Sqlite(conn) => insert.on_conflict_do_nothing().execute(conn)?,
        };
        if inserted == 0 {
            return Ok(None);
        }
        diesel::insert_into(vault_escrow::table)
            .values((
                vault_escrow::citizen_id.eq(&row.id),
                vault_escrow::wrapped_identity.eq(&wrapped_identity),
            ))
            .execute(conn)?;
        Ok(Some(row.id.clone()))
    })
}

pub(crate) fn find_by_index(
    conn: &mut Conn,
    index: &RecipientIndex,
) -> Result<Option<CitizenKey>, CitizenError> {
    let query = citizens::table.select(KEY_COLUMNS);
    let found: Option<(String, String, Option<chrono::NaiveDateTime>)> = match index {
        RecipientIndex::Pivot(hash) => query
            .filter(citizens::pivot_hash.eq(hash))
            .first(conn)
            .optional()?,
        RecipientIndex::NationalRegisterNumber(hash) => query
            .filter(citizens::nrn_hash.eq(hash))
            .first(conn)
            .optional()?,
    };
    found.map(citizen_key).transpose()
}

/// What the server can do with a citizen's vault.
pub enum VaultAccess {
    /// The vault key is in escrow: here it is, unwrapped (only to act for that citizen).
    Escrowed(VaultIdentity),
    /// Locked with a passkey: the key is not on the server.
    Locked,
    /// Nobody has this id.
    Unknown,
}

/// Unwraps a citizen's escrowed vault key, or says why there is none.
pub fn vault_access(
    conn: &mut Conn,
    master: &MasterKey,
    citizen_id: &str,
) -> Result<VaultAccess, CitizenError> {
    let wrapped: Option<Vec<u8>> = vault_escrow::table
        .find(citizen_id)
        .select(vault_escrow::wrapped_identity)
        .first(conn)
        .optional()?;
    if let Some(wrapped) = wrapped {
        return Ok(VaultAccess::Escrowed(master.unwrap_identity(&wrapped)?));
    }
    Ok(match find_citizen(conn, citizen_id)? {
        Some(citizen) if citizen.locked => VaultAccess::Locked,
        _ => VaultAccess::Unknown,
    })
}

/// Re-wraps every escrowed vault identity from `old` to `new` (master key rotation).
/// Documents are untouched: they are encrypted to the citizens' keys, which do not
/// change; locked vaults have nothing here.
pub fn rewrap_vault_identities(
    conn: &mut Conn,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<u64, CitizenError> {
    const BATCH: i64 = 500;
    let mut last_id = String::new();
    let mut count = 0;
    loop {
        let batch: Vec<(String, Vec<u8>)> = vault_escrow::table
            .filter(vault_escrow::citizen_id.gt(&last_id))
            .order(vault_escrow::citizen_id.asc())
            .select((vault_escrow::citizen_id, vault_escrow::wrapped_identity))
            .limit(BATCH)
            .load(conn)?;
        let Some((id, _)) = batch.last() else {
            return Ok(count);
        };
        last_id = id.clone();
        for (id, wrapped) in batch {
            let identity = old.unwrap_identity(&wrapped)?;
            diesel::update(vault_escrow::table.find(&id))
                .set(vault_escrow::wrapped_identity.eq(new.wrap_identity(&identity)?))
                .execute(conn)?;
            count += 1;
        }
    }
}
