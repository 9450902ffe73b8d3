//! Which vault a provider account opens. A citizen is keyed by (issuer, `sub`); at the
//! first login of an account, the identity it asserts (pivot identity, or national
//! register number) is matched to the vault documents were already addressed to.
//! Email is never used to match: families share one.

use diesel::prelude::*;

use super::{CitizenError, NationalRegisterNumber, PivotIdentity, RecipientIndex};
use crate::audit::{self, Actor, AuditEvent};
use crate::auth::sessions::{SessionKind, end_sessions_of};
use crate::crypto::{KeyedHasher, MasterKey};
use crate::db::schema::{citizen_logins, citizens};
use crate::db::{Conn, DbError};

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
    /// Whether this login guarantees the identity it asserts (`auth::assurance`).
    pub identity_verified: bool,
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
    /// An account whose login does not guarantee identity was linked to a vault that
    /// documents are addressed to by identity (recorded before assurance was checked):
    /// it now has a vault of its own, and the documents wait for the verified person.
    SeparatedFromIdentity,
}

/// Finds or links the vault of `account`, recording the outcome in the audit log.
///
/// Only a login that guarantees the identity it asserts is matched to the vault
/// documents are addressed to by that identity; any other gets a vault of its own with
/// no identity attached, so no delivery ever goes to it by identity. An account whose
/// link was recorded without its assurance is judged by `provider_vouches`.
pub fn citizen_for_login(
    conn: &mut Conn,
    master: &MasterKey,
    hasher: &KeyedHasher,
    account: &ProviderAccount<'_>,
    identity: &AssertedIdentity,
    provider_vouches: &dyn Fn(&str) -> bool,
) -> Result<(String, LoginMatch), CitizenError> {
    let now = crate::now();
    let known: Option<String> = citizen_logins::table
        .find((account.issuer, account.subject))
        .select(citizen_logins::citizen_id)
        .first(conn)
        .optional()?;
    if let Some(citizen_id) = known {
        diesel::update(citizen_logins::table.find((account.issuer, account.subject)))
            .set((
                citizen_logins::last_login_at.eq(now),
                citizen_logins::identity_verified.eq(account.identity_verified),
            ))
            .execute(conn)?;
        if !account.identity_verified && carries_identity(conn, &citizen_id)? {
            let own = separate_from_identity(
                conn,
                master,
                &citizen_id,
                (account.issuer, account.subject, account.provider_id),
            )?;
            return Ok((own, LoginMatch::SeparatedFromIdentity));
        }
        return Ok((citizen_id, LoginMatch::Known));
    }

    let index = match identity {
        _ if !account.identity_verified => None,
        AssertedIdentity::Pivot(pivot) => Some(RecipientIndex::of_pivot(hasher, pivot)),
        AssertedIdentity::NationalRegisterNumber(nrn) => Some(RecipientIndex::of_nrn(hasher, nrn)),
        AssertedIdentity::Unmatched => None,
    };
    let addressed = match &index {
        Some(index) => super::find_by_index(conn, index)?.map(|citizen| citizen.id),
        None => None,
    };
    if let Some(citizen_id) = &addressed {
        separate_unverified_logins(conn, master, citizen_id, provider_vouches)?;
    }
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
            citizen_logins::identity_verified.eq(account.identity_verified),
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
            .details(serde_json::json!({
                "provider": account.provider_id,
                "identity_verified": account.identity_verified,
            })),
    )?;
    Ok((citizen_id, outcome))
}

/// Whether documents can be addressed to this vault by identity.
fn carries_identity(conn: &mut Conn, citizen_id: &str) -> Result<bool, CitizenError> {
    let (pivot, nrn): (Option<String>, Option<String>) = citizens::table
        .find(citizen_id)
        .select((citizens::pivot_hash, citizens::nrn_hash))
        .first(conn)?;
    Ok(pivot.is_some() || nrn.is_some())
}

/// Moves every account linked to `citizen_id` whose login did not guarantee the
/// identity to a vault of its own, before the verified person takes the vault.
fn separate_unverified_logins(
    conn: &mut Conn,
    master: &MasterKey,
    citizen_id: &str,
    provider_vouches: &dyn Fn(&str) -> bool,
) -> Result<(), CitizenError> {
    let links: Vec<(String, String, String, Option<bool>)> = citizen_logins::table
        .filter(citizen_logins::citizen_id.eq(citizen_id))
        .select((
            citizen_logins::issuer,
            citizen_logins::subject,
            citizen_logins::provider_id,
            citizen_logins::identity_verified,
        ))
        .load(conn)?;
    for (issuer, subject, provider_id, verified) in links {
        if !verified.unwrap_or_else(|| provider_vouches(&provider_id)) {
            separate_from_identity(conn, master, citizen_id, (&issuer, &subject, &provider_id))?;
        }
    }
    Ok(())
}

/// Relinks the account (issuer, subject) from the identity-addressed vault
/// `citizen_id` to a new vault of its own. The documents stay where their identity is;
/// the sessions opened on that vault end, and contacts set while no verified account
/// held it are dropped, so the unverified account is neither shown nor told anything
/// about what is addressed to someone's identity.
fn separate_from_identity(
    conn: &mut Conn,
    master: &MasterKey,
    citizen_id: &str,
    (issuer, subject, provider_id): (&str, &str, &str),
) -> Result<String, CitizenError> {
    let own = create_vault(conn, master, None)?;
    diesel::update(citizen_logins::table.find((issuer, subject)))
        .set(citizen_logins::citizen_id.eq(&own))
        .execute(conn)?;
    let verified_left: i64 = citizen_logins::table
        .filter(citizen_logins::citizen_id.eq(citizen_id))
        .filter(citizen_logins::identity_verified.eq(true))
        .count()
        .get_result(conn)?;
    if verified_left == 0 {
        diesel::update(citizens::table.find(citizen_id))
            .set(citizens::sealed_contacts.eq(None::<Vec<u8>>))
            .execute(conn)?;
    }
    end_sessions_of(conn, SessionKind::Citizen, citizen_id)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::System, "citizen.separated_from_identity")
            .subject("citizen", citizen_id)
            .citizen(citizen_id)
            .details(serde_json::json!({ "provider": provider_id })),
    )?;
    Ok(own)
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
    super::insert_citizen(conn, master, index)?
        .ok_or_else(|| DbError::Query(diesel::result::Error::NotFound).into())
}
