//! Citizens and their vault keys. A citizen row exists as soon as a document is
//! addressed to them, before any login: it holds the vault key (wrapped by the master
//! key), its public recipient, and keyed hashes of the identities they were named by.

mod contacts;
mod identity;
mod login;

use diesel::prelude::*;

pub use contacts::{
    Channel, NotificationContacts, notification_contacts, save_notification_contacts,
    saved_notification_contacts,
};
pub use identity::{IdentityError, NationalRegisterNumber, PivotIdentity, PivotInput};
pub use login::{AssertedIdentity, LoginMatch, ProviderAccount, citizen_for_login};

use crate::crypto::{HashDomain, KeyedHasher, MasterKey, SealError, VaultIdentity, VaultRecipient};
use crate::db::schema::citizens;
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
    wrapped_identity: Vec<u8>,
    pivot_hash: Option<String>,
    nrn_hash: Option<String>,
    created_at: chrono::NaiveDateTime,
}

/// The citizen with this id.
pub fn find_citizen(conn: &mut Conn, id: &str) -> Result<Option<CitizenKey>, CitizenError> {
    let recipient: Option<String> = citizens::table
        .find(id)
        .select(citizens::recipient)
        .first(conn)
        .optional()?;
    recipient
        .map(|recipient| {
            Ok(CitizenKey {
                id: id.to_owned(),
                recipient: VaultRecipient::parse(&recipient)?,
            })
        })
        .transpose()
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
    let identity = VaultIdentity::generate();
    let (pivot_hash, nrn_hash) = match index {
        RecipientIndex::Pivot(hash) => (Some(hash.clone()), None),
        RecipientIndex::NationalRegisterNumber(hash) => (None, Some(hash.clone())),
    };
    let row = NewCitizen {
        id: crate::new_id(),
        recipient: identity.recipient().to_string(),
        wrapped_identity: master.wrap_identity(&identity)?,
        pivot_hash,
        nrn_hash,
        created_at: crate::now(),
    };
    // An insert that loses a race must not abort the surrounding PostgreSQL
    // transaction, hence ON CONFLICT DO NOTHING (which diesel's multi-backend
    // connection does not offer, so each engine gets the same statement).
    let insert = diesel::insert_into(citizens::table).values(&row);
    match conn {
        AnyConnection::Postgresql(conn) => insert.on_conflict_do_nothing().execute(conn)?,
        AnyConnection::Sqlite(conn) => insert.on_conflict_do_nothing().execute(conn)?,
    };
    find_by_index(conn, index)?
        .ok_or_else(|| DbError::Query(diesel::result::Error::NotFound).into())
}

pub(crate) fn find_by_index(
    conn: &mut Conn,
    index: &RecipientIndex,
) -> Result<Option<CitizenKey>, CitizenError> {
    let query = citizens::table.select((citizens::id, citizens::recipient));
    let found: Option<(String, String)> = match index {
        RecipientIndex::Pivot(hash) => query
            .filter(citizens::pivot_hash.eq(hash))
            .first(conn)
            .optional()?,
        RecipientIndex::NationalRegisterNumber(hash) => query
            .filter(citizens::nrn_hash.eq(hash))
            .first(conn)
            .optional()?,
    };
    found
        .map(|(id, recipient)| {
            Ok(CitizenKey {
                id,
                recipient: VaultRecipient::parse(&recipient)?,
            })
        })
        .transpose()
}

/// Unwraps a citizen's vault identity (only to decrypt for that citizen).
pub fn unwrap_vault_identity(
    conn: &mut Conn,
    master: &MasterKey,
    citizen_id: &str,
) -> Result<Option<VaultIdentity>, CitizenError> {
    let wrapped: Option<Vec<u8>> = citizens::table
        .find(citizen_id)
        .select(citizens::wrapped_identity)
        .first(conn)
        .optional()?;
    Ok(wrapped
        .map(|wrapped| master.unwrap_identity(&wrapped))
        .transpose()?)
}

/// Re-wraps every vault identity from `old` to `new` (master key rotation). Documents
/// are untouched: they are encrypted to the citizens' keys, which do not change.
pub fn rewrap_vault_identities(
    conn: &mut Conn,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<u64, CitizenError> {
    const BATCH: i64 = 500;
    let mut last_id = String::new();
    let mut count = 0;
    loop {
        let batch: Vec<(String, Vec<u8>)> = citizens::table
            .filter(citizens::id.gt(&last_id))
            .order(citizens::id.asc())
            .select((citizens::id, citizens::wrapped_identity))
            .limit(BATCH)
            .load(conn)?;
        let Some((id, _)) = batch.last() else {
            return Ok(count);
        };
        last_id = id.clone();
        for (id, wrapped) in batch {
            let identity = old.unwrap_identity(&wrapped)?;
            diesel::update(citizens::table.find(&id))
                .set(citizens::wrapped_identity.eq(new.wrap_identity(&identity)?))
                .execute(conn)?;
            count += 1;
        }
    }
}
