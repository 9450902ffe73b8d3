//! The figures of the dashboard: documents delivered and opened and notices by
//! channel, added up from the counters (`rollups`); vouchers issued and collected,
//! counted from the campaign's codes. Only counts and durations come out of here;
//! never a row about a person.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Integer, Nullable, Text, Timestamp};

use super::delays;
use crate::db::schema::{voucher_campaigns, voucher_sites};
use crate::db::{AnyConnection, Conn, DbError, sql_on_either_engine};

/// What the figures are narrowed to. Every field but the tenant is optional.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tenant_id: String,
    pub department_id: Option<String>,
    pub category: Option<String>,
    pub campaign_id: Option<String>,
    /// First day included.
    pub from: Option<NaiveDate>,
    /// Last day included.
    pub to: Option<NaiveDate>,
}

/// The bounds of an open range: four-digit years, because SQLite compares timestamps
/// as text.
const EARLIEST: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};
const LATEST: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(day) => day,
    None => NaiveDate::MAX,
};

impl Scope {
    fn start(&self) -> NaiveDateTime {
        self.from
            .unwrap_or(EARLIEST)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
    }

    /// The first instant after the last day.
    fn end(&self) -> NaiveDateTime {
        self.to
            .and_then(|day| day.succ_opt())
            .unwrap_or(LATEST)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
    }

    /// The first day, as the counters write days.
    fn first_day(&self) -> String {
        self.from.unwrap_or(EARLIEST).format("%Y-%m-%d").to_string()
    }

    /// The last day included, as the counters write days.
    fn last_day(&self) -> String {
        self.to.unwrap_or(LATEST).format("%Y-%m-%d").to_string()
    }
}

/// Documents within the scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentFigures {
    pub delivered: i64,
    pub opened: i64,
    pub withdrawn: i64,
    /// Median time from delivery to first opening, in seconds, estimated from the
    /// bands of `delays` (none opened: `None`).
    pub median_open_seconds: Option<f64>,
    /// Documents delivered per day (`YYYY-MM-DD`, count), days without any left out.
    pub per_day: Vec<(String, i64)>,
}

/// Notices of one channel within the scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFigures {
    pub channel: String,
    pub sent: i64,
    pub failed: i64,
    pub pending: i64,
    /// Reminders sent (part of `sent`).
    pub reminders: i64,
}

/// Vouchers within the scope (campaign and dates of collection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoucherFigures {
    /// Live codes (not revoked).
    pub issued: i64,
    pub redeemed: i64,
    pub revoked: i64,
    pub per_day: Vec<(String, i64)>,
    /// Collected per site (site name, count), by name.
    pub per_site: Vec<(String, i64)>,
}

/// The filters every query of the counters shares, bound the same way on both
/// engines: `$1` tenant, `$2` department or NULL, `$3` category or NULL, `$4`–`$5` the
/// first and last day.
const DOCUMENT_SCOPE: &str = "tenant_id = $1 \
     AND ($2 IS NULL OR department_id = $2) \
     AND ($3 IS NULL OR category = $3) \
     AND day >= $4 AND day <= $5";

/// The same filters on `dashboard_notices`, where every notice also counts under `*`.
const NOTICE_SCOPE: &str = "tenant_id = $1 \
     AND department_id = COALESCE($2, '*') \
     AND category = COALESCE($3, '*') \
     AND day >= $4 AND day <= $5";

/// The date of a timestamp column, in each engine's words (a cast is cheaper than
/// formatting the text on PostgreSQL).
fn date_of(conn: &Conn, column: &str) -> String {
    match conn {
        AnyConnection::Postgresql(_) => format!("CAST({column} AS DATE)"),
        AnyConnection::Sqlite(_) => format!("date({column})"),
    }
}

#[derive(QueryableByName)]
struct DayCounts {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = BigInt)]
    delivered: i64,
    #[diesel(sql_type = BigInt)]
    opened: i64,
    #[diesel(sql_type = BigInt)]
    withdrawn: i64,
}

