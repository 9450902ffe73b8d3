//! The passkeys of locked vaults: WebAuthn ceremonies checked by webauthn-rs
//! (challenge, origin, relying-party id hash, signature, sign count). A ceremony's
//! state waits in the database between its two requests, bound to the citizen, and is
//! used once: finishing deletes it, so a replayed response finds nothing to match.
//!
//! The server never sees a PRF output. It keeps, per passkey, the salt the page asks the
//! passkey's PRF for and the vault identity the page wrapped with the derived key, and
//! hands both back only after the passkey's assertion was verified.

use chrono::TimeDelta;
use diesel::prelude::*;
use serde::Serialize;
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Uuid, Webauthn,
    WebauthnBuilder,
};

use crate::audit::{self, Actor, AuditEvent};
use crate::config::Config;
use crate::crypto::{SealError, VaultRecipient, base64url, random_bytes, seal, sha256_hex};
use crate::db::schema::{
    citizens, vault_ceremonies, vault_passkeys, vault_recovery, vault_recovery_attempts,
};
use crate::db::{Conn, DbError};

/// A ceremony left this long is gone: enough to read a recovery code and type it back.
const CEREMONY_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// Recovery copies handed out per citizen within [`RECOVERY_WINDOW`].
pub const RECOVERY_ATTEMPTS: i64 = 5;
pub const RECOVERY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Why a ceremony is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Registering the first passkey, which locks the vault.
    Lock,
    /// Registering one more passkey of a locked vault.
    AddPasskey,
    /// Opening a locked vault.
    Unlock,
}

impl CeremonyPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::AddPasskey => "add_passkey",
            Self::Unlock => "unlock",
        }
    }
}

/// Why a passkey ceremony failed. Each has a stable code the page shows a message for.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("this ceremony expired or was already used")]
    CeremonyExpired,
    #[error("the passkey did not report the PRF extension")]
    NoPrf,
    #[error("the passkey registration was refused: {0}")]
    InvalidCredential(String),
    #[error("the passkey's answer was refused: {0}")]
    InvalidAssertion(String),
    #[error("the page did not open the proof sealed to its new key")]
    ProofMismatch,
    #[error("this vault has no passkey")]
    NoPasskey,
    #[error("too many recovery attempts; try again tomorrow")]
    TooManyAttempts,
    #[error("webauthn: {0}")]
    Webauthn(String),
    #[error("key: {0}")]
    Key(#[from] SealError),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for PasskeyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// The relying party passkeys are bound to.
pub struct VaultWebauthn {
    webauthn: Webauthn,
}

/// A registration the page is asked to perform.
#[derive(Serialize)]
pub struct RegistrationStart {
    pub ceremony: String,
    pub options: CreationChallengeResponse,
    /// For a lock: a random value sealed to the new recipient; the page proves it holds
    /// the new identity by sending it back opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// What the page answers a registration with.
pub struct RegistrationResponse<'a> {
    pub ceremony: &'a str,
    pub credential: &'a RegisterPublicKeyCredential,
    /// Whether the browser reported the PRF extension enabled (from the client's
    /// extension results, which webauthn-rs does not read).
    pub prf_enabled: bool,
    /// For a lock: the proof, opened with the new identity.
    pub proof: Option<&'a str>,
}

/// A registration checked by webauthn-rs, with what its ceremony bound.
pub struct Registered {
    /// The credential id, base64url (as the page names it).
    pub credential_id: String,
    /// webauthn-rs's record of the credential, as JSON.
    pub record: String,
    /// For a lock: the recipient the vault moves to.
    pub recipient: Option<VaultRecipient>,
}

/// An authentication the page is asked to perform, with each allowed passkey's salt.
#[derive(Serialize)]
pub struct AuthenticationStart {
    pub ceremony: String,
    pub options: RequestChallengeResponse,
    pub salts: std::collections::BTreeMap<String, String>,
}

/// What a verified passkey opens: its salt and the identity wrapped under it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockedPasskey {
    pub credential_id: String,
    pub prf_salt: String,
    pub wrapped_identity: String,
}

