//! The outbox table: queueing notices in the delivery's transaction (coalesced per
//! citizen, channel and kind), claiming due ones atomically, recording what happened.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text, Timestamp};

use super::targets::NoticeTargets;
use super::{NoticeChannel, NoticeKind, NoticeState};
use crate::dashboard::rollups::{self, NoticeCounting};
use crate::db::schema::{documents, notice_documents, notices};
use crate::db::{AnyConnection, Conn, DbError, sql_on_either_engine};

/// Queues the document notices of one delivery (call inside its transaction): each
/// channel's notice still gathering documents absorbs this one, or a new notice due
/// after the coalescing window is created.
pub fn enqueue_document_notices(
    conn: &mut Conn,
    tenant_id: &str,
    citizen_id: &str,
    document_id: &str,
    targets: &NoticeTargets,
    coalesce: Duration,
) -> Result<(), DbError> {
    let about = Some(document_id);
    enqueue(conn, tenant_id, citizen_id, about, targets, coalesce).map(|_| ())
}

/// Queues "something from your commune is waiting" for a citizen (call inside the
/// transaction that put it in the vault), coalesced like document notices; returns
/// the notices' ids. A voucher placed in the vault uses this alone: the notice then
/// names no document at all.
pub fn enqueue_notices(
    conn: &mut Conn,
    tenant_id: &str,
    citizen_id: &str,
    targets: &NoticeTargets,
    coalesce: Duration,
) -> Result<Vec<String>, DbError> {
    enqueue(conn, tenant_id, citizen_id, None, targets, coalesce)
}

/// The two above: the notices gathered, the document attached to each if there is
/// one, and the dashboard's counters moved once for all of it.
fn enqueue(
    conn: &mut Conn,
    tenant_id: &str,
    citizen_id: &str,
    document_id: Option<&str>,
    targets: &NoticeTargets,
    coalesce: Duration,
) -> Result<Vec<String>, DbError> {
    let mut counting = NoticeCounting::default();
    let gathering = gather(
        conn,
        tenant_id,
        citizen_id,
        targets,
        coalesce,
        &mut counting,
    )?;
    if let Some(document_id) = document_id {
        for notice_id in &gathering {
            attach_document(conn, notice_id, document_id, &mut counting)?;
        }
    }
    counting.apply(conn)?;
    Ok(gathering)
}

/// The notice of each channel gathering for the citizen, created where there is none.
fn gather(
    conn: &mut Conn,
    tenant_id: &str,
    citizen_id: &str,
    targets: &NoticeTargets,
    coalesce: Duration,
    counting: &mut NoticeCounting,
) -> Result<Vec<String>, DbError> {
    let due_at = crate::now() + chrono::TimeDelta::from_std(coalesce).unwrap_or_default();
    targets
        .0
        .iter()
        .map(|(channel, sealed_contact)| {
            let notice = GatheringNotice {
                tenant_id,
                citizen_id,
                kind: NoticeKind::Document,
                channel: *channel,
                sealed_contact,
                due_at,
            };
            insert_or_attach(conn, &notice, counting)
        })
        .collect()
}

/// A notice to create unless one for the same citizen, channel and kind is gathering.
pub(super) struct GatheringNotice<'a> {
    pub tenant_id: &'a str,
    pub citizen_id: &'a str,
    pub kind: NoticeKind,
    pub channel: NoticeChannel,
    pub sealed_contact: &'a [u8],
    pub due_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct NoticeIdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

/// One statement on both engines: the partial unique index `notices_gathering` makes
/// a concurrent second insert land on the first one's row instead of creating a twin.
/// The no-op `DO UPDATE` is there so `RETURNING` yields the existing row's id.
pub(super) fn insert_or_attach(
    conn: &mut Conn,
    notice: &GatheringNotice<'_>,
    counting: &mut NoticeCounting,
) -> Result<String, DbError> {
    const SQL: &str = "INSERT INTO notices (id, tenant_id, citizen_id, kind, channel, sealed_contact, \
         state, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8) \
         ON CONFLICT (tenant_id, citizen_id, channel, kind) WHERE state = 'pending' AND attempts = 0 \
         DO UPDATE SET attempts = notices.attempts \
         RETURNING id";
    let id = crate::new_id();
    let now = crate::now();
    let row = sql_on_either_engine!(
        conn,
        SQL,
        NoticeIdRow,
        get_result,
        (Text, &id),
        (Text, notice.tenant_id),
        (Text, notice.citizen_id),
        (Text, notice.kind.as_str()),
        (Text, notice.channel.as_str()),
        (Binary, notice.sealed_contact),
        (Timestamp, notice.due_at),
        (Timestamp, now),
    )?;
    if row.id == id {
        counting.created(conn, &row.id)?;
    }
    Ok(row.id)
}

