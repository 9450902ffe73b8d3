//! Reminders: once per document, when it is still unopened (and not withdrawn) some
//! days after its notice went out, one reminder notice per citizen and channel.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::NoticeKind;
use super::outbox::{GatheringNotice, attach_document, insert_or_attach};
use crate::dashboard::rollups::NoticeCounting;
use crate::db::schema::{documents, notice_documents, notices};
use crate::db::{Conn, DbError};

/// (tenant id, citizen id, channel): one reminder each.
type ReminderKey = (String, String, String);

/// Marks up to `limit` documents due for a reminder and queues their reminders, in the
/// caller's transaction. The mark is a conditional `UPDATE … RETURNING`, so two
/// instances scanning at once never remind about the same document twice. Reminders
/// go to the contacts of the documents' first notices.
pub fn queue_reminders(conn: &mut Conn, days: u32, limit: u32) -> Result<usize, DbError> {
    if days == 0 {
        return Ok(0);
    }
    let now = crate::now();
    let cutoff = now - chrono::TimeDelta::days(i64::from(days));
    let due: Vec<String> = documents::table
        .filter(documents::reminded_at.is_null())
        .filter(documents::first_opened_at.is_null())
        .filter(documents::withdrawn_at.is_null())
        .filter(documents::notified_at.is_not_null())
        .filter(documents::created_at.le(cutoff))
        .order(documents::created_at)
        .limit(i64::from(limit))
        .select(documents::id)
        .load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let marked: Vec<String> = diesel::update(
        documents::table
            .filter(documents::id.eq_any(&due))
            .filter(documents::reminded_at.is_null()),
    )
    .set(documents::reminded_at.eq(now))
    .returning(documents::id)
    .get_results(conn)?;
    let first_notices: Vec<(String, String, String, String, Vec<u8>)> = notice_documents::table
        .inner_join(notices::table)
        .filter(notice_documents::document_id.eq_any(&marked))
        .filter(notices::kind.eq(NoticeKind::Document.as_str()))
        .select((
            notice_documents::document_id,
            notices::tenant_id,
            notices::citizen_id,
            notices::channel,
            notices::sealed_contact,
        ))
        .load(conn)?;
    // One reminder per (tenant, citizen, channel), however many documents it covers.
    let mut grouped: BTreeMap<ReminderKey, (Vec<u8>, Vec<String>)> = BTreeMap::new();
    for (document_id, tenant_id, citizen_id, channel, sealed) in first_notices {
        let entry = grouped
            .entry((tenant_id, citizen_id, channel))
            .or_insert_with(|| (sealed, Vec::new()));
        if !entry.1.contains(&document_id) {
            entry.1.push(document_id);
        }
    }
    // The counters move once, at the end, whatever order the citizens came in.
    let mut counting = NoticeCounting::default();
    for ((tenant_id, citizen_id, channel), (sealed_contact, document_ids)) in grouped {
        let Some(channel) = super::NoticeChannel::parse(&channel) else {
            continue;
        };
        let notice_id = insert_or_attach(
            conn,
            &GatheringNotice {
                tenant_id: &tenant_id,
                citizen_id: &citizen_id,
                kind: NoticeKind::Reminder,
                channel,
                sealed_contact: &sealed_contact,
                due_at: now,
            },
            &mut counting,
        )?;
        for document_id in document_ids {
            attach_document(conn, &notice_id, &document_id, &mut counting)?;
        }
    }
    counting.apply(conn)?;
    Ok(marked.len())
}
