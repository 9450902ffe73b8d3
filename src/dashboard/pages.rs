//! The dashboard page (`/agent/dashboard`) and its tables as CSV
//! (`/agent/dashboard/{table}.csv`), for elected officials and admins, with the same
//! filters: department, category, campaign, date range.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::charts::{Bar, bar_chart};
use super::figures::{self, ChannelFigures, DocumentFigures, Scope, VoucherFigures};
use super::{Shown, SmallCounts};
use crate::agents::Role;
use crate::spreadsheet::neutralise_formula;
use crate::state::AppState;
use crate::tenants::{self, Department};
use crate::vouchers::campaigns::{self, Campaign};
use crate::web::agent_session::AgentSession;
use crate::web::page::{Lang, Page, PageError};

/// Who sees the dashboard.
const DASHBOARD_ROLES: &[Role] = &[Role::Admin, Role::Official];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/agent/dashboard", web::get().to(dashboard))
        .route("/agent/dashboard/{table}.csv", web::get().to(table_csv));
}

/// The filters as the form sends them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterQuery {
    pub department: String,
    pub category: String,
    pub campaign: String,
    pub from: String,
    pub to: String,
}

impl FilterQuery {
    /// The query string again, for the CSV links.
    fn query_string(&self) -> String {
        query_pairs(&[
            ("department", &self.department),
            ("category", &self.category),
            ("campaign", &self.campaign),
            ("from", &self.from),
            ("to", &self.to),
        ])
    }
}

fn query_pairs(pairs: &[(&str, &String)]) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            url.append_pair(name, value);
        }
    }
    url.finish()
}

/// Checks the filters against the tenant: unknown departments or campaigns, malformed
/// categories and dates are refused with the locale key of the reason.
fn scope_of(
    tenant_id: &str,
    query: &FilterQuery,
    departments: &[Department],
    campaigns: &[Campaign],
) -> Result<Scope, &'static str> {
    let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let department_id = match optional(&query.department) {
        None => None,
        Some(slug) => Some(
            departments
                .iter()
                .find(|department| department.slug.as_str() == slug)
                .ok_or("dashboard-error-department")?
                .id
                .clone(),
        ),
    };
    let category = optional(&query.category);
    if category.as_deref().is_some_and(|category| {
        category.len() > 40
            || !category
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }) {
        return Err("dashboard-error-category");
    }
    let campaign_id = match optional(&query.campaign) {
        None => None,
        Some(id) => Some(
            campaigns
                .iter()
                .find(|campaign| campaign.id == id)
                .ok_or("dashboard-error-campaign")?
                .id
                .clone(),
        ),
    };
    let date = |text: &str| match optional(text) {
        None => Ok(None),
        Some(text) => NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| "dashboard-error-date"),
    };
    let (from, to) = (date(&query.from)?, date(&query.to)?);
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        return Err("dashboard-error-range");
    }
    Ok(Scope {
        tenant_id: tenant_id.to_owned(),
        department_id,
        category,
        campaign_id,
        from,
        to,
    })
}

/// Everything the page and the CSV files show, after the small-count rule.
struct Dashboard {
    documents: DocumentFigures,
    notices: Vec<ChannelFigures>,
    vouchers: VoucherFigures,
}

/// One line of a table.
#[derive(Serialize)]
struct Line {
    label: String,
    cells: Vec<Shown>,
}

/// A table as the template and the CSV export see it.
#[derive(Serialize)]
struct Table {
    /// Its name in `/agent/dashboard/{name}.csv`.
    name: &'static str,
    caption: String,
    headers: Vec<String>,
    lines: Vec<Line>,
    /// The chart drawn from its first column, if it has one.
    chart: Option<String>,
    /// How to read it, under the table.
    note: Option<String>,
}

impl Dashboard {
    fn tables(&self, lang: Lang, rule: SmallCounts) -> Vec<Table> {
        vec![
            self.summary(lang, rule),
            self.documents_per_day(lang, rule),
            self.notices_per_channel(lang, rule),
            self.vouchers_per_day(lang, rule),
            self.vouchers_per_site(lang, rule),
        ]
    }