/// Links a document to a notice.
pub(super) fn attach_document(
    conn: &mut Conn,
    notice_id: &str,
    document_id: &str,
    counting: &mut NoticeCounting,
) -> Result<(), DbError> {
    counting.track(conn, &[notice_id], |conn| {
        diesel::insert_into(notice_documents::table)
            .values((
                notice_documents::notice_id.eq(notice_id),
                notice_documents::document_id.eq(document_id),
            ))
            .execute(conn)
            .map_err(DbError::from)
    })?;
    Ok(())
}

/// A notice a worker now holds, with what sending it needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedNotice {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub tenant_id: String,
    #[diesel(sql_type = Text)]
    pub citizen_id: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = Binary)]
    pub sealed_contact: Vec<u8>,
    /// Including this one.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub claim_token: Option<String>,
}

/// Claims up to `limit` notices that are due, or whose claim is older than `lease`
/// (their worker died), in one statement. Returns them with the claim token that
/// every later update must present.
///
/// PostgreSQL: `FOR UPDATE SKIP LOCKED` lets several instances claim side by side,
/// each skipping the rows another is claiming. SQLite has no row locks and needs none:
/// the statement runs under the single database writer lock, so two claims are
/// serialised and the second sees the first one's `sending` rows.
pub fn claim_due_notices(
    conn: &mut Conn,
    limit: u32,
    lease: Duration,
) -> Result<Vec<ClaimedNotice>, DbError> {
    const RETURNING: &str = " RETURNING id, tenant_id, citizen_id, kind, channel, sealed_contact, \
                             attempts, claim_token";
    const SET: &str = "UPDATE notices SET state = 'sending', claimed_at = $1, claim_token = $2, \
                       attempts = attempts + 1 WHERE id IN (SELECT id FROM notices \
                       WHERE (state = 'pending' AND next_attempt_at <= $1) \
                       OR (state = 'sending' AND claimed_at <= $3) \
                       ORDER BY next_attempt_at LIMIT $4";
    let now = crate::now();
    let stale = now - chrono::TimeDelta::from_std(lease).unwrap_or_default();
    let token = crate::new_id();
    macro_rules! run {
        ($conn:expr, $sql:expr) => {
            diesel::sql_query($sql)
                .bind::<Timestamp, _>(now)
                .bind::<Text, _>(&token)
                .bind::<Timestamp, _>(stale)
                .bind::<BigInt, _>(i64::from(limit))
                .load::<ClaimedNotice>($conn)
        };
    }
    let claimed = match conn {
        AnyConnection::Postgresql(pg) => {
            run!(pg, format!("{SET} FOR UPDATE SKIP LOCKED){RETURNING}"))
        }
        AnyConnection::Sqlite(sqlite) => {
            run!(sqlite, format!("{SET}){RETURNING}").replace('$', "?"))
        }
    }?;
    Ok(claimed)
}

/// What became of one claimed notice.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent,
    Retry {
        at: NaiveDateTime,
        error: &'static str,
    },
    Dead {
        error: &'static str,
    },
    /// The citizen's current settings want no such notice: it is removed unsent.
    Dropped,
}

/// Records outcomes; each update holds only while the claim is still ours (a worker
/// whose lease was taken over changes nothing), with the channel decided at sending
/// time. A sent document notice stamps its documents' `notified_at`. The dashboard's counts move with the notices, once for
/// the whole batch.
pub fn record_outcomes(
    conn: &mut Conn,
    outcomes: &[(ClaimedNotice, Outcome)],
) -> Result<(), DbError> {
    let ids: Vec<&str> = outcomes
        .iter()
        .map(|(notice, _)| notice.id.as_str())
        .collect();
    rollups::track_notices(conn, &ids, |conn| record_each_outcome(conn, outcomes))
}

