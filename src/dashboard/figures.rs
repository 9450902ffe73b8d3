//! The figures of the dashboard, computed by the database from the tenant's data:
//! documents delivered and opened, notices by channel, vouchers issued and collected.
//! Only counts and durations come out of here; never a row about a person.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamp};

use crate::db::schema::{voucher_campaigns, vouchers};
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
}

/// Documents within the scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentFigures {
    pub delivered: i64,
    pub opened: i64,
    pub withdrawn: i64,
    /// Median time from delivery to first opening, in seconds (none opened: `None`).
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

/// The filters every document query shares, bound the same way on both engines:
/// `$1` tenant, `$2` department or NULL, `$3` category or NULL, `$4`–`$5` the range.
const DOCUMENT_SCOPE: &str = "d.tenant_id = $1 \
     AND ($2 IS NULL OR d.department_id = $2) \
     AND ($3 IS NULL OR d.category = $3) \
     AND d.created_at >= $4 AND d.created_at < $5";

/// The day of a timestamp column as `YYYY-MM-DD`, in each engine's words.
fn day_of(conn: &Conn, column: &str) -> String {
    match conn {
        AnyConnection::Postgresql(_) => format!("to_char({column}, 'YYYY-MM-DD')"),
        AnyConnection::Sqlite(_) => format!("strftime('%Y-%m-%d', {column})"),
    }
}