impl VaultWebauthn {
    /// The relying party of `[vault] webauthn_rp_id` (by default `public_url`'s host),
    /// accepting the origin of `public_url`.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let origin = config.webauthn_origin()?;
        let rp_id = config.webauthn_rp_id();
        let local = origin.host_str() == Some("localhost");
        let webauthn = WebauthnBuilder::new(&rp_id, &origin)
            .map_err(|error| format!("[vault] webauthn_rp_id {rp_id:?}: {error}"))?
            .rp_name("e-guichet")
            // A demonstration on this machine is reached on whatever port it listens on.
            .allow_any_port(local)
            .build()
            .map_err(|error| format!("[vault] webauthn_rp_id {rp_id:?}: {error}"))?;
        Ok(Self { webauthn })
    }

    /// Starts registering a passkey. For a lock, `recipient` is the new vault key the
    /// page generated: a proof sealed to it comes back with the options.
    pub fn start_registration(
        &self,
        conn: &mut Conn,
        citizen_id: &str,
        purpose: CeremonyPurpose,
        recipient: Option<&VaultRecipient>,
    ) -> Result<RegistrationStart, PasskeyError> {
        let existing: Vec<CredentialID> = citizen_passkeys(conn, citizen_id)?
            .iter()
            .map(|stored| stored.passkey.cred_id().clone())
            .collect();
        // A fresh handle per passkey: a password manager keeping two passkeys of the
        // same vault must not take the second for a replacement of the first.
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                Uuid::new_v4(),
                "e-guichet",
                "e-guichet",
                Some(existing).filter(|ids| !ids.is_empty()),
            )
            .map_err(|error| PasskeyError::Webauthn(error.to_string()))?;
        let (proof, proof_hash) = match recipient {
            Some(recipient) => {
                let nonce = hex::encode(random_bytes::<32>());
                let sealed = seal(recipient, nonce.as_bytes())?;
                (Some(base64url(&sealed)), Some(sha256_hex(nonce.as_bytes())))
            }
            None => (None, None),
        };
        let ceremony = store_ceremony(
            conn,
            citizen_id,
            purpose,
            &to_json(&state)?,
            recipient.map(ToString::to_string),
            proof_hash,
        )?;
        Ok(RegistrationStart {
            ceremony,
            options,
            proof,
        })
    }

    /// Finishes a registration: the ceremony is consumed whatever the outcome. The
    /// credential must report the PRF extension enabled.
    pub fn finish_registration(
        &self,
        conn: &mut Conn,
        citizen_id: &str,
        purpose: CeremonyPurpose,
        response: RegistrationResponse<'_>,
    ) -> Result<Registered, PasskeyError> {
        let taken = take_ceremony(conn, citizen_id, purpose, response.ceremony)?;
        if !response.prf_enabled {
            return Err(PasskeyError::NoPrf);
        }
        let state: PasskeyRegistration = from_json(&taken.state)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(response.credential, &state)
            .map_err(|error| PasskeyError::InvalidCredential(error.to_string()))?;
        let recipient = match (taken.recipient, taken.proof_hash) {
            (Some(recipient), Some(expected)) => {
                let opened = response.proof.ok_or(PasskeyError::ProofMismatch)?;
                if sha256_hex(opened.as_bytes()) != expected {
                    return Err(PasskeyError::ProofMismatch);
                }
                Some(VaultRecipient::parse(&recipient)?)
            }
            _ => None,
        };
        Ok(Registered {
            credential_id: base64url(passkey.cred_id().as_slice()),
            record: to_json(&passkey)?,
            recipient,
        })
    }

    /// Starts opening a locked vault with any of its passkeys.
    pub fn start_authentication(
        &self,
        conn: &mut Conn,
        citizen_id: &str,
    ) -> Result<AuthenticationStart, PasskeyError> {
        let stored = citizen_passkeys(conn, citizen_id)?;
        if stored.is_empty() {
            return Err(PasskeyError::NoPasskey);
        }
        let passkeys: Vec<Passkey> = stored.iter().map(|s| s.passkey.clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|error| PasskeyError::Webauthn(error.to_string()))?;
        let ceremony = store_ceremony(
            conn,
            citizen_id,
            CeremonyPurpose::Unlock,
            &to_json(&state)?,
            None,
            None,
        )?;
        let salts = stored
            .into_iter()
            .map(|stored| (stored.credential_id, base64url(&stored.prf_salt)))
            .collect();
        Ok(AuthenticationStart {
            ceremony,
            options,
            salts,
        })
    }

    /// Verifies a passkey's assertion (a replayed or forged one is refused, and so is
    /// one whose sign count went backwards) and hands back what that passkey opens.
    pub fn finish_authentication(
        &self,
        conn: &mut Conn,
        citizen_id: &str,
        ceremony: &str,
        credential: &PublicKeyCredential,
    ) -> Result<UnlockedPasskey, PasskeyError> {
        let taken = take_ceremony(conn, citizen_id, CeremonyPurpose::Unlock, ceremony)?;
        let state: PasskeyAuthentication = from_json(&taken.state)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state)
            .map_err(|error| PasskeyError::InvalidAssertion(error.to_string()))?;
        let mut stored = citizen_passkeys(conn, citizen_id)?
            .into_iter()
            .find(|stored| stored.passkey.cred_id() == result.cred_id())
            .ok_or_else(|| PasskeyError::InvalidAssertion("unknown passkey".to_owned()))?;
        stored.passkey.update_credential(&result);
        diesel::update(vault_passkeys::table.find(&stored.id))
            .set((
                vault_passkeys::passkey.eq(to_json(&stored.passkey)?),
                vault_passkeys::last_used_at.eq(crate::now()),
            ))
            .execute(conn)?;
        Ok(UnlockedPasskey {
            credential_id: stored.credential_id,
            prf_salt: base64url(&stored.prf_salt),
            wrapped_identity: base64url(&stored.wrapped_identity),
        })
    }
}

