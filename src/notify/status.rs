//! What agents may see of notices: per document, which channel, when, and how it went;
//! per tenant, how many notices were given up. Never the contact.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::{NoticeChannel, NoticeKind, NoticeState};
use crate::db::schema::{notice_documents, notices};
use crate::db::{Conn, DbError};

/// One notice about a document, as an agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeStatus {
    pub channel: NoticeChannel,
    pub kind: NoticeKind,
    pub state: NoticeState,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    /// A short code (`smtp_unavailable`, `sms_rejected`, `link_refused`…), never data.
    pub last_error: Option<String>,
}

type StatusRow = (
    String,
    String,
    String,
    String,
    i32,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<String>,
);

/// The notices of each document (oldest first), keyed by document id; documents
/// without notices are absent.
pub fn notices_for_documents(
    conn: &mut Conn,
    document_ids: &[String],
) -> Result<HashMap<String, Vec<NoticeStatus>>, DbError> {
    let rows: Vec<StatusRow> = notice_documents::table
        .inner_join(notices::table)
        .filter(notice_documents::document_id.eq_any(document_ids))
        .order((notice_documents::document_id, notices::created_at))
        .select((
            notice_documents::document_id,
            notices::channel,
            notices::kind,
            notices::state,
            notices::attempts,
            notices::created_at,
            notices::sent_at,
            notices::last_error,
        ))
        .load(conn)?;
    let mut statuses: HashMap<String, Vec<NoticeStatus>> = HashMap::new();
    for (document_id, channel, kind, state, attempts, created_at, sent_at, last_error) in rows {
        let (Some(channel), Some(kind), Some(state)) = (
            NoticeChannel::parse(&channel),
            NoticeKind::parse(&kind),
            NoticeState::parse(&state),
        ) else {
            continue;
        };
        statuses.entry(document_id).or_default().push(NoticeStatus {
            channel,
            kind,
            state,
            attempts,
            created_at,
            sent_at,
            last_error,
        });
    }
    Ok(statuses)
}

/// How many notices were given up, per tenant id (tenants with none are absent).
pub fn dead_notices_per_tenant(conn: &mut Conn) -> Result<HashMap<String, i64>, DbError> {
    Ok(notices::table
        .filter(notices::state.eq(NoticeState::Dead.as_str()))
        .group_by(notices::tenant_id)
        .select((notices::tenant_id, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect())
}
