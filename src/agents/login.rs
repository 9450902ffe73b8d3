//! How an agent logs in: a local account (password, then a TOTP or recovery code, with
//! a short-lived half-logged-in record in between, enrolment the first time), or a
//! provider for agents (ProConnect) matched on the work email with its `amr` checked.

use std::net::IpAddr;
use std::time::Duration;

use chrono::TimeDelta;
use diesel::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use super::credentials::{self, Credentials, RecoveryCode, Reservation, TotpCode, TotpSecret};
use super::{Agent, AgentEmail};
use crate::audit::{self, Actor, AuditEvent};
use crate::auth::sessions::{self, NewSession, SessionKind, SessionPolicy};
use crate::auth::throttle::{self, AddressKey};
use crate::config::SecondFactorPolicy;
use crate::db::schema::{agent_credentials, agent_pending_logins, agents};
use crate::db::{Conn, DbError};
use crate::state::AppState;

/// How long the state between password and code lives.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(300);
/// Codes that may be tried within one half-logged-in state.
const PENDING_MAX_ATTEMPTS: i32 = 5;

/// Why a local login step failed unexpectedly (refusals are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum AgentLoginError {
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("password check did not run: {0}")]
    Blocking(String),
}

impl From<diesel::result::Error> for AgentLoginError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// The result of the password step.
pub enum PasswordOutcome {
    /// Password right: the cookie value of the half-logged-in state, and whether the
    /// agent still has to enrol a second factor.
    Accepted { pending: String, enrolled: bool },
    /// Unknown email, wrong password, disabled or locked account, too many failures
    /// from this address: one answer for all.
    Refused,
    /// Too many password checks are waiting: nothing was checked or counted.
    Busy,
}

/// What was counted before the password is checked.
enum Attempt {
    /// The client's address has used up its failures: refused without checking.
    AddressLimited,
    /// No such local account: a dummy hash is checked, for the same work.
    UnknownAccount,
    /// The account is locked: its hash is checked for the same work, then refused.
    Locked {
        agent: Agent,
        stored: Option<String>,
    },
    /// One failure reserved on the account (and on the address).
    Counted {
        agent: Agent,
        credentials: Box<Credentials>,
        reservation: Reservation,
    },
}

impl Attempt {
    /// The hash the password is checked against (`None`: the dummy one).
    fn stored_hash(&self) -> Option<String> {
        match self {
            Self::AddressLimited | Self::UnknownAccount => None,
            Self::Locked { stored, .. } => stored.clone(),
            Self::Counted { credentials, .. } => credentials.password_hash.clone(),
        }
    }
}

/// Checks an email and password from `client`. The attempt is counted (per account
/// and per address) before argon2 runs, so concurrent guesses count one by one; a
/// right password gives its count back. Unknown emails and locked accounts cost the
/// same argon2 work as known ones; checks wait their turn in the password queue.
pub async fn check_password(
    state: &AppState,
    client: Option<IpAddr>,
    email: &str,
    password: SecretString,
) -> Result<PasswordOutcome, AgentLoginError> {
    let Ok(turn) = state.password_queue.wait_for_turn().await else {
        tracing::warn!("agent login refused: the password checks are all busy");
        return Ok(PasswordOutcome::Busy);
    };
    let email = AgentEmail::parse(email).ok();
    let address = client.map(|client| AddressKey::of(&state.keys.hasher, client));
    let attempt = {
        let address = address.clone();
        state
            .db
            .write(move |conn| count_attempt(conn, address.as_ref(), email.as_ref()))
            .await?
    };
    if matches!(attempt, Attempt::AddressLimited) {
        tracing::info!("agent login refused: too many failures from this address");
        return Ok(PasswordOutcome::Refused);
    }
    let stored = attempt.stored_hash();
    let matches = turn
        .run(move || credentials::verify_password(password.expose_secret(), stored.as_deref()))
        .await
        .map_err(|error| AgentLoginError::Blocking(error.to_string()))?;
    state
        .db
        .write(move |conn| settle_attempt(conn, attempt, address.as_ref(), matches))
        .await
}

/// Reserves the attempt on the address, then on the account.
fn count_attempt(
    conn: &mut Conn,
    address: Option<&AddressKey>,
    email: Option<&AgentEmail>,
) -> Result<Attempt, AgentLoginError> {
    if let Some(address) = address
        && !throttle::reserve_attempt(conn, address)?
    {
        return Ok(Attempt::AddressLimited);
    }
    let Some((agent, credentials)) = email
        .map(|email| local_account(conn, email))
        .transpose()?
        .flatten()
    else {
        return Ok(Attempt::UnknownAccount);
    };
    Ok(match credentials::reserve_attempt(conn, &agent.id)? {
        Some(reservation) => Attempt::Counted {
            agent,
            credentials: Box::new(credentials),
            reservation,
        },
        None => Attempt::Locked {
            agent,
            stored: credentials.password_hash,
        },
    })
}

