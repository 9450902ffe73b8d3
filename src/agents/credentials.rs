//! Local agent accounts: argon2id password hashes, the TOTP second factor (its secret
//! sealed to the master key, each time step accepted once), hashed recovery codes, and
//! the failure counter that locks an account out for longer and longer.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::Agent;
use crate::audit::{self, Actor, AuditEvent};
use crate::crypto::{HashDomain, KeyedHasher, MasterKey, SealError};
use crate::db::schema::{agent_credentials, agent_recovery_codes};
use crate::db::{Conn, DbError};

/// Shortest password accepted (the second factor is mandatory, so length is enough).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted: argon2 takes any length, but a bound stops abuse.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// How many recovery codes an agent holds after enrolment.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Failures in a row that lock the account (the last of them starts the lock).
const LOCK_THRESHOLD: i32 = 5;
/// The first lock; each further failure doubles it, up to [`LOCK_MAX`].
const LOCK_BASE: Duration = Duration::from_secs(60);
const LOCK_MAX: Duration = Duration::from_secs(3600);
/// RFC 6238 time step.
const TOTP_STEP_SECONDS: u64 = 30;
/// The issuer shown in authenticator apps.
const TOTP_ISSUER: &str = "e-guichet";

/// Why a credential could not be set or checked.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long")]
    PasswordLength,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("second factor secret: {0}")]
    Seal(#[from] SealError),
    #[error("second factor: {0}")]
    Totp(String),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for CredentialError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// A password about to be set, checked for length.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub fn parse(text: &str) -> Result<Self, CredentialError> {
        let length = text.chars().count();
        if (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&length) {
            Ok(Self(SecretString::from(text.to_owned())))
        } else {
            Err(CredentialError::PasswordLength)
        }
    }

    /// Hashes with argon2id (slow on purpose: call it on the blocking pool).
    pub fn hash(&self) -> Result<String, CredentialError> {
        let failed = |error: password_hash::Error| CredentialError::Hashing(error.to_string());
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(failed)?;
        let params = argon2_params();
        let output = run_argon2(
            &hasher(),
            &params,
            self.0.expose_secret().as_bytes(),
            salt_bytes,
            Params::DEFAULT_OUTPUT_LEN,
        )
        .map_err(failed)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }
}

/// OWASP's parameters: 19 MiB, two passes, one lane.
fn argon2_params() -> Params {
    Params::new(19_456, 2, 1, None).unwrap_or_default()
}

/// argon2id with [`argon2_params`].
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params())
}

/// Capacity asked of the allocator for argon2's working memory: more than glibc's
/// largest dynamic mmap threshold (32 MiB on 64-bit systems).
const WORKING_MEMORY_CAPACITY_BLOCKS: usize = 33 * 1024 * 1024 / Block::SIZE;

/// One argon2 run with working memory that goes back to the system when it ends.
///
/// glibc serves a large allocation with a mapping of its own, unmapped when freed, but
/// after the first such free it raises its threshold to that size (up to 32 MiB): the
/// following 19 MiB buffers then come from per-thread arenas, which keep them after a
/// burst (measured: 300 MiB still held a minute after 40 checks on 2 cores). Above
/// 32 MiB the threshold never follows, so the buffer is reserved that large and only
/// `block_count` blocks are written: untouched capacity costs address space, not memory.
fn run_argon2(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    output_len: usize,
) -> Result<Output, password_hash::Error> {
    let block_count = params.block_count();
    let mut memory: Vec<Block> =
        Vec::with_capacity(block_count.max(WORKING_MEMORY_CAPACITY_BLOCKS));
    memory.resize(block_count, Block::default());
    Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory)?)
    })
}

/// Whether `password` gives the hash in `phc`, with the algorithm, version and
/// parameters written in it (so older hashes keep working).
fn password_matches(password: &[u8], phc: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(phc.algorithm), Params::try_from(phc))
    else {
        return false;
    };
    let Ok(version) = phc
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    // `Output` compares in constant time.
    run_argon2(&argon2, &params, password, salt, expected.len())
        .is_ok_and(|computed| computed == *expected)
}

/// A hash no password matches, checked when the email is unknown so that the answer
/// takes as long as for a known one.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let random = hex::encode(crate::crypto::random_bytes::<16>());
    NewPassword(SecretString::from(random)).hash().ok()
});

