//! The outbox worker each server runs: claims due notices in batches, unseals what
//! sending needs, sends with bounded parallelism, records every outcome (sent, retry
//! with exponential backoff, dead), and queues reminders periodically.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use futures::StreamExt;

use super::channels::{Channels, ReadyNotice, SendFailure};
use super::outbox::{self, ClaimedNotice, Outcome};
use super::{NoticeChannel, NoticeKind, NotifyError};
use crate::citizens;
use crate::config::NotifyConfig;
use crate::crypto::{VaultIdentity, unseal};
use crate::db::Conn;
use crate::db::schema::{documents, notice_documents, tenants};
use crate::state::AppState;
use crate::vault::delivery::SealedMetadata;

/// Sends the outbox of one instance.
#[derive(Clone)]
pub struct Worker {
    state: AppState,
    channels: Arc<Channels>,
}

/// How one batch went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub sent: usize,
    pub retried: usize,
    pub dead: usize,
}

impl BatchReport {
    /// Notices handled.
    pub fn total(&self) -> usize {
        self.sent + self.retried + self.dead
    }
}

impl Worker {
    /// Builds the channels from the configuration.
    pub fn new(state: AppState) -> Result<Self, String> {
        let channels = Channels::from_config(&state.config)?;
        Ok(Self {
            state,
            channels: Arc::new(channels),
        })
    }

