//! The agent's side of delivered documents: listing them within the agent's reach
//! (with filters), and withdrawing one. Agents never see a title or a recipient.

use diesel::prelude::*;

use super::{DocumentError, DocumentId, DocumentState, DocumentStatus};
use crate::agents::Agent;
use crate::agents::org_chart::AgentScope;
use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::{departments, documents};
use crate::db::{Conn, DbError};
use crate::state::AppState;
use crate::storage::BlobKey;

/// Rows shown per page of the deliveries list.
pub const PAGE_SIZE: i64 = 50;
const MAX_REASON_CHARS: usize = 500;

/// Which deliveries an agent asks to see.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub department_id: Option<String>,
    pub category: Option<String>,
    pub state: Option<DocumentState>,
    /// Delivered on or after this day.
    pub from: Option<chrono::NaiveDate>,
    /// Delivered on or before this day.
    pub to: Option<chrono::NaiveDate>,
    pub page: PageNumber,
}

/// A zero-based page number of the deliveries list, within what the list can reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageNumber(i64);

impl PageNumber {
    /// Far beyond any commune's deliveries, and small enough that the offset it makes
    /// stays a plain number on both engines.
    const MAX: i64 = 1_000_000;

    /// Empty means the first page; anything but digits up to the maximum is refused
    /// (never read as the first page).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Some(Self(0));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<i64>()
            .ok()
            .filter(|page| *page <= Self::MAX)
            .map(Self)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The page before, unless this is the first.
    pub fn previous(self) -> Option<Self> {
        (self.0 > 0).then(|| Self(self.0 - 1))
    }

    /// The page after, unless this is the last the list can reach.
    pub fn next(self) -> Option<Self> {
        (self.0 < Self::MAX).then(|| Self(self.0 + 1))
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub documents: Vec<DocumentStatus>,
    pub has_more: bool,
}

type Boxed<'a> = documents::BoxedQuery<'a, crate::db::SqlDialect>;

/// The documents an agent may see: the tenant's for an admin, otherwise those of their
/// departments and those they delivered themselves.
fn visible_to<'a>(scope: &'a AgentScope) -> Boxed<'a> {
    let query = documents::table
        .filter(documents::tenant_id.eq(&scope.tenant_id))
        .into_boxed();
    if scope.whole_tenant {
        query
    } else {
        query.filter(
            documents::agent_id
                .eq(&scope.agent_id)
                .or(documents::department_id.eq_any(&scope.department_ids)),
        )
    }
}

fn filtered<'a>(scope: &'a AgentScope, filter: &'a DeliveryFilter) -> Boxed<'a> {
    let mut query = visible_to(scope);
    if let Some(department_id) = &filter.department_id {
        query = query.filter(documents::department_id.eq(department_id));
    }
    if let Some(category) = &filter.category {
        query = query.filter(documents::category.eq(category));
    }
    if let Some(from) = filter.from {
        query = query.filter(documents::created_at.ge(from.and_time(chrono::NaiveTime::MIN)));
    }
    if let Some(to) = filter.to.and_then(|day| day.succ_opt()) {
        query = query.filter(documents::created_at.lt(to.and_time(chrono::NaiveTime::MIN)));
    }
    match filter.state {
        None => query,
        Some(DocumentState::Withdrawn) => query.filter(documents::withdrawn_at.is_not_null()),
        Some(DocumentState::Opened) => query
            .filter(documents::withdrawn_at.is_null())
            .filter(documents::first_opened_at.is_not_null()),
        Some(DocumentState::Notified) => query
            .filter(documents::withdrawn_at.is_null())
            .filter(documents::first_opened_at.is_null())
            .filter(documents::notified_at.is_not_null()),
        Some(DocumentState::Stored) => query
            .filter(documents::withdrawn_at.is_null())
            .filter(documents::first_opened_at.is_null())
            .filter(documents::notified_at.is_null()),
    }
}

type StatusRow = (
    String,
    String,
    Option<String>,
    i64,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
    Option<String>,
    String,
    Option<chrono::NaiveDateTime>,
);

