//! Which vault a provider account opens. A citizen is keyed by (issuer, `sub`); at the
//! first login of an account, the identity it asserts (pivot identity, or national
//! register number) is matched to the vault documents were already addressed to.
//! Email is never used to match: families share one.

use diesel::prelude::*;

use super::{CitizenError, NationalRegisterNumber, PivotIdentity, RecipientIndex};
use crate::audit::{self, Actor, AuditEvent};
use crate::crypto::{KeyedHasher, MasterKey, VaultIdentity};
use crate::db::Conn;
use crate::db::schema::{citizen_logins, citizens};

/// What a provider asserted about the person, once parsed.
#[derive(Debug, Clone)]
pub enum AssertedIdentity {
    Pivot(PivotIdentity),
    NationalRegisterNumber(NationalRegisterNumber),
    /// The provider gave nothing to match on (a generic provider).
    Unmatched,
}

/// The account that logged in.
pub struct ProviderAccount<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub provider_id: &'a str,
}

/// How the login was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMatch {
    /// The account was linked before.
    Known,
    /// First login: linked to the vault documents were addressed to.
    MatchedExisting,
    /// First login: a new vault.
    NewVault,
    /// First login: the identity matches a vault already opened through another
    /// provider; it is not merged silently, the account gets a vault of its own.
    KeptApart,
}

/// Finds or links the vault of `account`, recording the outcome in the audit log.
pub fn citizen_for_login(
    conn: &mut Conn,
    master: &MasterKey,
    hasher: &KeyedHasher,
    account: &ProviderAccount<'_>,
    identity: &AssertedIdentity,
) -> Result<(String, LoginMatch), CitizenError> {
    let now = crate::now();
    let known: Option<String> = citizen_logins::table
        .find((account.issuer, account.subject))
        .select(citizen_logins::citizen_id)
        .first(conn)
        .optional()?;
    if let Some(citizen_id) = known {
        diesel::update(citizen_logins::table.find((account.issuer, account.subject)))
            .set(citizen_logins::last_login_at.eq(now))
            .execute(conn)?;
        return Ok((citizen_id, LoginMatch::Known));
    }

    let index = match identity {
        AssertedIdentity::Pivot(pivot) => Some(RecipientIndex::of_pivot(hasher, pivot)),
        AssertedIdentity::NationalRegisterNumber(nrn) => Some(RecipientIndex::of_nrn(hasher, nrn)),
        AssertedIdentity::Unmatched => None,
    };
    let addressed = match &index {
        Some(index) => super::find_by_index(conn, index)?.map(|citizen| citizen.id),
        None => None,
    };
    let (citizen_id, outcome) = match addressed {
        Some(citizen_id) if linked_elsewhere(conn, &citizen_id, account.issuer)? => {
            (create_vault(conn, master, None)?, LoginMatch::KeptApart)
        }
        Some(citizen_id) => (citizen_id, LoginMatch::MatchedExisting),
        None => (
            create_vault(conn, master, index.as_ref())?,
            LoginMatch::NewVault,
        ),
    };
    diesel::insert_into(citizen_logins::table)
        .values((
            citizen_logins::issuer.eq(account.issuer),
            citizen_logins::subject.eq(account.subject),
            citizen_logins::citizen_id.eq(&citizen_id),
            citizen_logins::provider_id.eq(account.provider_id),
            citizen_logins::created_at.eq(now),
            citizen_logins::last_login_at.eq(now),
        ))
        .execute(conn)?;
    let action = match outcome {
        LoginMatch::MatchedExisting => "citizen.matched",
        LoginMatch::KeptApart => "citizen.match_kept_apart",
        _ => "citizen.vault_opened",
    };
    audit::record(
        conn,
        AuditEvent::new(Actor::Citizen(citizen_id.clone()), action)
            .subject("citizen", &citizen_id)
            .citizen(&citizen_id)
            .details(serde_json::json!({ "provider": account.provider_id })),
    )?;
    Ok((citizen_id, outcome))
}

/// Whether a vault is already opened by an account of another issuer.
fn linked_elsewhere(conn: &mut Conn, citizen_id: &str, issuer: &str) -> Result<bool, CitizenError> {
    let other: i64 = citizen_logins::table
        .filter(citizen_logins::citizen_id.eq(citizen_id))
        .filter(citizen_logins::issuer.ne(issuer))
        .count()
        .get_result(conn)?;
    Ok(other > 0)
}

fn create_vault(
    conn: &mut Conn,
    master: &MasterKey,
    index: Option<&RecipientIndex>,
) -> Result<String, CitizenError> {
    let identity = VaultIdentity::generate();
    let (pivot_hash, nrn_hash) = match index {
        Some(RecipientIndex::Pivot(hash)) => (Some(hash.clone()), None),
        Some(RecipientIndex::NationalRegisterNumber(hash)) => (None, Some(hash.clone())),
        None => (None, None),
    };
    let id = crate::new_id();
    diesel::insert_into(citizens::table)
        .values((
            citizens::id.eq(&id),
            citizens::recipient.eq(identity.recipient().to_string()),
            citizens::wrapped_identity.eq(master.wrap_identity(&identity)?),
            citizens::pivot_hash.eq(pivot_hash),
            citizens::nrn_hash.eq(nrn_hash),
            citizens::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    Ok(id)
}