/// Whether `password` matches the stored PHC string; with `None`, checks a dummy hash
/// (same cost) and answers false. Slow on purpose: call it on the blocking pool.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    let (phc, real) = match stored {
        Some(phc) => (Some(phc), true),
        None => (DUMMY_HASH.as_deref(), false),
    };
    let Some(parsed) = phc.and_then(|phc| PasswordHash::new(phc).ok()) else {
        return false;
    };
    password_matches(password.as_bytes(), &parsed) && real
}

/// A TOTP secret (160 bits, RFC 4226's recommended length).
pub struct TotpSecret(Vec<u8>);

impl Drop for TotpSecret {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize;
        self.0.zeroize();
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        Self(crate::crypto::random_bytes::<20>().to_vec())
    }

    /// Seals the secret to the master key: it never rests in clear.
    pub fn seal(&self, master: &MasterKey) -> Result<Vec<u8>, SealError> {
        master.wrap(&self.0)
    }

    pub fn unseal(master: &MasterKey, sealed: &[u8]) -> Result<Self, SealError> {
        master.unwrap(sealed).map(Self)
    }

    fn totp(&self, account: &str) -> Result<totp_rs::TOTP, CredentialError> {
        // Authenticator apps only understand SHA-1, 6 digits, 30 s; ±1 step of skew.
        totp_rs::TOTP::new(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            TOTP_STEP_SECONDS,
            self.0.clone(),
            Some(TOTP_ISSUER.to_owned()),
            account.replace(':', ""),
        )
        .map_err(|error| CredentialError::Totp(error.to_string()))
    }

    /// The base32 secret in groups of four, for typing by hand.
    pub fn grouped(&self) -> String {
        let encoded = match totp_rs::Secret::Raw(self.0.clone()).to_encoded() {
            totp_rs::Secret::Encoded(text) => text,
            totp_rs::Secret::Raw(_) => String::new(),
        };
        encoded
            .as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The `otpauth://` URL an authenticator app scans.
    pub fn otpauth_url(&self, account: &str) -> Result<String, CredentialError> {
        Ok(self.totp(account)?.get_url())
    }

    /// The time step `code` is valid for at `unix_time` (±1 step), if any.
    pub fn matching_step(&self, code: &TotpCode, unix_time: u64) -> Option<u64> {
        let totp = self.totp("agent").ok()?;
        let current = unix_time / TOTP_STEP_SECONDS;
        (current.saturating_sub(1)..=current + 1).find(|step| {
            let expected = totp.generate(step * TOTP_STEP_SECONDS);
            crate::auth::sessions::secrets_match(&expected, &code.0)
        })
    }
}

/// Six digits, as typed (spaces ignored).
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Self(digits))
    }
}

/// Letters and digits that cannot be confused with one another.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_CHARS: usize = 10;

/// A one-time recovery code: ten characters (about 50 bits), shown as `xxxxx-xxxxx`.
pub struct RecoveryCode(String);

impl RecoveryCode {
    fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        Self(
            (0..RECOVERY_CHARS)
                .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
                .collect(),
        )
    }

    /// Parses a typed code (any case, dashes and spaces ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let code: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        (code.len() == RECOVERY_CHARS && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    /// The code as shown to the agent.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }

    fn keyed_hash(&self, hasher: &KeyedHasher, agent_id: &str) -> String {
        hasher
            .start(HashDomain::RecoveryCode)
            .part(agent_id.as_bytes())
            .part(self.0.as_bytes())
            .finish()
    }
}