#[derive(QueryableByName)]
struct BandCount {
    #[diesel(sql_type = Integer)]
    band: i32,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs `sql` on a counter table with the scope's five parameters (`DOCUMENT_SCOPE`,
/// `NOTICE_SCOPE`) on either engine.
macro_rules! with_counter_scope {
    ($conn:expr, $scope:expr, $sql:expr, $row:ty, $load:ident) => {
        sql_on_either_engine!(
            $conn,
            $sql,
            $row,
            $load,
            (Text, &$scope.tenant_id),
            (Nullable<Text>, $scope.department_id.as_deref()),
            (Nullable<Text>, $scope.category.as_deref()),
            (Text, $scope.first_day()),
            (Text, $scope.last_day()),
        )
    };
}

/// Documents delivered in the scope, how many were opened and how fast, from the
/// counters per day and per band of delay.
pub fn document_figures(conn: &mut Conn, scope: &Scope) -> Result<DocumentFigures, DbError> {
    // PostgreSQL sums BIGINT into NUMERIC: the casts bring them back.
    let days = with_counter_scope!(
        conn,
        scope,
        format!(
            "SELECT day, CAST(SUM(delivered) AS BIGINT) AS delivered, \
             CAST(SUM(opened) AS BIGINT) AS opened, CAST(SUM(withdrawn) AS BIGINT) AS withdrawn \
             FROM dashboard_documents WHERE {DOCUMENT_SCOPE} GROUP BY day ORDER BY day"
        ),
        DayCounts,
        load
    )?;
    let bands = with_counter_scope!(
        conn,
        scope,
        format!(
            "SELECT band, CAST(SUM(opened) AS BIGINT) AS n FROM dashboard_open_delays \
             WHERE {DOCUMENT_SCOPE} GROUP BY band"
        ),
        BandCount,
        load
    )?;
    let bands: Vec<(i32, i64)> = bands.into_iter().map(|row| (row.band, row.n)).collect();
    Ok(DocumentFigures {
        delivered: days.iter().map(|day| day.delivered).sum(),
        opened: days.iter().map(|day| day.opened).sum(),
        withdrawn: days.iter().map(|day| day.withdrawn).sum(),
        median_open_seconds: delays::median_seconds(&bands),
        per_day: days
            .into_iter()
            .filter(|day| day.delivered > 0)
            .map(|day| (day.day, day.delivered))
            .collect(),
    })
}

#[derive(QueryableByName)]
struct ChannelRow {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    sent: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
}

/// Notices by channel, queued within the dates. With a department or category, only
/// notices about documents of that department or category count (a notice about
/// several counts once).
pub fn notice_figures(conn: &mut Conn, scope: &Scope) -> Result<Vec<ChannelFigures>, DbError> {
    let rows = with_counter_scope!(
        conn,
        scope,
        format!(
            "SELECT channel, kind, CAST(SUM(pending) AS BIGINT) AS pending, \
             CAST(SUM(sent) AS BIGINT) AS sent, CAST(SUM(failed) AS BIGINT) AS failed \
             FROM dashboard_notices WHERE {NOTICE_SCOPE} \
             GROUP BY channel, kind ORDER BY channel, kind"
        ),
        ChannelRow,
        load
    )?;
    let mut channels: Vec<ChannelFigures> = Vec::new();
    for row in rows {
        if channels
            .last()
            .is_none_or(|last| last.channel != row.channel)
        {
            channels.push(ChannelFigures {
                channel: row.channel.clone(),
                ..ChannelFigures::default()
            });
        }
        let Some(figures) = channels.last_mut() else {
            continue;
        };
        figures.sent += row.sent;
        figures.failed += row.failed;
        figures.pending += row.pending;
        if row.kind == "reminder" {
            figures.reminders += row.sent;
        }
    }
    Ok(channels)
}

/// Runs `sql` with `$1` tenant, `$2` campaign or NULL, `$3`–`$4` the range.
macro_rules! with_voucher_scope {
    ($conn:expr, $scope:expr, $sql:expr, $row:ty, $load:ident) => {
        sql_on_either_engine!(
            $conn,
            $sql,
            $row,
            $load,
            (Text, &$scope.tenant_id),
            (Nullable<Text>, $scope.campaign_id.as_deref()),
            (Timestamp, $scope.start()),
            (Timestamp, $scope.end()),
        )
    };
}

/// The vouchers of the tenant's campaigns (or of one campaign).
const VOUCHER_SCOPE: &str = "FROM vouchers v JOIN voucher_campaigns c ON c.id = v.campaign_id \
     WHERE c.tenant_id = $1 AND ($2 IS NULL OR v.campaign_id = $2)";

#[derive(QueryableByName)]
struct IssuedRow {
    #[diesel(sql_type = BigInt)]
    issued: i64,
    #[diesel(sql_type = BigInt)]
    revoked: i64,
}

#[derive(QueryableByName)]
struct CollectionRow {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Text)]
    site_id: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Vouchers of the campaign(s): issued and revoked over the whole campaign,
/// collections within the date range. Two passes over the codes: one counts them, one
/// groups the collections by day and site, from which the total, the days and the
/// sites are added up here.
pub fn voucher_figures(conn: &mut Conn, scope: &Scope) -> Result<VoucherFigures, DbError> {
    // Whatever the dates: only the tenant and the campaign are bound.
    let codes = sql_on_either_engine!(
        conn,
        format!(
            "SELECT COUNT(*) - COUNT(v.revoked_at) AS issued, COUNT(v.revoked_at) AS revoked \
             {VOUCHER_SCOPE}"
        ),
        IssuedRow,
        get_result,
        (Text, &scope.tenant_id),
        (Nullable<Text>, scope.campaign_id.as_deref()),
    )?;
    let day = date_of(conn, "v.redeemed_at");
    let collections = with_voucher_scope!(
        conn,
        scope,
        format!(
            "SELECT {day} AS day, COALESCE(v.redeemed_site_id, '') AS site_id, COUNT(*) AS n \
             {VOUCHER_SCOPE} AND v.redeemed_at >= $3 AND v.redeemed_at < $4 \
             GROUP BY {day}, v.redeemed_site_id"
        ),
        CollectionRow,
        load
    )?;
    let site_names: BTreeMap<String, String> = voucher_sites::table
        .inner_join(voucher_campaigns::table)
        .filter(voucher_campaigns::tenant_id.eq(&scope.tenant_id))
        .select((voucher_sites::id, voucher_sites::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    // Sites of the same name (one per campaign, say) count together, as people know them.
    let mut per_day: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_site: BTreeMap<String, i64> = BTreeMap::new();
    for row in &collections {
        *per_day
            .entry(row.day.format("%Y-%m-%d").to_string())
            .or_default() += row.n;
        let site = site_names.get(&row.site_id).cloned().unwrap_or_default();
        *per_site.entry(site).or_default() += row.n;
    }
    Ok(VoucherFigures {
        issued: codes.issued,
        redeemed: collections.iter().map(|row| row.n).sum(),
        revoked: codes.revoked,
        per_day: per_day.into_iter().collect(),
        per_site: per_site.into_iter().collect(),
    })
}