    fn summary(&self, lang: Lang, rule: SmallCounts) -> Table {
        let documents = &self.documents;
        let vouchers = &self.vouchers;
        // From the rounded figures: a share of the exact ones would give them back.
        let (delivered, opened) = (
            rule.round(documents.delivered),
            rule.round(documents.opened),
        );
        let share = rule
            .allows(&[documents.delivered, documents.opened])
            .then(|| {
                if delivered == 0 {
                    "—".to_owned()
                } else {
                    format!("{} %", (opened * 100 + delivered / 2) / delivered)
                }
            });
        let median = rule
            .allows(&[documents.opened])
            .then(|| documents.median_open_seconds.map(|s| duration(lang, s)))
            .flatten();
        let remaining = vouchers.issued.saturating_sub(vouchers.redeemed);
        let text = |text: Option<String>| Shown {
            value: None,
            text: text.unwrap_or_else(|| "—".to_owned()),
        };
        let line = |key: &str, cell: Shown| Line {
            label: lang.text(key),
            cells: vec![cell],
        };
        Table {
            name: "summary",
            caption: lang.text("dashboard-summary"),
            headers: vec![lang.text("dashboard-figure"), lang.text("dashboard-value")],
            lines: vec![
                line("dashboard-delivered", rule.show(documents.delivered)),
                line("dashboard-opened", rule.show(documents.opened)),
                line("dashboard-opened-share", text(share)),
                line("dashboard-median-open", text(median)),
                line("dashboard-withdrawn", rule.show(documents.withdrawn)),
                line("dashboard-vouchers-issued", rule.show(vouchers.issued)),
                line("dashboard-vouchers-redeemed", rule.show(vouchers.redeemed)),
                line(
                    "dashboard-vouchers-remaining",
                    if rule.allows(&[vouchers.issued, vouchers.redeemed]) {
                        rule.show(remaining)
                    } else {
                        text(None)
                    },
                ),
                line("dashboard-vouchers-revoked", rule.show(vouchers.revoked)),
            ],
            chart: None,
            note: Some(lang.text("dashboard-median-note")),
        }
    }

    fn documents_per_day(&self, lang: Lang, rule: SmallCounts) -> Table {
        let (period, series) = Period::of(&self.documents.per_day);
        let name = period.pick("documents-per-day", "documents-per-month");
        series_table(
            name,
            lang.text(&format!("dashboard-{name}")),
            vec![lang.text(period.header()), lang.text("dashboard-delivered")],
            &series,
            rule,
        )
    }

    fn vouchers_per_day(&self, lang: Lang, rule: SmallCounts) -> Table {
        let (period, series) = Period::of(&self.vouchers.per_day);
        let name = period.pick("vouchers-per-day", "vouchers-per-month");
        series_table(
            name,
            lang.text(&format!("dashboard-{name}")),
            vec![
                lang.text(period.header()),
                lang.text("dashboard-vouchers-redeemed"),
            ],
            &series,
            rule,
        )
    }

    fn vouchers_per_site(&self, lang: Lang, rule: SmallCounts) -> Table {
        series_table(
            "vouchers-per-site",
            lang.text("dashboard-vouchers-per-site"),
            vec![
                lang.text("dashboard-site"),
                lang.text("dashboard-vouchers-redeemed"),
            ],
            &self.vouchers.per_site,
            rule,
        )
    }

    fn notices_per_channel(&self, lang: Lang, rule: SmallCounts) -> Table {
        Table {
            name: "notices",
            caption: lang.text("dashboard-notices"),
            headers: vec![
                lang.text("dashboard-channel"),
                lang.text("dashboard-notices-sent"),
                lang.text("dashboard-notices-failed"),
                lang.text("dashboard-notices-pending"),
                lang.text("dashboard-reminders"),
            ],
            lines: self
                .notices
                .iter()
                .map(|channel| Line {
                    label: lang.text(&format!("agent-notice-channel-{}", channel.channel)),
                    cells: vec![
                        rule.show(channel.sent),
                        rule.show(channel.failed),
                        rule.show(channel.pending),
                        rule.show(channel.reminders),
                    ],
                })
                .collect(),
            chart: None,
            note: None,
        }
    }
}

/// How a dated series is shown: by day, or by month when its days span more than
/// `Period::DAILY_UP_TO_DAYS` (two years of days make an unreadable chart and table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Month,
}

impl Period {
    const DAILY_UP_TO_DAYS: i64 = 92;