/// One page of the deliveries an agent may see, matching `filter`.
pub fn list_deliveries(
    conn: &mut Conn,
    scope: &AgentScope,
    filter: &DeliveryFilter,
) -> Result<DeliveryPage, DbError> {
    let ids: Vec<String> = filtered(scope, filter)
        .select(documents::id)
        .order((documents::created_at.desc(), documents::id.desc()))
        .offset(filter.page.get() * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
        .load(conn)?;
    let has_more = ids.len() > PAGE_SIZE as usize;
    let ids = &ids[..ids.len().min(PAGE_SIZE as usize)];
    let mut rows = statuses(conn, ids)?;
    rows.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(DeliveryPage {
        documents: rows,
        has_more,
    })
}

/// The status of one document, if the agent may see it.
pub fn delivery_status(
    conn: &mut Conn,
    scope: &AgentScope,
    id: &DocumentId,
) -> Result<Option<DocumentStatus>, DbError> {
    let visible: Option<String> = visible_to(scope)
        .filter(documents::id.eq(&id.0))
        .select(documents::id)
        .first(conn)
        .optional()?;
    match visible {
        None => Ok(None),
        Some(id) => Ok(statuses(conn, &[id])?.pop()),
    }
}

fn statuses(conn: &mut Conn, ids: &[String]) -> Result<Vec<DocumentStatus>, DbError> {
    let rows: Vec<StatusRow> = documents::table
        .left_join(departments::table.on(documents::department_id.eq(departments::id.nullable())))
        .filter(documents::id.eq_any(ids))
        .select((
            documents::id,
            documents::category,
            departments::slug.nullable(),
            documents::plaintext_size,
            documents::created_at,
            documents::notified_at,
            documents::first_opened_at,
            documents::withdrawn_at,
            documents::withdrawal_reason,
            documents::encrypted_by,
            documents::unrecoverable_at,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(status_of).collect())
}

fn status_of(
    (
        id,
        category,
        department,
        size,
        created_at,
        notified_at,
        first_opened_at,
        withdrawn_at,
        withdrawal_reason,
        encrypted_by,
        unrecoverable_at,
    ): StatusRow,
) -> DocumentStatus {
    let state = if withdrawn_at.is_some() {
        DocumentState::Withdrawn
    } else if first_opened_at.is_some() {
        DocumentState::Opened
    } else if notified_at.is_some() {
        DocumentState::Notified
    } else {
        DocumentState::Stored
    };
    DocumentStatus {
        id,
        state,
        category,
        department,
        size,
        created_at,
        notified_at,
        first_opened_at,
        withdrawn_at,
        withdrawal_reason,
        end_to_end: encrypted_by == super::ENCRYPTED_BY_SENDER,
        unrecoverable: unrecoverable_at.is_some(),
    }
}

/// The categories used in the documents an agent may see, for the filter form.
pub fn visible_categories(conn: &mut Conn, scope: &AgentScope) -> Result<Vec<String>, DbError> {
    Ok(visible_to(scope)
        .select(documents::category)
        .distinct()
        .order(documents::category.asc())
        .load(conn)?)
}

/// A reason for withdrawing a document, shown to the citizen: 1 to 500 characters.
#[derive(Debug, Clone)]
pub struct WithdrawalReason(String);

impl WithdrawalReason {
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let text = text.trim();
        if (1..=MAX_REASON_CHARS).contains(&text.chars().count()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(DocumentError::WithdrawalReason)
        }
    }
}

/// Withdraws a document (see [`withdraw_document`]) and removes its payload.
pub async fn withdraw(
    state: &AppState,
    agent: &Agent,
    id: DocumentId,
    reason: WithdrawalReason,
) -> Result<(), DocumentError> {
    let agent_for_write = agent.clone();
    let payload = state
        .db
        .write(move |conn| withdraw_document(conn, &agent_for_write, &id, &reason))
        .await?;
    if let Err(error) = state.db.forget_deleted_pages().await {
        tracing::warn!(%error, "withdrawn header still in the database's write-ahead log");
    }
    // The document can no longer be decrypted; deleting the payload only frees space,
    // and the orphan sweep retries it if this fails.
    if let Err(error) = state.storage.delete(&payload).await {
        tracing::warn!(%error, "withdrawn payload not deleted yet; the sweep will remove it");
    }
    Ok(())
}

/// Withdraws a document the agent may see. The citizen keeps a line saying it was
/// withdrawn, when and why; its title and file name are erased and its age header
/// deleted, so no copy of the payload can be decrypted any more. Returns the payload's
/// key so the caller removes it once the transaction is committed.
pub fn withdraw_document(
    conn: &mut Conn,
    agent: &Agent,
    id: &DocumentId,
    reason: &WithdrawalReason,
) -> Result<BlobKey, DocumentError> {
    if !agent.role.can_deliver() {
        return Err(DocumentError::Forbidden);
    }
    let scope = AgentScope::load(conn, agent)?;
    let found: Option<(String, String, Option<chrono::NaiveDateTime>)> = visible_to(&scope)
        .filter(documents::id.eq(&id.0))
        .select((
            documents::blob_key,
            documents::citizen_id,
            documents::withdrawn_at,
        ))
        .first(conn)
        .optional()?;
    let (blob_key, citizen_id, withdrawn_at) = found.ok_or(DocumentError::NotFound)?;
    if withdrawn_at.is_some() {
        return Err(DocumentError::AlreadyWithdrawn);
    }
    // The payload key becomes a tombstone, so the orphan sweep also removes the
    // payload if deleting it right after this transaction fails.
    let changed = diesel::update(
        documents::table
            .filter(documents::id.eq(&id.0))
            .filter(documents::withdrawn_at.is_null()),
    )
    .set((
        documents::withdrawn_at.eq(crate::now()),
        documents::withdrawn_by.eq(&agent.id),
        documents::withdrawal_reason.eq(&reason.0),
        documents::sealed_metadata.eq(Vec::<u8>::new()),
        documents::age_header.eq(Vec::<u8>::new()),
        documents::blob_key.eq(format!("withdrawn/{}", id.0)),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Err(DocumentError::AlreadyWithdrawn);
    }
    crate::dashboard::rollups::count_withdrawal(conn, &id.0)?;
    crate::notify::forget_withdrawn_document(conn, &citizen_id, &id.0)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::Agent(agent.id.clone()), "document.withdrawn")
            .tenant(&agent.tenant_id)
            .subject("document", &id.0)
            .citizen(&citizen_id)
            .details(serde_json::json!({ "reason": reason.0 })),
    )?;
    Ok(BlobKey::from_stored(blob_key))
}

#[cfg(test)]
mod tests {
    use super::PageNumber;

    #[test]
    fn a_page_number_out_of_range_is_refused_not_read_as_the_first() {
        assert_eq!(PageNumber::parse(""), Some(PageNumber(0)));
        assert_eq!(PageNumber::parse("3"), Some(PageNumber(3)));
        for refused in ["-1", "+1", "1.5", "abc", "99999999999999999999", "1000001"] {
            assert_eq!(PageNumber::parse(refused), None, "{refused}");
        }
    }
}