/// What is stored about an agent's local credentials.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agent_credentials)]
pub struct Credentials {
    pub agent_id: String,
    pub password_hash: Option<String>,
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_confirmed_at: Option<NaiveDateTime>,
    pub totp_last_step: Option<i64>,
    pub failed_attempts: i32,
    pub locked_until: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

impl Credentials {
    /// Whether too many failures lock the account right now.
    pub fn is_locked(&self, now: NaiveDateTime) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Whether the second factor is set up and confirmed.
    pub fn has_second_factor(&self) -> bool {
        self.totp_confirmed_at.is_some() && self.totp_sealed.is_some()
    }
}

/// An agent's credentials, if any were ever set.
pub fn credentials_of(conn: &mut Conn, agent_id: &str) -> Result<Option<Credentials>, DbError> {
    Ok(agent_credentials::table
        .find(agent_id)
        .select(Credentials::as_select())
        .first(conn)
        .optional()?)
}

/// Makes sure the agent has a credentials row (a provider-only agent has none yet).
fn ensure_row(conn: &mut Conn, agent_id: &str) -> Result<(), DbError> {
    if credentials_of(conn, agent_id)?.is_none() {
        diesel::insert_into(agent_credentials::table)
            .values((
                agent_credentials::agent_id.eq(agent_id),
                agent_credentials::failed_attempts.eq(0),
                agent_credentials::updated_at.eq(crate::now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Sets an agent's password (already hashed) and lifts any lock-out; every session of
/// the agent ends (the operator's reset: whoever knew the old one is logged out).
pub fn set_password_hash(
    conn: &mut Conn,
    agent: &Agent,
    password_hash: &str,
    actor: Actor,
) -> Result<(), DbError> {
    replace_password_hash(conn, agent, password_hash, actor, None)
}

/// Sets the password like [`set_password_hash`], and ends every session of the agent
/// but `keep` (the hashed id of the session that changed it, if any): whoever knew
/// the old password is logged out.
pub fn replace_password_hash(
    conn: &mut Conn,
    agent: &Agent,
    password_hash: &str,
    actor: Actor,
    keep: Option<&str>,
) -> Result<(), DbError> {
    ensure_row(conn, &agent.id)?;
    crate::auth::sessions::end_sessions_but(
        conn,
        crate::auth::sessions::SessionKind::Agent,
        &agent.id,
        keep,
    )?;
    diesel::update(agent_credentials::table.find(&agent.id))
        .set((
            agent_credentials::password_hash.eq(password_hash),
            agent_credentials::failed_attempts.eq(0),
            agent_credentials::locked_until.eq(None::<NaiveDateTime>),
            agent_credentials::updated_at.eq(crate::now()),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(actor, "agent.password_set")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id),
    )?;
    Ok(())
}

/// One attempt counted on an account before its password or code is checked.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    /// The failure counter with this attempt included.
    failures: i32,
}

/// Counts an attempt as a failure before it is checked, with one conditional UPDATE
/// that finds nothing while the account is locked. The attempt that reaches the
/// threshold starts the lock in the same transaction (which holds the row), so of N
/// concurrent guesses exactly as many are checked as the threshold allows and the
/// others find the account locked. `None`: locked.
pub fn reserve_attempt(conn: &mut Conn, agent_id: &str) -> Result<Option<Reservation>, DbError> {
    let now = crate::now();
    let failures: Option<i32> = diesel::update(
        agent_credentials::table.find(agent_id).filter(
            agent_credentials::locked_until
                .is_null()
                .or(agent_credentials::locked_until.le(now)),
        ),
    )
    .set(agent_credentials::failed_attempts.eq(agent_credentials::failed_attempts + 1))
    .returning(agent_credentials::failed_attempts)
    .get_result(conn)
    .optional()?;
    let Some(failures) = failures else {
        return Ok(None);
    };
    if failures >= LOCK_THRESHOLD {
        diesel::update(agent_credentials::table.find(agent_id))
            .set(agent_credentials::locked_until.eq(now + lock_length(failures)))
            .execute(conn)?;
    }
    Ok(Some(Reservation { failures }))
}

/// How long the `failures`-th failure in a row locks the account: [`LOCK_BASE`] at the
/// threshold, doubled at each further failure, up to [`LOCK_MAX`].
fn lock_length(failures: i32) -> TimeDelta {
    let doublings = u32::try_from(failures - LOCK_THRESHOLD)
        .unwrap_or(0)
        .min(12);
    let lock = LOCK_BASE.saturating_mul(1 << doublings).min(LOCK_MAX);
    TimeDelta::from_std(lock).unwrap_or(TimeDelta::hours(1))
}

/// The reserved attempt failed: it stays counted; a lock it started is recorded.
pub fn confirm_failure(
    conn: &mut Conn,
    agent: &Agent,
    reservation: Reservation,
) -> Result<(), DbError> {
    if reservation.failures < LOCK_THRESHOLD {
        return Ok(());
    }
    let minutes = lock_length(reservation.failures).num_minutes();
    audit::record(
        conn,
        AuditEvent::new(Actor::System, "agent.locked_out")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id)
            .details(serde_json::json!({
                "failures": reservation.failures,
                "minutes": minutes,
            })),
    )?;
    Ok(())
}

/// The reserved attempt was a right password: it no longer counts, and a lock it
/// started is lifted unless attempts were counted after it.
pub fn release_attempt(
    conn: &mut Conn,
    agent_id: &str,
    reservation: Reservation,
) -> Result<(), DbError> {
    let last = diesel::update(
        agent_credentials::table
            .find(agent_id)
            .filter(agent_credentials::failed_attempts.eq(reservation.failures)),
    )
    .set((
        agent_credentials::failed_attempts.eq(agent_credentials::failed_attempts - 1),
        agent_credentials::locked_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if last == 0 {
        diesel::update(
            agent_credentials::table
                .find(agent_id)
                .filter(agent_credentials::failed_attempts.gt(0)),
        )
        .set(agent_credentials::failed_attempts.eq(agent_credentials::failed_attempts - 1))
        .execute(conn)?;
    }
    Ok(())
}

/// Clears the failure counter after a complete login.
pub fn clear_failures(conn: &mut Conn, agent_id: &str) -> Result<(), DbError> {
    diesel::update(agent_credentials::table.find(agent_id))
        .set((
            agent_credentials::failed_attempts.eq(0),
            agent_credentials::locked_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// The secret being enrolled: the one already generated if the agent has not
/// confirmed it yet (so reloading the page does not change the QR code), else a new one.
pub fn pending_totp_secret(
    conn: &mut Conn,
    master: &MasterKey,
    agent_id: &str,
) -> Result<Option<TotpSecret>, CredentialError> {
    ensure_row(conn, agent_id)?;
    let Some(credentials) = credentials_of(conn, agent_id)? else {
        return Ok(None);
    };
    if credentials.totp_confirmed_at.is_some() {
        return Ok(None);
    }
    if let Some(sealed) = &credentials.totp_sealed {
        return Ok(Some(TotpSecret::unseal(master, sealed)?));
    }
    let secret = TotpSecret::generate();
    diesel::update(
        agent_credentials::table
            .find(agent_id)
            .filter(agent_credentials::totp_confirmed_at.is_null()),
    )
    .set((
        agent_credentials::totp_sealed.eq(secret.seal(master)?),
        agent_credentials::updated_at.eq(crate::now()),
    ))
    .execute(conn)?;
    Ok(Some(secret))
}

/// Accepts `step` once: one conditional UPDATE, so a replayed code (or two requests
/// racing with the same code) finds nothing to update. With `confirm`, also activates
/// an enrolment still pending.
pub fn accept_totp_step(
    conn: &mut Conn,
    agent_id: &str,
    step: u64,
    confirm: bool,
) -> Result<bool, DbError> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let fresh = agent_credentials::totp_last_step
        .is_null()
        .or(agent_credentials::totp_last_step.lt(step));
    let query = agent_credentials::table.find(agent_id).filter(fresh);
    let updated = if confirm {
        diesel::update(query.filter(agent_credentials::totp_confirmed_at.is_null()))
            .set((
                agent_credentials::totp_last_step.eq(step),
                agent_credentials::totp_confirmed_at.eq(crate::now()),
            ))
            .execute(conn)?
    } else {
        diesel::update(query.filter(agent_credentials::totp_confirmed_at.is_not_null()))
            .set(agent_credentials::totp_last_step.eq(step))
            .execute(conn)?
    };
    Ok(updated == 1)
}

/// Replaces every recovery code of the agent with new ones, returned once.
pub fn replace_recovery_codes(
    conn: &mut Conn,
    hasher: &KeyedHasher,
    agent: &Agent,
) -> Result<Vec<RecoveryCode>, DbError> {
    diesel::delete(
        agent_recovery_codes::table.filter(agent_recovery_codes::agent_id.eq(&agent.id)),
    )
    .execute(conn)?;
    let now = crate::now();
    let codes: Vec<RecoveryCode> = (0..RECOVERY_CODE_COUNT)
        .map(|_| RecoveryCode::generate())
        .collect();
    for code in &codes {
        diesel::insert_into(agent_recovery_codes::table)
            .values((
                agent_recovery_codes::agent_id.eq(&agent.id),
                agent_recovery_codes::code_hash.eq(code.keyed_hash(hasher, &agent.id)),
                agent_recovery_codes::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    audit::record(
        conn,
        AuditEvent::new(
            Actor::Agent(agent.id.clone()),
            "agent.recovery_codes_issued",
        )
        .tenant(&agent.tenant_id)
        .subject("agent", &agent.id),
    )?;
    Ok(codes)
}

/// Consumes a recovery code with one DELETE: true when it existed (and now does not).
pub fn consume_recovery_code(
    conn: &mut Conn,
    hasher: &KeyedHasher,
    agent_id: &str,
    code: &RecoveryCode,
) -> Result<bool, DbError> {
    let consumed: Option<String> = diesel::delete(
        agent_recovery_codes::table
            .filter(agent_recovery_codes::agent_id.eq(agent_id))
            .filter(agent_recovery_codes::code_hash.eq(code.keyed_hash(hasher, agent_id))),
    )
    .returning(agent_recovery_codes::code_hash)
    .get_result(conn)
    .optional()?;
    Ok(consumed.is_some())
}

/// How many unused recovery codes the agent has.
pub fn remaining_recovery_codes(conn: &mut Conn, agent_id: &str) -> Result<i64, DbError> {
    Ok(agent_recovery_codes::table
        .filter(agent_recovery_codes::agent_id.eq(agent_id))
        .count()
        .get_result(conn)?)
}

/// Removes the second factor and the recovery codes (a lost phone): the next login
/// enrols again. The agent's sessions end.
pub fn reset_second_factor(conn: &mut Conn, agent: &Agent, actor: Actor) -> Result<(), DbError> {
    diesel::update(agent_credentials::table.find(&agent.id))
        .set((
            agent_credentials::totp_sealed.eq(None::<Vec<u8>>),
            agent_credentials::totp_confirmed_at.eq(None::<NaiveDateTime>),
            agent_credentials::totp_last_step.eq(None::<i64>),
            agent_credentials::updated_at.eq(crate::now()),
        ))
        .execute(conn)?;
    diesel::delete(
        agent_recovery_codes::table.filter(agent_recovery_codes::agent_id.eq(&agent.id)),
    )
    .execute(conn)?;
    crate::auth::sessions::end_sessions_of(
        conn,
        crate::auth::sessions::SessionKind::Agent,
        &agent.id,
    )?;
    audit::record(
        conn,
        AuditEvent::new(actor, "agent.second_factor_reset")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let password = NewPassword::parse("correct horse battery").unwrap();
        let hash = password.hash().unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", Some(&hash)));
        // Hashes the library wrote itself (every stored one so far) still verify.
        let library = {
            use argon2::password_hash::PasswordHasher;
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            hasher()
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string()
        };
        assert!(verify_password("correct horse battery", Some(&library)));
        assert!(!verify_password("wrong horse battery", Some(&library)));
        assert!(!verify_password("wrong horse battery", Some(&hash)));
        assert!(!verify_password("correct horse battery", None));
        assert!(NewPassword::parse("short").is_err());
    }

    #[test]
    fn totp_codes_match_their_step_only() {
        let secret = TotpSecret::generate();
        let totp = secret.totp("a@b.example").unwrap();
        let now = 1_800_000_000;
        let code = TotpCode::parse(&totp.generate(now)).unwrap();
        assert_eq!(secret.matching_step(&code, now), Some(now / 30));
        assert_eq!(secret.matching_step(&code, now + 30), Some(now / 30));
        assert_eq!(secret.matching_step(&code, now + 90), None);
        assert!(TotpCode::parse("12345").is_none());
        assert!(TotpCode::parse("123 456").is_some());
        assert_eq!(secret.grouped().replace(' ', "").len(), 32);
    }

    #[test]
    fn recovery_codes_parse_as_shown() {
        let code = RecoveryCode::generate();
        let shown = code.display();
        let typed = RecoveryCode::parse(&shown.to_uppercase()).unwrap();
        assert_eq!(typed.0, code.0);
        assert!(RecoveryCode::parse("123456").is_none());
    }
}