/// Records the outcome of a checked password: a failure stays counted, a success
/// gives both counts back and starts the half-logged-in state.
fn settle_attempt(
    conn: &mut Conn,
    attempt: Attempt,
    address: Option<&AddressKey>,
    matches: bool,
) -> Result<PasswordOutcome, AgentLoginError> {
    match attempt {
        Attempt::AddressLimited | Attempt::UnknownAccount => Ok(PasswordOutcome::Refused),
        Attempt::Locked { agent, .. } => {
            // Tries while locked prove nothing and do not lengthen the lock.
            audit_failure(conn, &agent, "locked")?;
            Ok(PasswordOutcome::Refused)
        }
        Attempt::Counted {
            agent, reservation, ..
        } if !matches => {
            audit_failure(conn, &agent, "password")?;
            credentials::confirm_failure(conn, &agent, reservation)?;
            Ok(PasswordOutcome::Refused)
        }
        Attempt::Counted {
            agent,
            credentials,
            reservation,
        } => {
            credentials::release_attempt(conn, &agent.id, reservation)?;
            if let Some(address) = address {
                throttle::release_attempt(conn, address)?;
            }
            let pending = start_pending(conn, &agent.id)?;
            Ok(PasswordOutcome::Accepted {
                pending,
                enrolled: credentials.has_second_factor(),
            })
        }
    }
}

/// The result of an agent changing their own password.
pub enum PasswordChange {
    Changed,
    /// The agent logs in through a provider only.
    NoPassword,
    /// The current password is wrong (or the account is locked).
    WrongCurrent,
    /// Too many password checks are waiting: nothing was checked or counted.
    Busy,
}

/// Changes an agent's password after checking the current one. The check is counted
/// like a login's, so a borrowed session cannot guess the password either.
pub async fn change_password(
    state: &AppState,
    agent: Agent,
    session_id_hash: String,
    current: SecretString,
    new: credentials::NewPassword,
) -> Result<PasswordChange, AgentLoginError> {
    let Ok(turn) = state.password_queue.wait_for_turn().await else {
        return Ok(PasswordChange::Busy);
    };
    let agent_id = agent.id.clone();
    let counted = state
        .db
        .write(move |conn| -> Result<_, AgentLoginError> {
            let stored = credentials::credentials_of(conn, &agent_id)?
                .and_then(|credentials| credentials.password_hash);
            let Some(stored) = stored else {
                return Ok(None);
            };
            Ok(Some((
                stored,
                credentials::reserve_attempt(conn, &agent_id)?,
            )))
        })
        .await?;
    let Some((stored, reservation)) = counted else {
        return Ok(PasswordChange::NoPassword);
    };
    let Some(reservation) = reservation else {
        return Ok(PasswordChange::WrongCurrent);
    };
    let hashed = turn
        .run(move || {
            if credentials::verify_password(current.expose_secret(), Some(&stored)) {
                new.hash().map(Some)
            } else {
                Ok(None)
            }
        })
        .await
        .map_err(|error| AgentLoginError::Blocking(error.to_string()))??;
    state
        .db
        .write(move |conn| -> Result<_, AgentLoginError> {
            let Some(hashed) = hashed else {
                audit_failure(conn, &agent, "password_change")?;
                credentials::confirm_failure(conn, &agent, reservation)?;
                return Ok(PasswordChange::WrongCurrent);
            };
            // Setting the password clears the count, this attempt's included.
            // The agent's other sessions end; this one goes on.
            credentials::replace_password_hash(
                conn,
                &agent,
                &hashed,
                Actor::Agent(agent.id.clone()),
                Some(&session_id_hash),
            )?;
            Ok(PasswordChange::Changed)
        })
        .await
}

/// The one active agent with this email that has a password. Several (the same email
/// in two tenants, both with passwords) is refused like an unknown email.
fn local_account(
    conn: &mut Conn,
    email: &AgentEmail,
) -> Result<Option<(Agent, Credentials)>, DbError> {
    let rows: Vec<(super::AgentRow, Credentials)> = agents::table
        .inner_join(agent_credentials::table)
        .filter(agents::email.eq(email.as_str()))
        .filter(agents::disabled_at.is_null())
        .filter(agent_credentials::password_hash.is_not_null())
        .select((super::AgentRow::as_select(), Credentials::as_select()))
        .limit(2)
        .load(conn)?;
    if rows.len() > 1 {
        tracing::warn!("one email has local accounts in several tenants; login refused");
        return Ok(None);
    }
    rows.into_iter()
        .next()
        .map(|(row, credentials)| Ok((Agent::try_from(row)?, credentials)))
        .transpose()
}

