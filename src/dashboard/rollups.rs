//! The dashboard's counters (`dashboard_documents`, `dashboard_open_delays`,
//! `dashboard_notices`), kept up to date in the transactions that change what they
//! count, so that the page adds up counter rows, not documents, however many documents
//! a tenant holds. Each change is written as a delta added to its row by one upsert.
//!
//! Within a transaction, rows are always touched documents first (one row), then
//! notices, gathered over the whole transaction (`NoticeCounting`) and written once in
//! key order: two transactions never wait for each other's rows in opposite orders.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use super::delays;
use crate::db::schema::documents;
use crate::db::{Conn, DbError, sql_on_either_engine};

/// The day a timestamp falls on, as the counters write it.
pub fn day_of(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Where a document counts: its tenant, delivery day, department and category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DocumentGroup {
    pub tenant_id: String,
    pub day: String,
    /// `""` for a document without a department.
    pub department_id: String,
    pub category: String,
}

impl DocumentGroup {
    pub fn new(
        tenant_id: &str,
        department_id: Option<&str>,
        category: &str,
        created_at: NaiveDateTime,
    ) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            day: day_of(created_at),
            department_id: department_id.unwrap_or_default().to_owned(),
            category: category.to_owned(),
        }
    }

    /// The group of a stored document, with its delivery time.
    pub fn of_document(
        conn: &mut Conn,
        document_id: &str,
    ) -> Result<(Self, NaiveDateTime), DbError> {
        let (tenant_id, department_id, category, created_at): (
            String,
            Option<String>,
            String,
            NaiveDateTime,
        ) = documents::table
            .find(document_id)
            .select((
                documents::tenant_id,
                documents::department_id,
                documents::category,
                documents::created_at,
            ))
            .first(conn)?;
        let group = Self::new(&tenant_id, department_id.as_deref(), &category, created_at);
        Ok((group, created_at))
    }
}

/// What to add to a group's document counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentCounts {
    pub delivered: i64,
    pub opened: i64,
    pub withdrawn: i64,
}

/// Adds to a group's document counters.
pub fn add_documents(
    conn: &mut Conn,
    group: &DocumentGroup,
    counts: DocumentCounts,
) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO dashboard_documents \
         (tenant_id, day, department_id, category, delivered, opened, withdrawn) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id, day, department_id, category) DO UPDATE SET \
         delivered = dashboard_documents.delivered + excluded.delivered, \
         opened = dashboard_documents.opened + excluded.opened, \
         withdrawn = dashboard_documents.withdrawn + excluded.withdrawn";
    sql_on_either_engine!(
        conn,
        SQL,
        execute,
        (Text, &group.tenant_id),
        (Text, &group.day),
        (Text, &group.department_id),
        (Text, &group.category),
        (BigInt, counts.delivered),
        (BigInt, counts.opened),
        (BigInt, counts.withdrawn),
    )?;
    Ok(())
}

/// Adds to how many of a group's documents were first opened within a band of delay.
pub fn add_open_delays(
    conn: &mut Conn,
    group: &DocumentGroup,
    band: i32,
    opened: i64,
) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO dashboard_open_delays \
         (tenant_id, day, department_id, category, band, opened) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, day, department_id, category, band) DO UPDATE SET \
         opened = dashboard_open_delays.opened + excluded.opened";
    sql_on_either_engine!(
        conn,
        SQL,
        execute,
        (Text, &group.tenant_id),
        (Text, &group.day),
        (Text, &group.department_id),
        (Text, &group.category),
        (Integer, band),
        (BigInt, opened),
    )?;
    Ok(())
}

/// A document was delivered (call in the delivery's transaction).
pub fn count_delivery(conn: &mut Conn, group: &DocumentGroup) -> Result<(), DbError> {
    let delivered = DocumentCounts {
        delivered: 1,
        ..DocumentCounts::default()
    };
    add_documents(conn, group, delivered)
}

/// A document was opened for the first time (call in the transaction that records it).
pub fn count_first_opening(
    conn: &mut Conn,
    document_id: &str,
    opened_at: NaiveDateTime,
) -> Result<(), DbError> {
    let (group, created_at) = DocumentGroup::of_document(conn, document_id)?;
    let opened = DocumentCounts {
        opened: 1,
        ..DocumentCounts::default()
    };
    add_documents(conn, &group, opened)?;
    let band = delays::band_of((opened_at - created_at).num_seconds());
    add_open_delays(conn, &group, band, 1)
}