    /// The channels, for the benchmark's baseline.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    fn config(&self) -> &NotifyConfig {
        &self.state.config.notify
    }

    /// Runs until the task is dropped: a batch after another while there is work,
    /// a pause of `poll_interval_ms` when there is none.
    pub async fn run(self) {
        let poll = Duration::from_millis(self.config().poll_interval_ms);
        let scan = Duration::from_secs(self.config().reminder_scan_seconds.max(1));
        let mut next_scan = Instant::now();
        loop {
            if self.config().reminder_days > 0 && Instant::now() >= next_scan {
                next_scan = Instant::now() + scan;
                if let Err(error) = self.queue_reminders().await {
                    tracing::warn!(%error, "reminder scan failed; will retry");
                }
            }
            match self.send_due_batch().await {
                Ok(report) if report.total() > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "notice batch failed; will retry"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Queues the reminders that are due now; returns how many documents they cover.
    pub async fn queue_reminders(&self) -> Result<usize, NotifyError> {
        let days = self.config().reminder_days;
        let batch = self.config().batch_size;
        let reminded = self
            .state
            .db
            .write(move |conn| super::queue_reminders(conn, days, batch))
            .await?;
        if reminded > 0 {
            tracing::info!(documents.reminded = reminded, "reminders queued");
        }
        Ok(reminded)
    }

    /// Claims one batch of due notices, sends them and records the outcomes.
    pub async fn send_due_batch(&self) -> Result<BatchReport, NotifyError> {
        let (limit, lease) = (
            self.config().batch_size,
            Duration::from_secs(self.config().lease_seconds),
        );
        let claimed = self
            .state
            .db
            .write(move |conn| outbox::claim_due_notices(conn, limit, lease))
            .await?;
        if claimed.is_empty() {
            return Ok(BatchReport::default());
        }
        let keys = self.state.keys.clone();
        let prepared = self
            .state
            .db
            .read(move |conn| prepare(conn, &keys.master, claimed))
            .await?;
        let timeout = Duration::from_secs(self.config().send_timeout_seconds);
        let concurrency = usize::try_from(self.config().concurrency).unwrap_or(1);
        let outcomes: Vec<(ClaimedNotice, Outcome)> = futures::stream::iter(prepared)
            .map(|item| self.send_one(item, timeout))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut report = BatchReport::default();
        for (notice, outcome) in &outcomes {
            match outcome {
                Outcome::Sent => report.sent += 1,
                Outcome::Retry { error, .. } => {
                    report.retried += 1;
                    tracing::warn!(notice.id = %notice.id, notice.attempts = notice.attempts, error = *error, "notice not sent; will retry");
                }
                Outcome::Dead { error } => {
                    report.dead += 1;
                    tracing::error!(notice.id = %notice.id, notice.attempts = notice.attempts, error = *error, "notice given up");
                }
            }
        }
        self.state
            .db
            .write(move |conn| outbox::record_outcomes(conn, &outcomes))
            .await?;
        tracing::debug!(
            notices.sent = report.sent,
            notices.retried = report.retried,
            notices.dead = report.dead,
            "notice batch done"
        );
        Ok(report)
    }

    async fn send_one(
        &self,
        (notice, ready): Prepared,
        timeout: Duration,
    ) -> (ClaimedNotice, Outcome) {
        let result = match ready {
            Ok(ready) => tokio::time::timeout(timeout, self.channels.send(&ready))
                .await
                .unwrap_or(Err(SendFailure::Retry("send_timeout"))),
            Err(failure) => Err(failure),
        };
        let outcome = self.outcome(&notice, result);
        (notice, outcome)
    }

    /// Retry after `base × 2^(attempts−1)` (at most `backoff_max_seconds`), or give up
    /// once `max_attempts` tries were made.
    fn outcome(&self, notice: &ClaimedNotice, result: Result<(), SendFailure>) -> Outcome {
        let config = self.config();
        match result {
            Ok(()) => Outcome::Sent,
            Err(SendFailure::Dead(error)) => Outcome::Dead { error },
            Err(SendFailure::Retry(error))
                if u32::try_from(notice.attempts).unwrap_or(u32::MAX) >= config.max_attempts =>
            {
                Outcome::Dead { error }
            }
            Err(SendFailure::Retry(error)) => {
                let exponent = u32::try_from(notice.attempts.saturating_sub(1)).unwrap_or(0);
                let delay = config
                    .backoff_base_seconds
                    .saturating_mul(2u64.saturating_pow(exponent.min(32)))
                    .min(config.backoff_max_seconds);
                let delay = chrono::TimeDelta::seconds(i64::try_from(delay).unwrap_or(i64::MAX));
                Outcome::Retry {
                    at: crate::now() + delay,
                    error,
                }
            }
        }
    }
}

/// A claimed notice, ready to send or with the code of why it cannot be.
type Prepared = (ClaimedNotice, Result<ReadyNotice, SendFailure>);

/// Unseals, for each claimed notice, its contact and its documents' titles, and finds
/// its tenant's name. A notice that cannot be read gets a code instead.
fn prepare(
    conn: &mut Conn,
    master: &crate::crypto::MasterKey,
    claimed: Vec<ClaimedNotice>,
) -> Result<Vec<Prepared>, NotifyError> {
    let ids: Vec<&str> = claimed.iter().map(|notice| notice.id.as_str()).collect();
    let mut sealed_titles: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (notice_id, sealed) in notice_documents::table
        .inner_join(documents::table)
        .filter(notice_documents::notice_id.eq_any(&ids))
        .select((notice_documents::notice_id, documents::sealed_metadata))
        .load::<(String, Vec<u8>)>(conn)?
    {
        sealed_titles.entry(notice_id).or_default().push(sealed);
    }
    let tenant_ids: Vec<&str> = claimed.iter().map(|n| n.tenant_id.as_str()).collect();
    let tenant_names: HashMap<String, String> = tenants::table
        .filter(tenants::id.eq_any(&tenant_ids))
        .select((tenants::id, tenants::name))
        .load(conn)?
        .into_iter()
        .collect();
    let mut identities: HashMap<String, Option<VaultIdentity>> = HashMap::new();
    let mut prepared = Vec::with_capacity(claimed.len());
    for notice in claimed {
        if !identities.contains_key(&notice.citizen_id) {
            let identity = citizens::unwrap_vault_identity(conn, master, &notice.citizen_id)
                .ok()
                .flatten();
            identities.insert(notice.citizen_id.clone(), identity);
        }
        let identity = identities.get(&notice.citizen_id).and_then(Option::as_ref);
        let ready = ready_notice(
            &notice,
            identity,
            tenant_names.get(&notice.tenant_id),
            sealed_titles.remove(&notice.id).unwrap_or_default(),
        )
        .map_err(SendFailure::Dead);
        prepared.push((notice, ready));
    }
    Ok(prepared)
}

fn ready_notice(
    notice: &ClaimedNotice,
    identity: Option<&VaultIdentity>,
    tenant_name: Option<&String>,
    sealed_titles: Vec<Vec<u8>>,
) -> Result<ReadyNotice, &'static str> {
    let identity = identity.ok_or("key_unavailable")?;
    let contact = unseal(identity, &notice.sealed_contact).map_err(|_| "contact_unreadable")?;
    let contact = String::from_utf8(contact).map_err(|_| "contact_unreadable")?;
    let titles = sealed_titles
        .iter()
        .map(|sealed| {
            let plain = unseal(identity, sealed).map_err(|_| "metadata_unreadable")?;
            serde_json::from_slice::<SealedMetadata>(&plain)
                .map(|metadata| metadata.title)
                .map_err(|_| "metadata_unreadable")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReadyNotice {
        id: notice.id.clone(),
        kind: NoticeKind::parse(&notice.kind).ok_or("invalid_notice")?,
        channel: NoticeChannel::parse(&notice.channel).ok_or("invalid_notice")?,
        contact,
        tenant_name: tenant_name.cloned().ok_or("unknown_tenant")?,
        titles,
    })
}