    /// The period fitting a series of (`YYYY-MM-DD`, count) in day order, and the
    /// series by that period (months written `YYYY-MM`).
    fn of(series: &[(String, i64)]) -> (Self, Vec<(String, i64)>) {
        let day = |label: &str| NaiveDate::parse_from_str(label, "%Y-%m-%d").ok();
        let span = match (series.first(), series.last()) {
            (Some((first, _)), Some((last, _))) => day(last)
                .zip(day(first))
                .map_or(0, |(last, first)| (last - first).num_days()),
            _ => 0,
        };
        if span <= Self::DAILY_UP_TO_DAYS {
            return (Self::Day, series.to_vec());
        }
        let mut months: Vec<(String, i64)> = Vec::new();
        for (label, count) in series {
            let month: String = label.chars().take(7).collect();
            match months.last_mut() {
                Some((last, total)) if *last == month => *total += count,
                _ => months.push((month, *count)),
            }
        }
        (Self::Month, months)
    }

    /// The first text by day, the second by month.
    fn pick(self, by_day: &'static str, by_month: &'static str) -> &'static str {
        match self {
            Self::Day => by_day,
            Self::Month => by_month,
        }
    }

    fn header(self) -> &'static str {
        self.pick("dashboard-day", "dashboard-month")
    }
}

/// A table of (label, count) lines.
fn series_table(
    name: &'static str,
    caption: String,
    headers: Vec<String>,
    series: &[(String, i64)],
    rule: SmallCounts,
) -> Table {
    Table {
        name,
        caption,
        headers,
        lines: series
            .iter()
            .map(|(label, count)| Line {
                label: label.clone(),
                cells: vec![rule.show(*count)],
            })
            .collect(),
        chart: None,
        note: None,
    }
}

/// "3 h 20 min", "2 j 4 h", "45 min".
fn duration(lang: Lang, seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as i64;
    let (days, hours, minutes) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let day = if lang == Lang::Fr { "j" } else { "d" };
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} {day} {hours} h"),
    }
}

/// Draws the chart of a one-column table, with its description read from the table.
fn with_chart(mut table: Table, lang: Lang) -> Result<Table, String> {
    // The summary mixes figures of different kinds: a table only.
    let one_series = table.name != "summary";
    if !one_series || table.lines.is_empty() || table.lines.iter().any(|line| line.cells.len() != 1)
    {
        return Ok(table);
    }
    let bars: Vec<Bar> = table
        .lines
        .iter()
        .map(|line| Bar {
            label: line.label.clone(),
            value: line.cells[0].value,
        })
        .collect();
    let description = format!(
        "{} {}",
        lang.text("dashboard-chart-description"),
        table
            .lines
            .iter()
            .map(|line| format!("{} : {}", line.label, line.cells[0].text))
            .collect::<Vec<_>>()
            .join(" ; ")
    );
    table.chart = Some(bar_chart(table.name, &table.caption, &description, &bars)?);
    Ok(table)
}

/// The filters' choices: the tenant's departments and campaigns.
async fn choices(
    state: &AppState,
    tenant_id: &str,
) -> Result<(Vec<Department>, Vec<Campaign>), PageError> {
    let tenant_id = tenant_id.to_owned();
    Ok(state
        .db
        .read(move |conn| -> Result<_, crate::db::DbError> {
            Ok((
                tenants::list_departments(conn, &tenant_id)?,
                campaigns::list_campaigns(conn, &tenant_id)?,
            ))
        })
        .await?)
}

async fn compute(state: &AppState, scope: Scope) -> Result<Dashboard, crate::db::DbError> {
    state
        .db
        .read(move |conn| {
            Ok(Dashboard {
                documents: figures::document_figures(conn, &scope)?,
                notices: figures::notice_figures(conn, &scope)?,
                vouchers: figures::voucher_figures(conn, &scope)?,
            })
        })
        .await
}

fn rule(state: &AppState) -> SmallCounts {
    SmallCounts {
        threshold: i64::from(state.config.dashboard.small_count_threshold),
        base: i64::from(state.config.dashboard.rounding_base),
    }
}

async fn dashboard(
    agent: AgentSession,
    page: Page,
    query: web::Query<FilterQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DASHBOARD_ROLES)?;
    let lang = page.lang;
    let (departments, campaigns) = choices(&state, &agent.agent.tenant_id).await?;
    let mut context = agent.context(&page);
    context.insert("filter", &*query);
    context.insert("departments", &departments);
    context.insert("campaigns", &campaigns);
    context.insert("threshold", &state.config.dashboard.small_count_threshold);
    let scope = match scope_of(&agent.agent.tenant_id, &query, &departments, &campaigns) {
        Ok(scope) => scope,
        Err(key) => {
            context.insert("error", key);
            return Ok(page.render(
                StatusCode::UNPROCESSABLE_ENTITY,
                "agent_dashboard.html",
                &context,
            ));
        }
    };
    let dashboard = compute(&state, scope).await?;
    let tables = dashboard
        .tables(lang, rule(&state))
        .into_iter()
        .map(|table| with_chart(table, lang))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PageError::internal(lang, error))?;
    context.insert("tables", &tables);
    context.insert("query_string", &query.query_string());
    Ok(page.render(StatusCode::OK, "agent_dashboard.html", &context))
}