fn audit_failure(conn: &mut Conn, agent: &Agent, step: &str) -> Result<(), DbError> {
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(agent.id.clone()), "agent.login_failed")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id)
            .details(serde_json::json!({ "step": step })),
    )?;
    Ok(())
}

fn start_pending(conn: &mut Conn, agent_id: &str) -> Result<String, DbError> {
    let cookie = sessions::new_secret();
    let now = crate::now();
    diesel::delete(agent_pending_logins::table.filter(agent_pending_logins::expires_at.le(now)))
        .execute(conn)?;
    diesel::insert_into(agent_pending_logins::table)
        .values((
            agent_pending_logins::id_hash.eq(sessions::hash_secret(&cookie)),
            agent_pending_logins::agent_id.eq(agent_id),
            agent_pending_logins::attempts.eq(0),
            agent_pending_logins::created_at.eq(now),
            agent_pending_logins::expires_at
                .eq(now + TimeDelta::from_std(PENDING_LIFETIME).unwrap_or(TimeDelta::minutes(5))),
        ))
        .execute(conn)?;
    Ok(cookie)
}

/// The agent a half-logged-in state belongs to, if it is still usable.
fn peek_pending(conn: &mut Conn, cookie: &str) -> Result<Option<String>, DbError> {
    Ok(agent_pending_logins::table
        .find(sessions::hash_secret(cookie))
        .filter(agent_pending_logins::expires_at.gt(crate::now()))
        .filter(agent_pending_logins::attempts.lt(PENDING_MAX_ATTEMPTS))
        .select(agent_pending_logins::agent_id)
        .first(conn)
        .optional()?)
}

/// Spends one attempt of a half-logged-in state with one UPDATE; `None` once it has
/// expired or used up its attempts.
fn spend_pending_attempt(conn: &mut Conn, cookie: &str) -> Result<Option<String>, DbError> {
    Ok(diesel::update(
        agent_pending_logins::table
            .find(sessions::hash_secret(cookie))
            .filter(agent_pending_logins::expires_at.gt(crate::now()))
            .filter(agent_pending_logins::attempts.lt(PENDING_MAX_ATTEMPTS)),
    )
    .set(agent_pending_logins::attempts.eq(agent_pending_logins::attempts + 1))
    .returning(agent_pending_logins::agent_id)
    .get_result(conn)
    .optional()?)
}

fn finish_pending(conn: &mut Conn, cookie: &str) -> Result<(), DbError> {
    diesel::delete(agent_pending_logins::table.find(sessions::hash_secret(cookie)))
        .execute(conn)?;
    Ok(())
}

/// Logged in: a fresh session, and after an enrolment the recovery codes to show once.
pub struct LoggedIn {
    pub agent: Agent,
    pub session: NewSession,
    pub recovery_codes: Vec<RecoveryCode>,
}

/// The result of the code step (or of confirming an enrolment).
pub enum CodeOutcome {
    LoggedIn(Box<LoggedIn>),
    /// Wrong, replayed or unusable code (or the account is locked).
    Refused,
    /// The half-logged-in state is gone: start again from the password.
    Expired,
    /// The agent has no second factor yet: enrol first.
    NotEnrolled,
    /// Enrolment asked for, but a second factor is already active.
    AlreadyEnrolled,
}

/// The secret to show on the enrolment page, for the agent behind `pending`.
pub enum Enrolment {
    Ready { agent: Agent, secret: TotpSecret },
    AlreadyEnrolled,
    Expired,
}

/// Starts (or resumes) enrolling a second factor.
pub async fn enrolment(state: &AppState, pending: String) -> Result<Enrolment, AgentLoginError> {
    let keys = state.keys.clone();
    state
        .db
        .write(move |conn| -> Result<_, AgentLoginError> {
            let Some(agent_id) = peek_pending(conn, &pending)? else {
                return Ok(Enrolment::Expired);
            };
            let Some(agent) = super::active_agent(conn, &agent_id)? else {
                return Ok(Enrolment::Expired);
            };
            Ok(
                match credentials::pending_totp_secret(conn, &keys.master, &agent.id)? {
                    Some(secret) => Enrolment::Ready { agent, secret },
                    None => Enrolment::AlreadyEnrolled,
                },
            )
        })
        .await
}