/// A document was withdrawn (call in the withdrawal's transaction).
pub fn count_withdrawal(conn: &mut Conn, document_id: &str) -> Result<(), DbError> {
    let (group, _) = DocumentGroup::of_document(conn, document_id)?;
    let withdrawn = DocumentCounts {
        withdrawn: 1,
        ..DocumentCounts::default()
    };
    add_documents(conn, &group, withdrawn)
}

/// Where a notice counts in `dashboard_notices`, but for the department and category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NoticeCell {
    pub tenant_id: String,
    /// A department, or `*` for all.
    pub department_id: String,
    /// A category, or `*` for all.
    pub category: String,
    pub day: String,
    pub channel: String,
    pub kind: String,
}

/// Any department or category.
pub const ALL: &str = "*";

/// The three counters of a notice: where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeStanding {
    /// Waiting, being sent, or to be tried again.
    Pending = 0,
    Sent = 1,
    Failed = 2,
}

impl NoticeStanding {
    pub fn of_state(state: &str) -> Self {
        match state {
            "sent" => Self::Sent,
            "dead" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A notice as the dashboard counts it: once under `*`, and once under each
/// department and category of the documents it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTally {
    pub tenant_id: String,
    pub day: String,
    pub channel: String,
    pub kind: String,
    pub standing: NoticeStanding,
    /// The (department or `""`, category) of each document it announces.
    pub documents: BTreeSet<(String, String)>,
}

impl NoticeTally {
    /// The (department, category) cells the notice counts in.
    fn cells(&self) -> BTreeSet<NoticeCell> {
        let mut keys: BTreeSet<(&str, &str)> = BTreeSet::from([(ALL, ALL)]);
        for (department, category) in &self.documents {
            keys.insert((ALL, category));
            if !department.is_empty() {
                keys.insert((department, ALL));
                keys.insert((department, category));
            }
        }
        keys.into_iter()
            .map(|(department, category)| NoticeCell {
                tenant_id: self.tenant_id.clone(),
                department_id: department.to_owned(),
                category: category.to_owned(),
                day: self.day.clone(),
                channel: self.channel.clone(),
                kind: self.kind.clone(),
            })
            .collect()
    }

    /// Adds this notice's counts, `sign` times, to `deltas`.
    pub fn add_to(&self, deltas: &mut NoticeDeltas, sign: i64) {
        for cell in self.cells() {
            deltas.entry(cell).or_default()[self.standing as usize] += sign;
        }
    }
}

/// Changes to `dashboard_notices`: pending, sent and failed to add, per cell.
pub type NoticeDeltas = BTreeMap<NoticeCell, [i64; 3]>;

#[derive(QueryableByName)]
struct NoticeRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    department_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    category: Option<String>,
}

/// A stored notice as the dashboard counts it (`None` if there is no such notice).
fn tally_of(conn: &mut Conn, notice_id: &str) -> Result<Option<NoticeTally>, DbError> {
    const SQL: &str = "SELECT n.tenant_id, n.created_at, n.channel, n.kind, n.state, \
         d.department_id, d.category FROM notices n \
         LEFT JOIN notice_documents nd ON nd.notice_id = n.id \
         LEFT JOIN documents d ON d.id = nd.document_id WHERE n.id = $1";
    let rows = sql_on_either_engine!(conn, SQL, NoticeRow, load, (Text, notice_id))?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut tally = NoticeTally {
        tenant_id: first.tenant_id.clone(),
        day: day_of(first.created_at),
        channel: first.channel.clone(),
        kind: first.kind.clone(),
        standing: NoticeStanding::of_state(&first.state),
        documents: BTreeSet::new(),
    };
    for row in rows {
        if let Some(category) = row.category {
            let department = row.department_id.unwrap_or_default();
            tally.documents.insert((department, category));
        }
    }
    Ok(Some(tally))
}

/// Changes to the notice counters gathered over a transaction, written once at its
/// end (`apply`), in key order, whatever order the notices were changed in.
#[derive(Debug, Default)]
pub struct NoticeCounting {
    deltas: NoticeDeltas,
}

impl NoticeCounting {
    /// A notice was just created.
    pub fn created(&mut self, conn: &mut Conn, notice_id: &str) -> Result<(), DbError> {
        if let Some(created) = tally_of(conn, notice_id)? {
            created.add_to(&mut self.deltas, 1);
        }
        Ok(())
    }

