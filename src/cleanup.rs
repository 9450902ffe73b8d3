//! The periodic cleanup of short-lived rows: logins started and never finished,
//! ended sessions, half-finished agent logins and tenant choices, closed throttling
//! windows, old refused scans, passkey ceremonies never finished (and recovery attempts
//! out of their window), and API tokens revoked or expired long enough ago. Each
//! feature purges its own tables; this module only calls them, under a lease so that
//! one instance at a time does it (`serve` every `[session] cleanup_interval_minutes`,
//! and `eguichet cleanup`).

use std::fmt;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};

use crate::auth::sessions::{self, SessionPolicy};
use crate::config::Config;
use crate::db::lease::{self, CLEANUP_LEASE};
use crate::db::{Database, DbError};
use crate::state::AppState;

/// How long a cleanup may hold the lease before another instance may take it over (a
/// run takes well under a second; an instance that died mid-run is not waited for long).
const LEASE_DURATION: TimeDelta = TimeDelta::minutes(10);
/// Refused scans are kept at least this long, whatever the limit's window.
const SCAN_FAILURE_RETENTION: TimeDelta = TimeDelta::days(1);

/// What the cleanup needs to know of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct CleanupPolicy {
    pub citizen_sessions: SessionPolicy,
    pub agent_sessions: SessionPolicy,
    /// Revoked or expired tokens are kept (and listed) this long.
    pub ended_token_retention: TimeDelta,
    /// Refused scans older than this count for nothing.
    pub scan_failure_retention: TimeDelta,
}

impl CleanupPolicy {
    pub fn from_config(config: &Config) -> Self {
        let scan_window = TimeDelta::minutes(i64::from(config.limits.failed_scan_window_minutes));
        Self {
            citizen_sessions: SessionPolicy::from_config(&config.session),
            agent_sessions: SessionPolicy::for_agents(&config.session),
            ended_token_retention: TimeDelta::days(i64::from(
                config.session.ended_token_retention_days,
            )),
            scan_failure_retention: scan_window.max(SCAN_FAILURE_RETENTION),
        }
    }
}

/// How many rows of each kind one cleanup deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub pending_logins: usize,
    pub sessions: usize,
    pub api_tokens: usize,
    pub agent_pending_logins: usize,
    pub agent_tenant_choices: usize,
    pub login_failure_windows: usize,
    pub voucher_scan_failures: usize,
    pub voucher_scan_requests: usize,
    pub vault_ceremonies: usize,
}

impl CleanupReport {
    pub fn total(&self) -> usize {
        self.pending_logins
            + self.sessions
            + self.api_tokens
            + self.agent_pending_logins
            + self.agent_tenant_choices
            + self.login_failure_windows
            + self.voucher_scan_failures
            + self.voucher_scan_requests
            + self.vault_ceremonies
    }
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pending logins:             {}", self.pending_logins)?;
        writeln!(f, "sessions:                   {}", self.sessions)?;
        writeln!(f, "API tokens:                 {}", self.api_tokens)?;
        writeln!(
            f,
            "agents' pending logins:     {}",
            self.agent_pending_logins
        )?;
        writeln!(
            f,
            "agents' tenant choices:     {}",
            self.agent_tenant_choices
        )?;
        writeln!(
            f,
            "login failure windows:      {}",
            self.login_failure_windows
        )?;
        writeln!(
            f,
            "refused voucher scans:      {}",
            self.voucher_scan_failures
        )?;
        writeln!(
            f,
            "voucher scan form tokens:   {}",
            self.voucher_scan_requests
        )?;
        writeln!(f, "passkey ceremonies:         {}", self.vault_ceremonies)
    }
}

/// What one attempt at the cleanup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupOutcome {
    Done(CleanupReport),
    /// Another instance holds the lease: it is cleaning up now.
    Skipped,
}

/// Runs the cleanup once as of `now`, unless another instance is running it. Blocks:
/// call from a blocking thread (the CLI, or through [`run_cleanup`]).
pub fn run_cleanup_blocking(
    db: &Database,
    policy: CleanupPolicy,
    now: NaiveDateTime,
) -> Result<CleanupOutcome, DbError> {
    let holder = crate::new_id();
    let taken = db.write_blocking(|conn| {
        lease::take_lease(conn, CLEANUP_LEASE, &holder, now, LEASE_DURATION)
    })?;
    if !taken {
        return Ok(CleanupOutcome::Skipped);
    }
    let purged = db.write_blocking(|conn| -> Result<_, DbError> {
        Ok(CleanupReport {
            pending_logins: sessions::purge_expired_flows(conn, now)?,
            sessions: sessions::purge_ended_sessions(
                conn,
                now,
                policy.citizen_sessions,
                policy.agent_sessions,
            )?,
            api_tokens: crate::agents::api_tokens::purge_ended_tokens(
                conn,
                now,
                policy.ended_token_retention,
            )?,
            agent_pending_logins: crate::agents::login::purge_expired_pending_logins(conn, now)?,
            agent_tenant_choices: crate::agents::tenant_choice::purge_expired_choices(conn, now)?,
            login_failure_windows: crate::auth::throttle::purge_closed_windows(conn, now)?,
            voucher_scan_failures: crate::vouchers::redeem::purge_scan_failures(
                conn,
                now - policy.scan_failure_retention,
            )?,
            voucher_scan_requests: crate::vouchers::scan_requests::purge_expired_scan_requests(
                conn, now,
            )?,
            vault_ceremonies: crate::vault::passkeys::purge_expired(conn, now)?,
        })
    });
    // Given back whatever happened, so that the next run need not wait for it to expire.
    let released =
        db.write_blocking(|conn| lease::release_lease(conn, CLEANUP_LEASE, &holder, now));
    let report = purged?;
    released?;
    Ok(CleanupOutcome::Done(report))
}

/// [`run_cleanup_blocking`] on the blocking pool.
pub async fn run_cleanup(
    db: &Database,
    policy: CleanupPolicy,
    now: NaiveDateTime,
) -> Result<CleanupOutcome, DbError> {
    let db = db.clone();
    crate::telemetry::spawn_blocking(move || run_cleanup_blocking(&db, policy, now))
        .await
        .map_err(|error| DbError::Unavailable(error.to_string()))?
}

/// Runs the cleanup a minute after start, then every `[session] cleanup_interval_minutes`.
pub async fn cleanup_periodically(state: AppState) {
    let policy = CleanupPolicy::from_config(&state.config);
    let every = Duration::from_secs(u64::from(state.config.session.cleanup_interval_minutes) * 60);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        match run_cleanup(&state.db, policy, crate::now()).await {
            Ok(CleanupOutcome::Done(report)) => tracing::info!(
                cleanup.deleted = report.total(),
                cleanup.pending_logins = report.pending_logins,
                cleanup.sessions = report.sessions,
                "cleanup done"
            ),
            Ok(CleanupOutcome::Skipped) => {
                tracing::debug!("cleanup left to the instance holding its lease");
            }
            Err(error) => tracing::warn!(%error, "cleanup failed; will retry"),
        }
    }
}
