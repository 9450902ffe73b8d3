//! Filling the dashboard's counters from the documents and notices already stored:
//! once, at the first start with the counters (an installation that already holds
//! data), and whenever an operator asks (`eguichet dashboard refill`). The same
//! grouping as the live counting (`rollups`) is applied to every row, read in pages
//! of `PAGE` by id so that memory stays bounded whatever the table sizes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;

use super::delays;
use super::rollups::{
    self, DocumentCounts, DocumentGroup, NoticeDeltas, NoticeStanding, NoticeTally,
};
use crate::db::schema::{
    dashboard_documents, dashboard_notices, dashboard_open_delays, documents, notice_documents,
    notices,
};
use crate::db::{AnyConnection, Conn, DbError, sql_on_either_engine};

/// Rows read at a time (also the bound on the ids in one `IN (…)`).
const PAGE: i64 = 5_000;

/// Fills the counters unless they were filled before; returns whether it did. Run at
/// start, after the migrations, before anything is served, in a transaction. The mark
/// is written first: a second instance starting at the same moment waits on it, then
/// finds the counters filled.
pub fn fill_if_new(conn: &mut Conn) -> Result<bool, DbError> {
    const MARK: &str = "INSERT INTO dashboard_rollups_filled (id, filled_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING";
    let marked = sql_on_either_engine!(conn, MARK, execute, (Timestamp, crate::now()))?;
    if marked == 0 {
        return Ok(false);
    }
    refill(conn)?;
    Ok(true)
}

/// Counts everything again from the stored documents and notices, replacing the
/// counters. Call in a transaction.
pub fn refill(conn: &mut Conn) -> Result<(), DbError> {
    // Other instances may be serving. On PostgreSQL, their writes to what is counted
    // wait until this transaction ends, so that nothing is counted both live and here;
    // the lock comes first, before any counter row is held. (SQLite's write
    // transaction already keeps every other writer out.)
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("LOCK TABLE documents, notices, notice_documents IN SHARE MODE")
            .execute(pg)?;
    }
    diesel::delete(dashboard_documents::table).execute(conn)?;
    diesel::delete(dashboard_open_delays::table).execute(conn)?;
    diesel::delete(dashboard_notices::table).execute(conn)?;
    let (counts, delays) = count_documents(conn)?;
    for (group, counts) in &counts {
        rollups::add_documents(conn, group, *counts)?;
    }
    for ((group, band), opened) in &delays {
        rollups::add_open_delays(conn, group, *band, *opened)?;
    }
    let notices = count_notices(conn)?;
    rollups::apply_notice_deltas(conn, &notices)?;
    Ok(())
}

type DocumentRow = (
    String,
    String,
    Option<String>,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Every document's counts, grouped, and its delay band if it was opened.
#[allow(clippy::type_complexity, reason = "two maps, named by the function")]
fn count_documents(
    conn: &mut Conn,
) -> Result<
    (
        BTreeMap<DocumentGroup, DocumentCounts>,
        BTreeMap<(DocumentGroup, i32), i64>,
    ),
    DbError,
> {
    let mut counts: BTreeMap<DocumentGroup, DocumentCounts> = BTreeMap::new();
    let mut delays: BTreeMap<(DocumentGroup, i32), i64> = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page: Vec<DocumentRow> = documents::table
            .filter(documents::id.gt(&after))
            .order(documents::id)
            .limit(PAGE)
            .select((
                documents::id,
                documents::tenant_id,
                documents::department_id,
                documents::category,
                documents::created_at,
                documents::first_opened_at,
                documents::withdrawn_at,
            ))
            .load(conn)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.0.clone();
        for (_, tenant, department, category, created, opened, withdrawn) in page {
            let group = DocumentGroup::new(&tenant, department.as_deref(), &category, created);
            let entry = counts.entry(group.clone()).or_default();
            entry.delivered += 1;
            entry.withdrawn += i64::from(withdrawn.is_some());
            if let Some(opened) = opened {
                entry.opened += 1;
                let band = delays::band_of((opened - created).num_seconds());
                *delays.entry((group, band)).or_default() += 1;
            }
        }
    }
    Ok((counts, delays))
}

type NoticeRow = (String, String, NaiveDateTime, String, String, String);

/// Every notice's counts, under each cell it falls in.
fn count_notices(conn: &mut Conn) -> Result<NoticeDeltas, DbError> {
    let mut deltas = NoticeDeltas::new();
    let mut after = String::new();
    loop {
        let page: Vec<NoticeRow> = notices::table
            .filter(notices::id.gt(&after))
            .order(notices::id)
            .limit(PAGE)
            .select((
                notices::id,
                notices::tenant_id,
                notices::created_at,
                notices::channel,
                notices::kind,
                notices::state,
            ))
            .load(conn)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.0.clone();
        let ids: Vec<&str> = page.iter().map(|row| row.0.as_str()).collect();
        let mut announced: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        let links: Vec<(String, Option<String>, String)> = notice_documents::table
            .inner_join(documents::table)
            .filter(notice_documents::notice_id.eq_any(&ids))
            .select((
                notice_documents::notice_id,
                documents::department_id,
                documents::category,
            ))
            .load(conn)?;
        for (notice_id, department, category) in links {
            announced
                .entry(notice_id)
                .or_default()
                .insert((department.unwrap_or_default(), category));
        }
        for (id, tenant_id, created_at, channel, kind, state) in page {
            let tally = NoticeTally {
                tenant_id,
                day: rollups::day_of(created_at),
                channel,
                kind,
                standing: NoticeStanding::of_state(&state),
                documents: announced.remove(&id).unwrap_or_default(),
            };
            tally.add_to(&mut deltas, 1);
        }
    }
    Ok(deltas)
}