/// One stored passkey of a vault.
pub struct StoredPasskey {
    pub id: String,
    pub credential_id: String,
    pub passkey: Passkey,
    pub prf_salt: Vec<u8>,
    pub wrapped_identity: Vec<u8>,
    pub label: String,
    pub created_at: chrono::NaiveDateTime,
    pub last_used_at: Option<chrono::NaiveDateTime>,
}

type PasskeyRow = (
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
);

/// The passkeys of a vault, oldest first.
pub fn citizen_passkeys(
    conn: &mut Conn,
    citizen_id: &str,
) -> Result<Vec<StoredPasskey>, PasskeyError> {
    let rows: Vec<PasskeyRow> = vault_passkeys::table
        .filter(vault_passkeys::citizen_id.eq(citizen_id))
        .order(vault_passkeys::created_at.asc())
        .select((
            vault_passkeys::id,
            vault_passkeys::credential_id,
            vault_passkeys::passkey,
            vault_passkeys::prf_salt,
            vault_passkeys::wrapped_identity,
            vault_passkeys::label,
            vault_passkeys::created_at,
            vault_passkeys::last_used_at,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|row| {
            let (id, credential_id, record, prf_salt, wrapped_identity, label) =
                (row.0, row.1, row.2, row.3, row.4, row.5);
            Ok(StoredPasskey {
                id,
                credential_id,
                passkey: from_json(&record)?,
                prf_salt,
                wrapped_identity,
                label,
                created_at: row.6,
                last_used_at: row.7,
            })
        })
        .collect()
}

/// Why a passkey could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error("no such passkey in this vault")]
    NotFound,
    #[error("the last passkey of a vault cannot be removed")]
    LastPasskey,
    #[error(transparent)]
    Passkey(#[from] PasskeyError),
}

impl From<DbError> for RemovalError {
    fn from(error: DbError) -> Self {
        Self::Passkey(error.into())
    }
}

impl From<diesel::result::Error> for RemovalError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Passkey(error.into())
    }
}

/// Removes one passkey of a vault, never the last. The citizen's row is written first
/// so that removals from the same vault queue on its lock (PostgreSQL; SQLite has one
/// writer anyway), and the count is taken after the delete: of two removals at once on
/// a vault of two, the second sees the first's and is refused.
pub fn remove_passkey(
    conn: &mut Conn,
    citizen_id: &str,
    passkey_id: &str,
) -> Result<(), RemovalError> {
    diesel::update(citizens::table.find(citizen_id))
        .set(citizens::locked_at.eq(citizens::locked_at))
        .execute(conn)?;
    let deleted = diesel::delete(
        vault_passkeys::table
            .filter(vault_passkeys::id.eq(passkey_id))
            .filter(vault_passkeys::citizen_id.eq(citizen_id)),
    )
    .execute(conn)?;
    if deleted == 0 {
        return Err(RemovalError::NotFound);
    }
    let left: i64 = vault_passkeys::table
        .filter(vault_passkeys::citizen_id.eq(citizen_id))
        .count()
        .get_result(conn)?;
    if left == 0 {
        // Rolls the delete back with the transaction.
        return Err(RemovalError::LastPasskey);
    }
    audit::record(
        conn,
        AuditEvent::new(
            Actor::Citizen(citizen_id.to_owned()),
            "vault.passkey_removed",
        )
        .citizen(citizen_id)
        .details(serde_json::json!({ "passkeys_left": left })),
    )
    .map_err(PasskeyError::from)?;
    Ok(())
}