async fn table_csv(
    agent: AgentSession,
    page: Page,
    path: web::Path<String>,
    query: web::Query<FilterQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    agent.require(DASHBOARD_ROLES)?;
    let lang = page.lang;
    let (departments, campaigns) = choices(&state, &agent.agent.tenant_id).await?;
    let scope =
        scope_of(&agent.agent.tenant_id, &query, &departments, &campaigns).map_err(|key| {
            PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                lang,
                "dashboard-title",
                key,
            )
        })?;
    let dashboard = compute(&state, scope).await?;
    let table = dashboard
        .tables(lang, rule(&state))
        .into_iter()
        .find(|table| table.name == path.as_str())
        .ok_or_else(|| PageError::not_found(lang))?;
    let bytes = csv_of(&table).map_err(|error| PageError::internal(lang, error))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.csv\"", table.name),
        ))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(bytes))
}

/// A table as CSV for a spreadsheet: UTF-8 with a BOM, `;`, hidden counts as "< 5".
/// Labels come from agents (site, department, campaign names): no cell may start a
/// formula.
fn csv_of(table: &Table) -> Result<Vec<u8>, csv::Error> {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(b';')
            .from_writer(&mut bytes);
        writer.write_record(
            table
                .headers
                .iter()
                .map(|cell| neutralise_formula(cell).into_owned()),
        )?;
        for line in &table.lines {
            let mut record = vec![neutralise_formula(&line.label).into_owned()];
            record.extend(
                line.cells
                    .iter()
                    .map(|cell| neutralise_formula(&cell.text).into_owned()),
            );
            writer.write_record(&record)?;
        }
        writer.flush()?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_series_are_shown_by_month() {
        let days = |labels: &[&str]| -> Vec<(String, i64)> {
            labels
                .iter()
                .map(|label| ((*label).to_owned(), 3))
                .collect()
        };
        let short = days(&["2026-01-01", "2026-04-03"]);
        assert_eq!(Period::of(&short), (Period::Day, short.clone()));
        let long = days(&["2026-01-01", "2026-01-20", "2026-04-05"]);
        assert_eq!(
            Period::of(&long),
            (
                Period::Month,
                vec![("2026-01".to_owned(), 6), ("2026-04".to_owned(), 3)]
            )
        );
        assert_eq!(Period::of(&[]), (Period::Day, Vec::new()));
    }

    #[test]
    fn a_colon_follows_each_languages_typography() {
        assert_eq!(Lang::Fr.text("dashboard-colon"), "\u{a0}:");
        assert_eq!(Lang::En.text("dashboard-colon"), ":");
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        let table = Table {
            name: "vouchers-per-site",
            caption: String::new(),
            headers: vec!["Lieu".into(), "=Retraits".into()],
            lines: [
                "=HYPERLINK(\"http://x\")",
                "+33",
                "-Parc",
                "@SUM(A1)",
                "\tTab",
                "\rCR",
                "Mairie",
            ]
            .iter()
            .map(|label| Line {
                label: (*label).to_owned(),
                cells: vec![Shown {
                    value: Some(10),
                    text: "10".into(),
                }],
            })
            .collect(),
            chart: None,
            note: None,
        };
        let bytes = csv_of(&table).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b';')
            .has_headers(false)
            .from_reader(&bytes[3..]);
        let cells: Vec<String> = reader
            .records()
            .map(|record| record.unwrap()[0].to_owned())
            .collect();
        assert_eq!(
            cells,
            [
                "Lieu",
                "'=HYPERLINK(\"http://x\")",
                "'+33",
                "'-Parc",
                "'@SUM(A1)",
                "'\tTab",
                "'\rCR",
                "Mairie"
            ]
        );
        assert!(String::from_utf8_lossy(&bytes).contains("'=Retraits"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Lang::Fr, 45.0 * 60.0), "45 min");
        assert_eq!(duration(Lang::Fr, 200.0 * 60.0), "3 h 20 min");
        assert_eq!(duration(Lang::Fr, 52.0 * 3600.0), "2 j 4 h");
        assert_eq!(duration(Lang::En, 52.0 * 3600.0), "2 d 4 h");
    }
}