/// Checks the second step: a TOTP code (or, unless enrolling, a recovery code). With
/// `enrolling`, a valid TOTP code activates the pending secret and issues recovery codes.
pub async fn check_code(
    state: &AppState,
    policy: SessionPolicy,
    client: Option<IpAddr>,
    pending: String,
    typed: String,
    enrolling: bool,
    previous_session: Option<String>,
) -> Result<CodeOutcome, AgentLoginError> {
    let keys = state.keys.clone();
    let unix_time = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    let address = client.map(|client| AddressKey::of(&keys.hasher, client));
    state
        .db
        .write(move |conn| -> Result<_, AgentLoginError> {
            let Some(agent_id) = spend_pending_attempt(conn, &pending)? else {
                return Ok(CodeOutcome::Expired);
            };
            let (Some(agent), Some(credentials)) = (
                super::active_agent(conn, &agent_id)?,
                credentials::credentials_of(conn, &agent_id)?,
            ) else {
                return Ok(CodeOutcome::Expired);
            };
            match (enrolling, credentials.has_second_factor()) {
                (true, true) => return Ok(CodeOutcome::AlreadyEnrolled),
                (false, false) => return Ok(CodeOutcome::NotEnrolled),
                _ => {}
            }
            // Counted before the code is checked, like a password (one by one even
            // when several half-logged-in states of the account race).
            if let Some(address) = &address
                && !throttle::reserve_attempt(conn, address)?
            {
                return Ok(CodeOutcome::Refused);
            }
            let Some(reservation) = credentials::reserve_attempt(conn, &agent.id)? else {
                audit_failure(conn, &agent, "locked")?;
                return Ok(CodeOutcome::Refused);
            };
            let method = verify_code(
                conn,
                &keys,
                &agent,
                &credentials,
                &typed,
                unix_time,
                enrolling,
            )?;
            let Some(method) = method else {
                audit_failure(conn, &agent, "code")?;
                credentials::confirm_failure(conn, &agent, reservation)?;
                return Ok(CodeOutcome::Refused);
            };
            finish_pending(conn, &pending)?;
            credentials::clear_failures(conn, &agent.id)?;
            if let Some(address) = &address {
                throttle::release_attempt(conn, address)?;
            }
            let recovery_codes = if enrolling {
                audit::record(
                    conn,
                    AuditEvent::new(
                        Actor::Agent(agent.id.clone()),
                        "agent.second_factor_enrolled",
                    )
                    .tenant(&agent.tenant_id)
                    .subject("agent", &agent.id),
                )?;
                credentials::replace_recovery_codes(conn, &keys.hasher, &agent)?
            } else {
                Vec::new()
            };
            let session = open_agent_session(
                conn,
                policy,
                &agent,
                None,
                None,
                method,
                previous_session.as_deref(),
            )?;
            Ok(CodeOutcome::LoggedIn(Box::new(LoggedIn {
                agent,
                session,
                recovery_codes,
            })))
        })
        .await
}

/// Which second factor matched, if one did.
fn verify_code(
    conn: &mut Conn,
    keys: &crate::keys::Keyring,
    agent: &Agent,
    credentials: &Credentials,
    typed: &str,
    unix_time: u64,
    enrolling: bool,
) -> Result<Option<&'static str>, AgentLoginError> {
    if let Some(code) = TotpCode::parse(typed) {
        let Some(sealed) = &credentials.totp_sealed else {
            return Ok(None);
        };
        let secret =
            TotpSecret::unseal(&keys.master, sealed).map_err(credentials::CredentialError::from)?;
        let Some(step) = secret.matching_step(&code, unix_time) else {
            return Ok(None);
        };
        let accepted = credentials::accept_totp_step(conn, &agent.id, step, enrolling)?;
        return Ok(accepted.then_some("password+totp"));
    }
    if enrolling {
        return Ok(None);
    }
    match RecoveryCode::parse(typed) {
        Some(code) => {
            let used = credentials::consume_recovery_code(conn, &keys.hasher, &agent.id, &code)?;
            Ok(used.then_some("password+recovery_code"))
        }
        None => Ok(None),
    }
}

/// Opens an agent session (a new id at each login) and records the login. The session
/// the browser held before (`previous`, its cookie value), if any, ends: one browser,
/// one session.
pub fn open_agent_session(
    conn: &mut Conn,
    policy: SessionPolicy,
    agent: &Agent,
    provider_id: Option<&str>,
    id_token: Option<&str>,
    method: &str,
    previous: Option<&str>,
) -> Result<NewSession, DbError> {
    if let Some(previous) = previous {
        sessions::end_session(conn, previous)?;
    }
    let session = sessions::open_session(
        conn,
        policy,
        SessionKind::Agent,
        &agent.id,
        provider_id,
        id_token,
    )?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(agent.id.clone()), "agent.logged_in")
            .tenant(&agent.tenant_id)
            .subject("agent", &agent.id)
            .details(serde_json::json!({ "method": method, "provider": provider_id })),
    )?;
    Ok(session)
}