/// Hands out the vault identity sealed under the recovery code: each call is one
/// attempt, at most [`RECOVERY_ATTEMPTS`] per [`RECOVERY_WINDOW`]. (A wrong code is
/// only found out in the page; the limit bounds how often anyone holding the session
/// can try.) The citizen's recovery row is updated first so that concurrent attempts
/// queue on it and are counted one by one.
pub fn recovery_copy(conn: &mut Conn, citizen_id: &str) -> Result<String, PasskeyError> {
    let locked_row = diesel::update(vault_recovery::table.find(citizen_id))
        .set(vault_recovery::citizen_id.eq(citizen_id))
        .execute(conn)?;
    if locked_row == 0 {
        return Err(PasskeyError::NoPasskey);
    }
    let since = crate::now() - RECOVERY_WINDOW;
    let recent: i64 = vault_recovery_attempts::table
        .filter(vault_recovery_attempts::citizen_id.eq(citizen_id))
        .filter(vault_recovery_attempts::attempted_at.gt(since))
        .count()
        .get_result(conn)?;
    if recent >= RECOVERY_ATTEMPTS {
        return Err(PasskeyError::TooManyAttempts);
    }
    diesel::insert_into(vault_recovery_attempts::table)
        .values((
            vault_recovery_attempts::id.eq(crate::new_id()),
            vault_recovery_attempts::citizen_id.eq(citizen_id),
            vault_recovery_attempts::attempted_at.eq(crate::now()),
        ))
        .execute(conn)?;
    let sealed: Vec<u8> = vault_recovery::table
        .find(citizen_id)
        .select(vault_recovery::sealed_identity)
        .first(conn)?;
    audit::record(
        conn,
        AuditEvent::new(
            Actor::Citizen(citizen_id.to_owned()),
            "vault.recovery_copy_sent",
        )
        .citizen(citizen_id)
        .details(serde_json::json!({ "attempt": recent + 1 })),
    )?;
    Ok(base64url(&sealed))
}

/// Deletes ceremonies past their expiry and recovery attempts older than the window.
pub fn purge_expired(conn: &mut Conn, now: chrono::NaiveDateTime) -> Result<usize, DbError> {
    let ceremonies =
        diesel::delete(vault_ceremonies::table.filter(vault_ceremonies::expires_at.lt(now)))
            .execute(conn)?;
    let attempts = diesel::delete(
        vault_recovery_attempts::table
            .filter(vault_recovery_attempts::attempted_at.lt(now - RECOVERY_WINDOW)),
    )
    .execute(conn)?;
    Ok(ceremonies + attempts)
}

struct TakenCeremony {
    state: String,
    recipient: Option<String>,
    proof_hash: Option<String>,
}

fn store_ceremony(
    conn: &mut Conn,
    citizen_id: &str,
    purpose: CeremonyPurpose,
    state: &str,
    recipient: Option<String>,
    proof_hash: Option<String>,
) -> Result<String, PasskeyError> {
    let id = crate::new_id();
    let now = crate::now();
    diesel::insert_into(vault_ceremonies::table)
        .values((
            vault_ceremonies::id.eq(&id),
            vault_ceremonies::citizen_id.eq(citizen_id),
            vault_ceremonies::purpose.eq(purpose.as_str()),
            vault_ceremonies::state.eq(state),
            vault_ceremonies::recipient.eq(recipient),
            vault_ceremonies::proof_hash.eq(proof_hash),
            vault_ceremonies::created_at.eq(now),
            vault_ceremonies::expires_at.eq(now + CEREMONY_LIFETIME),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Deletes and returns the citizen's live ceremony `id` of `purpose`: of two finishes
/// with the same ceremony, one finds nothing.
fn take_ceremony(
    conn: &mut Conn,
    citizen_id: &str,
    purpose: CeremonyPurpose,
    id: &str,
) -> Result<TakenCeremony, PasskeyError> {
    let taken: Option<(
        String,
        Option<String>,
        Option<String>,
        chrono::NaiveDateTime,
    )> = diesel::delete(
        vault_ceremonies::table
            .filter(vault_ceremonies::id.eq(id))
            .filter(vault_ceremonies::citizen_id.eq(citizen_id))
            .filter(vault_ceremonies::purpose.eq(purpose.as_str())),
    )
    .returning((
        vault_ceremonies::state,
        vault_ceremonies::recipient,
        vault_ceremonies::proof_hash,
        vault_ceremonies::expires_at,
    ))
    .get_result(conn)
    .optional()?;
    match taken {
        Some((state, recipient, proof_hash, expires_at)) if expires_at > crate::now() => {
            Ok(TakenCeremony {
                state,
                recipient,
                proof_hash,
            })
        }
        _ => Err(PasskeyError::CeremonyExpired),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(|error| PasskeyError::Webauthn(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(text).map_err(|error| PasskeyError::Webauthn(error.to_string()))
}
