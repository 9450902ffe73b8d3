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
use super::targets::{SendingTarget, target_at_sending};
use super::{NoticeChannel, NoticeKind, NoticeState, NotifyError};
use crate::citizens::{self, NotificationContacts, VaultAccess};
use crate::config::NotifyConfig;
use crate::crypto::{VaultIdentity, unseal};
use crate::db::Conn;
use crate::db::schema::{documents, notice_documents, notices, tenants};
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
    /// Not sent because the citizen's current settings want no such notice.
    pub dropped: usize,
}

impl BatchReport {
    /// Notices handled.
    pub fn total(&self) -> usize {
        self.sent + self.retried + self.dead + self.dropped
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
        let channels = self.channels.clone();
        let prepared = self
            .state
            .db
            .read(move |conn| {
                prepare(conn, keys.server_keys(), claimed, &|channel| {
                    channels.can_send(channel)
                })
            })
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
                Outcome::Dropped => report.dropped += 1,
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
            Ok(None) => return (notice, Outcome::Dropped),
            Ok(Some(ready)) => tokio::time::timeout(timeout, self.channels.send(&ready))
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

/// A claimed notice, ready to send (or to drop: `None`) or with the code of why it
/// cannot be.
type Prepared = (ClaimedNotice, Result<Option<ReadyNotice>, SendFailure>);

/// Unseals, for each claimed notice, its documents' titles and the citizen's current
/// settings, decides where it goes now, and finds its tenant's name. A notice that
/// cannot be read gets a code instead. The claimed notice carries the channel decided.
fn prepare(
    conn: &mut Conn,
    keys: citizens::ServerKeys<'_>,
    claimed: Vec<ClaimedNotice>,
    can_send: &dyn Fn(NoticeChannel) -> bool,
) -> Result<Vec<Prepared>, NotifyError> {
    let ids: Vec<&str> = claimed.iter().map(|notice| notice.id.as_str()).collect();
    // Titles of the documents still in the vault; a notice whose documents were all
    // withdrawn meanwhile (its claim outlived the withdrawal) tells of nothing.
    let mut sealed_titles: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut about_withdrawn_only: Vec<String> = Vec::new();
    for (notice_id, sealed, withdrawn_at) in notice_documents::table
        .inner_join(documents::table)
        .filter(notice_documents::notice_id.eq_any(&ids))
        .select((
            notice_documents::notice_id,
            documents::sealed_metadata,
            documents::withdrawn_at,
        ))
        .load::<(String, Vec<u8>, Option<chrono::NaiveDateTime>)>(conn)?
    {
        if withdrawn_at.is_some() {
            about_withdrawn_only.push(notice_id);
        } else {
            sealed_titles.entry(notice_id).or_default().push(sealed);
        }
    }
    about_withdrawn_only.retain(|id| !sealed_titles.contains_key(id));
    let tenant_ids: Vec<&str> = claimed.iter().map(|n| n.tenant_id.as_str()).collect();
    let tenant_names: HashMap<String, String> = tenants::table
        .filter(tenants::id.eq_any(&tenant_ids))
        .select((tenants::id, tenants::name))
        .load(conn)?
        .into_iter()
        .collect();
    let siblings = Siblings::load(conn, &claimed)?;
    // The escrowed vault key of each citizen, or `None` for a locked vault (whose
    // contacts are sealed to the server's contacts key and whose titles it cannot read).
    let mut identities: HashMap<String, Option<Option<VaultIdentity>>> = HashMap::new();
    let mut settings: HashMap<String, Option<Option<NotificationContacts>>> = HashMap::new();
    let mut prepared = Vec::with_capacity(claimed.len());
    for mut notice in claimed {
        if !identities.contains_key(&notice.citizen_id) {
            let identity = match citizens::vault_access(conn, keys.master, &notice.citizen_id) {
                Ok(VaultAccess::Escrowed(identity)) => Some(Some(identity)),
                Ok(VaultAccess::Locked) => Some(None),
                Ok(VaultAccess::Unknown) | Err(_) => None,
            };
            identities.insert(notice.citizen_id.clone(), identity);
            let saved = citizens::saved_notification_contacts(conn, keys, &notice.citizen_id);
            settings.insert(notice.citizen_id.clone(), saved.ok());
        }
        if about_withdrawn_only.contains(&notice.id) {
            prepared.push((notice, Ok(None)));
            continue;
        }
        let (contact_key, title_key) = match identities.get(&notice.citizen_id) {
            Some(Some(Some(identity))) => (Some(identity), Some(identity)),
            Some(Some(None)) => (Some(keys.contacts), None),
            _ => (None, None),
        };
        let saved = settings.get(&notice.citizen_id).cloned().flatten();
        let covered = siblings.covering(&notice);
        let tenant_name = tenant_names.get(&notice.tenant_id).cloned();
        let titles = sealed_titles.remove(&notice.id).unwrap_or_default();
        let ready = ready_notice(
            &mut notice,
            NoticeKeys {
                contact: contact_key,
                titles: title_key,
            },
            saved,
            &|queued, frozen, saved| target_at_sending(queued, frozen, saved, &covered, can_send),
            tenant_name,
            titles,
        )
        .map_err(SendFailure::Dead);
        prepared.push((notice, ready));
    }
    Ok(prepared)
}

/// The rule deciding where a notice goes, given its queued channel, the contact frozen
/// at delivery and the citizen's current settings.
type DecideTarget<'a> =
    dyn Fn(NoticeChannel, String, Option<&NotificationContacts>) -> SendingTarget + 'a;

/// What opens a notice's sealed parts: its contact (the citizen's escrowed key, or the
/// contacts key for a locked vault) and its documents' titles (`None` for a locked vault:
/// the server cannot read them, and the texts never carry them anyway).
struct NoticeKeys<'a> {
    contact: Option<&'a VaultIdentity>,
    titles: Option<&'a VaultIdentity>,
}

/// `saved` is `None` when the citizen's settings could not be read.
fn ready_notice(
    notice: &mut ClaimedNotice,
    keys: NoticeKeys<'_>,
    saved: Option<Option<NotificationContacts>>,
    decide: &DecideTarget<'_>,
    tenant_name: Option<String>,
    sealed_titles: Vec<Vec<u8>>,
) -> Result<Option<ReadyNotice>, &'static str> {
    let contact_key = keys.contact.ok_or("key_unavailable")?;
    let saved = saved.ok_or("contacts_unreadable")?;
    let contact = unseal(contact_key, &notice.sealed_contact).map_err(|_| "contact_unreadable")?;
    let contact = String::from_utf8(contact).map_err(|_| "contact_unreadable")?;
    let queued = NoticeChannel::parse(&notice.channel).ok_or("invalid_notice")?;
    let (channel, contact) = match decide(queued, contact, saved.as_ref()) {
        SendingTarget::Send(channel, contact) => (channel, contact),
        SendingTarget::Drop => return Ok(None),
    };
    channel.as_str().clone_into(&mut notice.channel);
    let titles = match keys.titles {
        Some(identity) => sealed_titles
            .iter()
            .map(|sealed| {
                let plain = unseal(identity, sealed).map_err(|_| "metadata_unreadable")?;
                serde_json::from_slice::<SealedMetadata>(&plain)
                    .map(|metadata| metadata.title)
                    .map_err(|_| "metadata_unreadable")
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(Some(ReadyNotice {
        id: notice.id.clone(),
        kind: NoticeKind::parse(&notice.kind).ok_or("invalid_notice")?,
        channel,
        contact,
        tenant_name: tenant_name.ok_or("unknown_tenant")?,
        titles,
    }))
}

/// The citizens' other notices that already tell them the same thing: those of the
/// same kind still queued or being sent, and those sent about one of the same documents.
struct Siblings {
    /// (notice id, tenant id, citizen id, kind, channel, state)
    notices: Vec<(String, String, String, String, String, String)>,
    /// (notice id, document id) of the batch's notices and of the sent siblings.
    documents: Vec<(String, String)>,
}

impl Siblings {
    fn load(conn: &mut Conn, claimed: &[ClaimedNotice]) -> Result<Self, NotifyError> {
        let ids: Vec<&str> = claimed.iter().map(|notice| notice.id.as_str()).collect();
        let citizens: Vec<&str> = claimed.iter().map(|n| n.citizen_id.as_str()).collect();
        let batch_documents: Vec<(String, String)> = notice_documents::table
            .filter(notice_documents::notice_id.eq_any(&ids))
            .select((notice_documents::notice_id, notice_documents::document_id))
            .load(conn)?;
        let document_ids: Vec<&str> = batch_documents.iter().map(|(_, d)| d.as_str()).collect();
        let sent_about_them: Vec<(String, String)> = notice_documents::table
            .inner_join(notices::table)
            .filter(notice_documents::document_id.eq_any(&document_ids))
            .filter(notices::state.eq(NoticeState::Sent.as_str()))
            .select((notice_documents::notice_id, notice_documents::document_id))
            .load(conn)?;
        let states = [
            NoticeState::Pending.as_str(),
            NoticeState::Sending.as_str(),
            NoticeState::Sent.as_str(),
        ];
        let notices = notices::table
            .filter(notices::citizen_id.eq_any(&citizens))
            .filter(notices::state.eq_any(states))
            .filter(
                notices::state
                    .ne(NoticeState::Sent.as_str())
                    .or(notices::id.eq_any(sent_about_them.iter().map(|(n, _)| n.as_str()))),
            )
            .select((
                notices::id,
                notices::tenant_id,
                notices::citizen_id,
                notices::kind,
                notices::channel,
                notices::state,
            ))
            .load(conn)?;
        let mut documents = batch_documents;
        documents.extend(sent_about_them);
        Ok(Self { notices, documents })
    }

    /// The channels on which another notice covers this one.
    fn covering(&self, notice: &ClaimedNotice) -> Vec<NoticeChannel> {
        let documents_of = |id: &str| -> Vec<&str> {
            self.documents
                .iter()
                .filter(|(notice_id, _)| notice_id == id)
                .map(|(_, document_id)| document_id.as_str())
                .collect()
        };
        let own = documents_of(&notice.id);
        self.notices
            .iter()
            .filter(|(id, tenant, citizen, kind, _, state)| {
                *id != notice.id
                    && *tenant == notice.tenant_id
                    && *citizen == notice.citizen_id
                    && *kind == notice.kind
                    && (state != NoticeState::Sent.as_str()
                        || documents_of(id).iter().any(|d| own.contains(d)))
            })
            .filter_map(|(.., channel, _)| NoticeChannel::parse(channel))
            .collect()
    }
}