/// Why a login through a provider for agents was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProviderLoginRefusal {
    #[error("the provider sent no usable work email")]
    NoEmail,
    #[error("the provider says the work email is not verified")]
    EmailNotVerified,
    #[error("no active agent has this work email")]
    UnknownAgent,
    #[error("the login did not use a second factor, which the tenant requires")]
    SecondFactorMissing,
}

/// The accounts a provider login names.
#[derive(Debug)]
pub enum ProviderLoginMatch {
    /// One account: open it.
    One(Agent),
    /// The same work email in several tenants: the person chooses (`tenant_choice`).
    Several(Vec<Agent>),
}

/// What a provider login says about the person, as far as agents are concerned.
pub struct ProviderEmail<'a> {
    pub email: Option<&'a str>,
    /// The `email_verified` claim, when the provider sent one.
    pub email_verified: Option<bool>,
}

/// The agent accounts a provider login names, by work email (trimmed, compared without
/// case). An email the provider itself says is not verified names nobody: anyone could
/// have typed it.
pub fn agent_for_provider_login(
    conn: &mut Conn,
    claims: &ProviderEmail<'_>,
    amr: &[String],
    second_factor: SecondFactorPolicy,
) -> Result<Result<ProviderLoginMatch, ProviderLoginRefusal>, DbError> {
    let Some(email) = claims.email.and_then(|email| AgentEmail::parse(email).ok()) else {
        return Ok(Err(ProviderLoginRefusal::NoEmail));
    };
    if claims.email_verified == Some(false) {
        return Ok(Err(ProviderLoginRefusal::EmailNotVerified));
    }
    let found = super::active_agents_with_email(conn, &email)?;
    if found.is_empty() {
        return Ok(Err(ProviderLoginRefusal::UnknownAgent));
    }
    if second_factor == SecondFactorPolicy::Required && !amr_has_second_factor(amr) {
        for agent in &found {
            audit_failure(conn, agent, "provider_second_factor")?;
        }
        return Ok(Err(ProviderLoginRefusal::SecondFactorMissing));
    }
    Ok(Ok(match <[Agent; 1]>::try_from(found) {
        Ok([agent]) => ProviderLoginMatch::One(agent),
        Err(several) => ProviderLoginMatch::Several(several),
    }))
}

/// Whether an `amr` claim (RFC 8176) shows a second factor: `mfa`, a possession
/// factor, or two factors of different kinds.
pub fn amr_has_second_factor(amr: &[String]) -> bool {
    #[derive(PartialEq)]
    enum Factor {
        Knowledge,
        Possession,
        Inherence,
    }
    let factor = |method: &str| match method {
        "pwd" | "pin" | "kba" => Some(Factor::Knowledge),
        "otp" | "totp" | "hwk" | "swk" | "pop" | "sms" | "tel" | "sc" | "fido" => {
            Some(Factor::Possession)
        }
        "face" | "fpt" | "iris" | "retina" | "vbm" => Some(Factor::Inherence),
        _ => None,
    };
    if amr.iter().any(|method| method == "mfa" || method == "mca") {
        return true;
    }
    let factors: Vec<Factor> = amr.iter().filter_map(|method| factor(method)).collect();
    factors.contains(&Factor::Possession)
        || factors
            .iter()
            .any(|kind| factors.iter().any(|other| other != kind))
}

/// Deletes the half-logged-in states (password given, code not) that expired; returns
/// how many went.
pub fn purge_expired_pending_logins(
    conn: &mut Conn,
    now: chrono::NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(
        diesel::delete(
            agent_pending_logins::table.filter(agent_pending_logins::expires_at.le(now)),
        )
        .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::amr_has_second_factor;

    fn amr(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn second_factors_are_recognised_in_amr() {
        assert!(amr_has_second_factor(&amr(&["pwd", "otp"])));
        assert!(amr_has_second_factor(&amr(&["mfa"])));
        assert!(amr_has_second_factor(&amr(&["pwd", "fpt"])));
        assert!(amr_has_second_factor(&amr(&["hwk"])));
        assert!(!amr_has_second_factor(&amr(&["pwd"])));
        assert!(!amr_has_second_factor(&amr(&["pwd", "pin"])));
        assert!(!amr_has_second_factor(&[]));
    }
}