/// Seconds between two timestamp columns, in each engine's words.
fn seconds_between(conn: &Conn, from: &str, to: &str) -> String {
    match conn {
        AnyConnection::Postgresql(_) => format!("EXTRACT(EPOCH FROM ({to} - {from}))::float8"),
        AnyConnection::Sqlite(_) => format!("(julianday({to}) - julianday({from})) * 86400.0"),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct DocumentCounts {
    #[diesel(sql_type = BigInt)]
    delivered: i64,
    #[diesel(sql_type = BigInt)]
    opened: i64,
    #[diesel(sql_type = BigInt)]
    withdrawn: i64,
}

#[derive(QueryableByName)]
struct Bucket {
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Seconds {
    #[diesel(sql_type = Nullable<Double>)]
    seconds: Option<f64>,
}

/// Runs `sql` with the document scope's five parameters on either engine.
macro_rules! with_document_scope {
    ($conn:expr, $scope:expr, $sql:expr, $row:ty, $load:ident) => {
        sql_on_either_engine!(
            $conn,
            $sql,
            $row,
            $load,
            (Text, &$scope.tenant_id),
            (Nullable<Text>, $scope.department_id.as_deref()),
            (Nullable<Text>, $scope.category.as_deref()),
            (Timestamp, $scope.start()),
            (Timestamp, $scope.end()),
        )
    };
}

/// Documents delivered in the scope, how many were opened and how fast.
pub fn document_figures(conn: &mut Conn, scope: &Scope) -> Result<DocumentFigures, DbError> {
    // One pass over the scope's documents for the three counts.
    let counts = with_document_scope!(
        conn,
        scope,
        format!(
            "SELECT COUNT(*) AS delivered, COUNT(d.first_opened_at) AS opened, \
             COUNT(d.withdrawn_at) AS withdrawn FROM documents d WHERE {DOCUMENT_SCOPE}"
        ),
        DocumentCounts,
        get_result
    )?;
    let (delivered, opened, withdrawn) = (counts.delivered, counts.opened, counts.withdrawn);
    let median_open_seconds = median_open_seconds(conn, scope, opened)?;
    let day = day_of(conn, "d.created_at");
    let per_day = with_document_scope!(
        conn,
        scope,
        format!(
            "SELECT {day} AS label, COUNT(*) AS n FROM documents d WHERE {DOCUMENT_SCOPE} \
             GROUP BY {day} ORDER BY label"
        ),
        Bucket,
        load
    )?
    .into_iter()
    .map(|bucket| (bucket.label, bucket.n))
    .collect();
    Ok(DocumentFigures {
        delivered,
        opened,
        withdrawn,
        median_open_seconds,
        per_day,
    })
}

/// The median delay before first opening: the middle value (or the mean of the two
/// middle ones) of the opened documents' delays, found by the database's sort.
fn median_open_seconds(
    conn: &mut Conn,
    scope: &Scope,
    opened: i64,
) -> Result<Option<f64>, DbError> {
    if opened == 0 {
        return Ok(None);
    }
    let delay = seconds_between(conn, "d.created_at", "d.first_opened_at");
    let (limit, offset) = if opened % 2 == 0 {
        (2, opened / 2 - 1)
    } else {
        (1, opened / 2)
    };
    let middle = with_document_scope!(
        conn,
        scope,
        format!(
            "SELECT {delay} AS seconds FROM documents d WHERE {DOCUMENT_SCOPE} \
             AND d.first_opened_at IS NOT NULL ORDER BY seconds LIMIT {limit} OFFSET {offset}"
        ),
        Seconds,
        load
    )?;
    let values: Vec<f64> = middle.into_iter().filter_map(|row| row.seconds).collect();
    Ok((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64))
}

#[derive(QueryableByName)]
struct ChannelRow {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Notices by channel. With a department or category, only notices about documents of
/// that department or category count (a notice about several counts once).
pub fn notice_figures(conn: &mut Conn, scope: &Scope) -> Result<Vec<ChannelFigures>, DbError> {
    let rows = with_document_scope!(
        conn,
        scope,
        format!(
            "SELECT n.channel AS channel, n.state AS state, n.kind AS kind, COUNT(*) AS n \
             FROM notices n WHERE n.tenant_id = $1 \
             AND n.created_at >= $4 AND n.created_at < $5 \
             AND (($2 IS NULL AND $3 IS NULL) OR EXISTS (\
                 SELECT 1 FROM notice_documents nd JOIN documents d ON d.id = nd.document_id \
                 WHERE nd.notice_id = n.id \
                 AND ($2 IS NULL OR d.department_id = $2) AND ($3 IS NULL OR d.category = $3))) \
             GROUP BY n.channel, n.state, n.kind ORDER BY n.channel"
        ),
        ChannelRow,
        load
    )?;
    let mut channels: Vec<ChannelFigures> = Vec::new();
    for row in rows {
        let index = match channels.iter().position(|c| c.channel == row.channel) {
            Some(index) => index,
            None => {
                channels.push(ChannelFigures {
                    channel: row.channel.clone(),
                    ..ChannelFigures::default()
                });
                channels.len() - 1
            }
        };
        let figures = &mut channels[index];
        match row.state.as_str() {
            "sent" => {
                figures.sent += row.n;
                if row.kind == "reminder" {
                    figures.reminders += row.n;
                }
            }
            "dead" => figures.failed += row.n,
            _ => figures.pending += row.n,
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

/// Vouchers of the campaign(s): issued and revoked over the whole campaign,
/// collections within the date range.
pub fn voucher_figures(conn: &mut Conn, scope: &Scope) -> Result<VoucherFigures, DbError> {
    let count = |condition: &str| format!("SELECT COUNT(*) AS n {VOUCHER_SCOPE} AND {condition}");
    let collected = "v.redeemed_at >= $3 AND v.redeemed_at < $4";
    let (issued, revoked) = issued_and_revoked(conn, scope)?;
    let redeemed = with_voucher_scope!(conn, scope, count(collected), Count, get_result)?.n;
    let day = day_of(conn, "v.redeemed_at");
    let per_day = with_voucher_scope!(
        conn,
        scope,
        format!(
            "SELECT {day} AS label, COUNT(*) AS n {VOUCHER_SCOPE} AND {collected} \
             GROUP BY {day} ORDER BY label"
        ),
        Bucket,
        load
    )?
    .into_iter()
    .map(|bucket| (bucket.label, bucket.n))
    .collect();
    let per_site = with_voucher_scope!(
        conn,
        scope,
        format!(
            "SELECT s.name AS label, COUNT(*) AS n {VOUCHER_SCOPE} AND {collected} \
             AND s.id = v.redeemed_site_id GROUP BY s.name ORDER BY s.name"
        )
        .replacen("FROM vouchers v", "FROM voucher_sites s, vouchers v", 1),
        Bucket,
        load
    )?
    .into_iter()
    .map(|bucket| (bucket.label, bucket.n))
    .collect();
    Ok(VoucherFigures {
        issued,
        redeemed,
        revoked,
        per_day,
        per_site,
    })
}

/// Live and revoked codes of the campaign(s), whatever the dates.
fn issued_and_revoked(conn: &mut Conn, scope: &Scope) -> Result<(i64, i64), DbError> {
    let of_scope = || {
        let mut query = vouchers::table
            .inner_join(voucher_campaigns::table)
            .filter(voucher_campaigns::tenant_id.eq(scope.tenant_id.clone()))
            .into_boxed::<crate::db::SqlDialect>();
        if let Some(campaign) = &scope.campaign_id {
            query = query.filter(vouchers::campaign_id.eq(campaign.clone()));
        }
        query
    };
    let issued = of_scope()
        .filter(vouchers::revoked_at.is_null())
        .count()
        .get_result(conn)?;
    let revoked = of_scope()
        .filter(vouchers::revoked_at.is_not_null())
        .count()
        .get_result(conn)?;
    Ok((issued, revoked))
}