fn record_each_outcome(
    conn: &mut Conn,
    outcomes: &[(ClaimedNotice, Outcome)],
) -> Result<(), DbError> {
    let now = crate::now();
    for (notice, outcome) in outcomes {
        let ours = notices::table
            .filter(notices::id.eq(&notice.id))
            .filter(notices::claim_token.eq(&notice.claim_token))
            .filter(notices::state.eq(NoticeState::Sending.as_str()));
        let updated = match outcome {
            Outcome::Dropped => {
                let dropped = ours.select(notices::id);
                diesel::delete(
                    notice_documents::table.filter(notice_documents::notice_id.eq_any(dropped)),
                )
                .execute(conn)?;
                diesel::delete(ours).execute(conn)?
            }
            Outcome::Sent => diesel::update(ours)
                .set((
                    notices::channel.eq(&notice.channel),
                    notices::state.eq(NoticeState::Sent.as_str()),
                    notices::sent_at.eq(now),
                    notices::claim_token.eq(None::<String>),
                    notices::last_error.eq(None::<String>),
                ))
                .execute(conn)?,
            Outcome::Retry { at, error } => diesel::update(ours)
                .set((
                    // The channel stays the queued one: the next try decides again.
                    notices::state.eq(NoticeState::Pending.as_str()),
                    notices::next_attempt_at.eq(at),
                    notices::claim_token.eq(None::<String>),
                    notices::last_error.eq(Some(*error)),
                ))
                .execute(conn)?,
            Outcome::Dead { error } => diesel::update(ours)
                .set((
                    notices::channel.eq(&notice.channel),
                    notices::state.eq(NoticeState::Dead.as_str()),
                    notices::claim_token.eq(None::<String>),
                    notices::last_error.eq(Some(*error)),
                ))
                .execute(conn)?,
        };
        if updated == 1
            && matches!(outcome, Outcome::Sent)
            && notice.kind == NoticeKind::Document.as_str()
        {
            let announced = notice_documents::table
                .filter(notice_documents::notice_id.eq(&notice.id))
                .select(notice_documents::document_id);
            diesel::update(
                documents::table
                    .filter(documents::id.eq_any(announced))
                    .filter(documents::notified_at.is_null()),
            )
            .set(documents::notified_at.eq(now))
            .execute(conn)?;
        }
    }
    Ok(())
}

/// A withdrawn document must not be announced: it leaves the notices not yet sent,
/// and a notice it leaves about nothing is dropped. Run in the withdrawal's
/// transaction. (A notice already being sent goes out; it names no document anyway.)
pub fn forget_withdrawn_document(
    conn: &mut Conn,
    citizen_id: &str,
    document_id: &str,
) -> Result<(), DbError> {
    let unsent: Vec<String> = notices::table
        .inner_join(notice_documents::table)
        .filter(notices::citizen_id.eq(citizen_id))
        .filter(notices::state.eq(NoticeState::Pending.as_str()))
        .filter(notice_documents::document_id.eq(document_id))
        .select(notices::id)
        .load(conn)?;
    if unsent.is_empty() {
        return Ok(());
    }
    let unsent: Vec<&str> = unsent.iter().map(String::as_str).collect();
    rollups::track_notices(conn, &unsent, |conn| {
        diesel::delete(
            notice_documents::table
                .filter(notice_documents::document_id.eq(document_id))
                .filter(notice_documents::notice_id.eq_any(&unsent)),
        )
        .execute(conn)?;
        let still_about_something: Vec<String> = notice_documents::table
            .filter(notice_documents::notice_id.eq_any(&unsent))
            .select(notice_documents::notice_id)
            .load(conn)?;
        let empty: Vec<&str> = unsent
            .iter()
            .copied()
            .filter(|id| !still_about_something.iter().any(|other| other == id))
            .collect();
        diesel::delete(notices::table.filter(notices::id.eq_any(empty))).execute(conn)?;
        Ok(())
    })
}