    /// Runs `change` on the notices named, then moves their counts from where they
    /// stood to where they stand now. Every change to a notice's state or documents
    /// goes through here.
    pub fn track<T>(
        &mut self,
        conn: &mut Conn,
        notice_ids: &[&str],
        change: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        for id in notice_ids {
            if let Some(before) = tally_of(conn, id)? {
                before.add_to(&mut self.deltas, -1);
            }
        }
        let result = change(conn)?;
        for id in notice_ids {
            if let Some(after) = tally_of(conn, id)? {
                after.add_to(&mut self.deltas, 1);
            }
        }
        Ok(result)
    }

    /// Writes what was gathered: call once, as the transaction's last counting.
    pub fn apply(self, conn: &mut Conn) -> Result<(), DbError> {
        apply_notice_deltas(conn, &self.deltas)
    }
}

/// `NoticeCounting::track` for a transaction that changes notices only this once.
pub fn track_notices<T>(
    conn: &mut Conn,
    notice_ids: &[&str],
    change: impl FnOnce(&mut Conn) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut counting = NoticeCounting::default();
    let result = counting.track(conn, notice_ids, change)?;
    counting.apply(conn)?;
    Ok(result)
}

/// Adds the deltas to their rows, in key order, leaving alone the rows they do not move.
pub fn apply_notice_deltas(conn: &mut Conn, deltas: &NoticeDeltas) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO dashboard_notices \
         (tenant_id, day, department_id, category, channel, kind, pending, sent, failed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, department_id, category, day, channel, kind) DO UPDATE SET \
         pending = dashboard_notices.pending + excluded.pending, \
         sent = dashboard_notices.sent + excluded.sent, \
         failed = dashboard_notices.failed + excluded.failed";
    for (cell, [pending, sent, failed]) in deltas {
        if [*pending, *sent, *failed] == [0, 0, 0] {
            continue;
        }
        sql_on_either_engine!(
            conn,
            SQL,
            execute,
            (Text, &cell.tenant_id),
            (Text, &cell.day),
            (Text, &cell.department_id),
            (Text, &cell.category),
            (Text, &cell.channel),
            (Text, &cell.kind),
            (BigInt, *pending),
            (BigInt, *sent),
            (BigInt, *failed),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(documents: &[(&str, &str)]) -> NoticeTally {
        NoticeTally {
            tenant_id: "t".into(),
            day: "2026-11-25".into(),
            channel: "email".into(),
            kind: "document".into(),
            standing: NoticeStanding::Pending,
            documents: documents
                .iter()
                .map(|(d, c)| ((*d).to_owned(), (*c).to_owned()))
                .collect(),
        }
    }

    fn keys(tally: &NoticeTally) -> Vec<(String, String)> {
        tally
            .cells()
            .into_iter()
            .map(|cell| (cell.department_id, cell.category))
            .collect()
    }

    #[test]
    fn a_notice_counts_once_under_each_filter_it_matches() {
        let pair = |d: &str, c: &str| (d.to_owned(), c.to_owned());
        assert_eq!(keys(&tally(&[])), vec![pair("*", "*")]);
        // Two documents of one department in two categories: once under the
        // department, not twice.
        assert_eq!(
            keys(&tally(&[("d1", "impots"), ("d1", "eau")])),
            vec![
                pair("*", "*"),
                pair("*", "eau"),
                pair("*", "impots"),
                pair("d1", "*"),
                pair("d1", "eau"),
                pair("d1", "impots"),
            ]
        );
        // A document without a department counts under its category only.
        assert_eq!(
            keys(&tally(&[("", "eau")])),
            vec![pair("*", "*"), pair("*", "eau")]
        );
    }

    #[test]
    fn moving_a_notice_cancels_out_where_nothing_changed() {
        let before = tally(&[("d1", "eau")]);
        let mut after = before.clone();
        after.standing = NoticeStanding::Sent;
        let mut deltas = NoticeDeltas::new();
        before.add_to(&mut deltas, -1);
        after.add_to(&mut deltas, 1);
        assert_eq!(deltas.len(), 4);
        assert!(deltas.values().all(|delta| *delta == [-1, 1, 0]));
        let mut unchanged = NoticeDeltas::new();
        before.add_to(&mut unchanged, -1);
        before.add_to(&mut unchanged, 1);
        assert!(unchanged.values().all(|delta| *delta == [0, 0, 0]));
    }
}
