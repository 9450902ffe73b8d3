//! The officials' dashboard against a known data set, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL: documents, openings and their median delay,
//! notices by channel, vouchers per day and per site; the small-count rule on the page
//! and in the CSV files; bad filters; and what an official can reach.

use std::time::Duration;

use crate::common::{TestApp, document_bytes, pivot, spawn_app};
use chrono::TimeDelta;
use diesel::prelude::*;
use eguichet::agents::{self, AgentEmail, Role};
use eguichet::dashboard::refill;
use eguichet::db::schema::{
    dashboard_documents, dashboard_notices, dashboard_open_delays, documents, notices,
};
use eguichet::notify;
use eguichet::vault::DocumentId;
use eguichet::vouchers::VoucherCode;
use eguichet::vouchers::campaigns::{self, CampaignInput, SiteInput};
use eguichet::vouchers::households::Household;
use eguichet::vouchers::issue::{self, Existing};
use eguichet::vouchers::redeem::{self, FailureLimit, Scan, ScanOutcome};
use reqwest::StatusCode;
use serde_json::json;

/// Names that must never appear on the dashboard.
const FAMILY_NAMES: [&str; 8] = [
    "Arnaud", "Bernard", "Collin", "Durand", "Etienne", "Fabre", "Garnier", "Hubert",
];

/// Eight documents (six of `etat-civil`, two of `finances`), five opened after 1, 2,
/// 3, 4 and 10 hours; eight email notices, one failed, five of the sent ones
/// reminders; ten vouchers, six collected at the town hall and two at the school.
async fn known_data_set(app: &TestApp) -> String {
    app.department("etat-civil").await;
    app.department("finances").await;
    let token = app.agent_token("admin@mairie.example", Role::Admin).await;
    let mut ids = Vec::new();
    for (n, family_name) in FAMILY_NAMES.iter().enumerate() {
        let (department, category) = if n < 6 {
            ("etat-civil", "etat-civil")
        } else {
            ("finances", "impots")
        };
        let metadata = json!({
            "recipient": pivot(family_name),
            "title": format!("Acte de {family_name}"),
            "category": category,
            "department": department,
            "contact": { "email": format!("{}@example.org", family_name.to_lowercase()) },
        });
        let response = app
            .deliver(&token)
            .metadata(metadata)
            .file(document_bytes(2_000, n as u64))
            .send()
            .await;
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let opened: Vec<(String, i64)> = ids.iter().take(5).cloned().zip([1, 2, 3, 4, 10]).collect();
    app.state
        .db
        .write(move |conn| -> anyhow::Result<()> {
            for (id, hours) in opened {
                let created: chrono::NaiveDateTime = documents::table
                    .find(&id)
                    .select(documents::created_at)
                    .first(conn)?;
                diesel::update(documents::table.find(&id))
                    .set(documents::first_opened_at.eq(created + TimeDelta::hours(hours)))
                    .execute(conn)?;
            }
            diesel::update(notices::table)
                .set(notices::state.eq("sent"))
                .execute(conn)?;
            let ids: Vec<String> = notices::table
                .select(notices::id)
                .order(notices::id)
                .load(conn)?;
            diesel::update(notices::table.find(&ids[0]))
                .set(notices::state.eq("dead"))
                .execute(conn)?;
            // Five of the seven sent were reminders (as the reminder scan queues them).
            diesel::update(notices::table.filter(notices::id.eq_any(&ids[3..])))
                .set(notices::kind.eq("reminder"))
                .execute(conn)?;
            // Delays of hours are written into the documents rather than waited for;
            // the counters are then filled from the stored data, as at a first start.
            // (`counters_follow_each_change_as_a_refill_counts_it` checks that the
            // live counting and the refill agree.)
            refill::refill(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    vouchers(app).await
}

/// A campaign of ten households; six collect at the town hall, two at the school.
/// Returns the campaign's id.
async fn vouchers(app: &TestApp) -> String {
    let keys = app.state.keys.clone();
    let tenant = app.state.default_tenant.clone();
    app.state
        .db
        .write(move |conn| -> anyhow::Result<String> {
            let email = AgentEmail::parse("admin@mairie.example")?;
            let agent = agents::find_agent(conn, &tenant.id, &email)?.unwrap();
            let input = CampaignInput {
                name: "Masques".into(),
                item: "masques".into(),
                default_allotment: "2".into(),
                starts_on: "2020-05-11".into(),
                ends_on: "2020-05-16".into(),
            };
            let id = campaigns::create_campaign(conn, &agent, &input)?;
            let campaign = campaigns::find_campaign(conn, &tenant.id, &id)?.unwrap();
            for name in ["Mairie", "École"] {
                let site = SiteInput {
                    name: name.into(),
                    address: "Place".into(),
                    opening_hours: String::new(),
                };
                campaigns::add_site(conn, &agent, &campaign, &site)?;
            }
            let sites = campaigns::list_sites(conn, &id)?;
            let households: Vec<Household> = (0..10)
                .map(|n| Household {
                    line: n + 2,
                    reference: format!("F-{n}"),
                    allotment: 2,
                    address: vec!["Foyer".into()],
                })
                .collect();
            let codes = issue::issue_for_households(
                conn,
                &keys.hasher,
                &agent,
                &campaign,
                &households,
                Existing::Refuse,
            )?;
            let limit = FailureLimit {
                max_failures: 20,
                window_minutes: 10,
            };
            for (n, issued) in codes.iter().take(8).enumerate() {
                // Sites are listed by name: École, then Mairie.
                let site = if n < 6 { &sites[1] } else { &sites[0] };
                let scan = Scan {
                    agent: &agent,
                    campaign: &campaign,
                    site,
                    code: VoucherCode::parse(issued.code.as_str()),
                    identity_checked: false,
                    device: None,
                };
                let outcome = redeem::redeem(conn, &keys.hasher, limit, &scan)?;
                assert!(matches!(outcome, ScanOutcome::Collected { .. }));
            }
            Ok(id)
        })
        .await
        .unwrap()
}

fn cell(label: &str, value: &str) -> String {
    format!("<th scope=\"row\">{label}</th><td>{value}</td>")
}

#[tokio::test]
async fn the_figures_match_a_known_data_set_and_small_counts_are_hidden() {
    let app = spawn_app().await;
    let campaign = known_data_set(&app).await;
    let official = app
        .agent_browser("elu@mairie.example", Role::Official, None, &[])
        .await;
    let page = official.get("/agent/dashboard").await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    // Counts are rounded to multiples of 5 (`rounding_base`), shares computed from them.
    for expected in [
        cell("Documents déposés", "10"),
        cell("Documents ouverts", "5"),
        cell("Part des documents ouverts", "50 %"),
        // Estimated from the 15-minute band 3 h – 3 h 15 (`dashboard::delays`).
        cell("Délai médian avant ouverture", "3 h 8 min"),
        cell("Documents retirés par la commune", "0"),
        cell("Bons valides émis", "10"),
        cell("Bons retirés", "10"),
        // Two left: a small count.
        cell("Bons restant à retirer", "&lt; 5"),
        cell("École", "5"),
        cell("Mairie", "&lt; 5"),
        // Seven sent, five of them reminders; one failed, a small count.
        "<th scope=\"row\">courriel</th><td>5</td><td>&lt; 5</td><td>0</td><td>5</td>".to_owned(),
    ] {
        assert!(page.contains(&expected), "{expected}\n{page}");
    }
    // Charts: SVG with a title and a description, one per series.
    assert!(
        page.contains("<title id=\"documents-per-day-title\">Documents déposés par jour</title>")
    );
    assert!(page.contains("<title id=\"vouchers-per-site-title\">Bons retirés par lieu</title>"));
    // Nothing names a person, a contact or a document.
    for name in FAMILY_NAMES {
        assert!(
            !page.contains(name) && !page.contains(&name.to_lowercase()),
            "{name}"
        );
    }
    assert!(!page.contains("@example.org") && !page.contains("Acte de"));

    // Narrowed to one department: its own figures.
    let page = official
        .get("/agent/dashboard?department=etat-civil")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&cell("Documents déposés", "5")), "{page}");
    assert!(page.contains(&cell("Part des documents ouverts", "100 %")));
    // Narrowed further, the counts become small: hidden, and nothing derived shown.
    let page = official
        .get("/agent/dashboard?department=finances")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&cell("Documents déposés", "&lt; 5")),
        "{page}"
    );
    assert!(page.contains(&cell("Documents ouverts", "0")));
    assert!(page.contains(&cell("Part des documents ouverts", "—")));
    assert!(page.contains(&cell("Délai médian avant ouverture", "—")));
    // One category, a date range, one campaign.
    let today = chrono::Utc::now().date_naive();
    let page = official
        .get(&format!(
            "/agent/dashboard?category=etat-civil&from={today}&to={today}&campaign={campaign}"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&cell("Documents déposés", "5")), "{page}");
    assert!(page.contains(&cell("Bons retirés", "10")));
    // The scope in words, which also goes to paper.
    assert!(page.contains("Masques ·"), "{page}");
    assert!(page.contains("Période\u{a0}:"), "{page}");
    assert!(page.contains(&format!("{today} – {today}")));
    let yesterday = today - TimeDelta::days(1);
    let page = official
        .get(&format!("/agent/dashboard?from={yesterday}&to={yesterday}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&cell("Documents déposés", "0")), "{page}");
    assert!(
        page.contains(&cell("Bons valides émis", "10")),
        "issued whatever the dates"
    );

    // Each table as CSV, with the same rule.
    let csv = official
        .get("/agent/dashboard/summary.csv?department=finances")
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with('\u{feff}'));
    assert!(csv.contains("Documents déposés;< 5"), "{csv}");
    let sites = official
        .get("/agent/dashboard/vouchers-per-site.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        sites.contains("Lieu;Bons retirés")
            && sites.contains("École;5")
            && sites.contains("Mairie;< 5")
    );
    assert_eq!(
        official.get("/agent/dashboard/unknown.csv").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The "Documents déposés" figure of the summary CSV for a filter.
async fn delivered_shown(
    browser: &crate::common::agent_browser::AgentBrowser,
    filter: &str,
) -> String {
    let csv = browser
        .get(&format!("/agent/dashboard/summary.csv?{filter}"))
        .await
        .text()
        .await
        .unwrap();
    csv.lines()
        .find_map(|line| line.strip_prefix("Documents déposés;"))
        .unwrap()
        .to_owned()
}

/// The exact counts a shown figure may stand for.
fn possible_counts(shown: &str, threshold: i64, base: i64) -> Vec<i64> {
    match shown.strip_prefix("< ") {
        Some(_) => (1..threshold).collect(),
        None => {
            let shown: i64 = shown.parse().unwrap();
            (0..=shown + base)
                .filter(|count| {
                    (*count == 0 && shown == 0)
                        || (*count >= threshold
                            && (shown - base / 2..=shown + (base - 1) / 2).contains(count))
                })
                .collect()
        }
    }
}

#[tokio::test]
async fn a_hidden_count_cannot_be_found_by_subtracting_two_shown_ones() {
    let app = spawn_app().await;
    known_data_set(&app).await;
    let official = app
        .agent_browser("elu@mairie.example", Role::Official, None, &[])
        .await;
    let (threshold, base) = (
        i64::from(app.state.config.dashboard.small_count_threshold),
        i64::from(app.state.config.dashboard.rounding_base),
    );
    // Eight documents: six of `etat-civil`, two of `finances` (a small count).
    let hidden = delivered_shown(&official, "department=finances").await;
    assert_eq!(hidden, "< 5");
    let all = delivered_shown(&official, "").await;
    let others = delivered_shown(&official, "department=etat-civil").await;
    // Everything minus the other department: every hidden value stays possible.
    let mut candidates: Vec<i64> = Vec::new();
    for total in possible_counts(&all, threshold, base) {
        for other in possible_counts(&others, threshold, base) {
            let rest = total - other;
            if possible_counts(&hidden, threshold, base).contains(&rest)
                && !candidates.contains(&rest)
            {
                candidates.push(rest);
            }
        }
    }
    candidates.sort_unstable();
    assert_eq!(
        candidates,
        [1, 2, 3, 4],
        "all {all} minus etat-civil {others} narrows the hidden count"
    );
}

#[tokio::test]
async fn bad_filters_are_refused_with_a_clear_message() {
    let app = spawn_app().await;
    let official = app
        .agent_browser("elu@mairie.example", Role::Official, None, &[])
        .await;
    for (query, message) in [
        ("department=nowhere", "Ce service n&#x27;existe pas."),
        ("category=Impôts", "La catégorie ne contient que"),
        (
            "campaign=00000000-0000-0000-0000-000000000000",
            "Cette campagne n&#x27;existe pas.",
        ),
        ("from=31/12/2026", "Une date est invalide"),
        ("from=2026-12-31&to=2026-01-01", "La date de fin précède"),
    ] {
        let answer = official.get(&format!("/agent/dashboard?{query}")).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let page = answer.text().await.unwrap();
        assert!(page.contains(message), "{query}: {page}");
        let csv = official
            .get(&format!("/agent/dashboard/summary.csv?{query}"))
            .await;
        assert_eq!(csv.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
    }
}

/// An official reaches the dashboard, their home and account, and nothing that shows
/// personal data: no agent page, no citizen page, no API route.
#[tokio::test]
async fn an_official_reaches_nothing_personal() {
    let app = spawn_app().await;
    let campaign = known_data_set(&app).await;
    let document: String = app
        .state
        .db
        .read(|conn| {
            documents::table
                .select(documents::id)
                .first(conn)
                .map_err(eguichet::db::DbError::from)
        })
        .await
        .unwrap();
    let official = app
        .agent_browser("elu@mairie.example", Role::Official, None, &[])
        .await;
    for path in ["/agent", "/agent/account", "/agent/dashboard"] {
        assert_eq!(official.get(path).await.status(), StatusCode::OK, "{path}");
    }
    let agent_pages = [
        "/agent/deliveries".to_owned(),
        "/agent/deliveries/new".to_owned(),
        format!("/agent/deliveries/{document}"),
        "/agent/bulk".to_owned(),
        "/agent/admin/agents".to_owned(),
        "/agent/admin/departments".to_owned(),
        "/agent/vouchers".to_owned(),
        format!("/agent/vouchers/{campaign}"),
        "/agent/scan".to_owned(),
    ];
    for path in &agent_pages {
        assert_eq!(
            official.get(path).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // The citizen's pages need a citizen's session, which an agent's is not.
    for path in [
        "/vault",
        "/vault/settings",
        &format!("/vault/documents/{document}"),
    ] {
        let answer = official.get(path).await;
        assert_ne!(answer.status(), StatusCode::OK, "{path}");
        let body = answer.text().await.unwrap();
        assert!(!body.contains("Acte de"), "{path}");
    }
    // The API with an official's token.
    let token = app
        .agent_token("elu-api@mairie.example", Role::Official)
        .await;
    let api = |method: reqwest::Method, path: String| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(&token)
    };
    let status = api(
        reqwest::Method::GET,
        format!("/api/v1/documents/{document}"),
    )
    .send()
    .await
    .unwrap()
    .status();
    assert!(
        matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{status}"
    );
    let delivered = app.deliver(&token).send().await.status();
    assert_eq!(delivered, StatusCode::FORBIDDEN);
    let withdrawn = api(
        reqwest::Method::POST,
        format!("/api/v1/documents/{document}/withdraw"),
    )
    .json(&json!({ "reason": "x" }))
    .send()
    .await
    .unwrap()
    .status();
    assert!(
        matches!(withdrawn, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{withdrawn}"
    );
}

/// Rows of `dashboard_documents`, `dashboard_open_delays` and `dashboard_notices`.
type DocumentRow = (String, String, String, String, i64, i64, i64);
type DelayRow = (String, String, String, String, i32, i64);
type NoticeRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

/// Every counter row that is not zero, in key order.
type Counters = (Vec<DocumentRow>, Vec<DelayRow>, Vec<NoticeRow>);

async fn counters(app: &TestApp) -> Counters {
    app.state
        .db
        .read(|conn| -> anyhow::Result<Counters> {
            let mut documents: Vec<DocumentRow> = dashboard_documents::table.load(conn)?;
            documents.retain(|row| (row.4, row.5, row.6) != (0, 0, 0));
            documents.sort();
            let mut delays: Vec<DelayRow> = dashboard_open_delays::table.load(conn)?;
            delays.retain(|row| row.5 != 0);
            delays.sort();
            let mut notices: Vec<NoticeRow> = dashboard_notices::table.load(conn)?;
            notices.retain(|row| (row.6, row.7, row.8) != (0, 0, 0));
            notices.sort();
            Ok((documents, delays, notices))
        })
        .await
        .unwrap()
}

/// The counters are kept in the transactions that deliver, coalesce, open, withdraw
/// and send: after each kind of change, they hold what counting the stored data from
/// scratch gives.
#[tokio::test]
async fn counters_follow_each_change_as_a_refill_counts_it() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    app.department("finances").await;
    let token = app.agent_token("admin@mairie.example", Role::Admin).await;
    let deliver = |name: &str, department: Option<&str>, category: &str, contact| {
        let mut metadata = json!({
            "recipient": pivot(name),
            "title": "Avis",
            "category": category,
            "contact": contact,
        });
        if let Some(department) = department {
            metadata["department"] = json!(department);
        }
        let request = app
            .deliver(&token)
            .metadata(metadata)
            .file(document_bytes(500, 1));
        async move {
            let response = request.send().await;
            assert_eq!(response.status(), 201);
            let body: serde_json::Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let both = json!({"email": "arnaud@example.org", "phone": "+33612345678"});
    // Two documents of two departments for one citizen: one email and one SMS notice
    // announce both.
    let first = deliver("Arnaud", Some("etat-civil"), "etat-civil", both.clone()).await;
    let second = deliver("Arnaud", Some("finances"), "impots", both).await;
    let alone = deliver(
        "Bernard",
        Some("etat-civil"),
        "etat-civil",
        json!({"email": "b@example.org"}),
    )
    .await;
    let _without_department =
        deliver("Collin", None, "eau", json!({"email": "c@example.org"})).await;
    let live = counters(&app).await;
    assert!(!live.0.is_empty() && !live.2.is_empty());

    // Opened once, then again: counted once.
    let citizen = app.citizen_of(&first).await;
    for _ in 0..2 {
        eguichet::vault::open_document(&app.state, &citizen, &DocumentId(first.clone()))
            .await
            .unwrap();
    }
    // Withdrawn before their notices went out: the second leaves Arnaud's notices,
    // Bernard's notice is left about nothing and dropped.
    for id in [&second, &alone] {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/documents/{id}/withdraw", app.address))
            .bearer_auth(&token)
            .json(&json!({"reason": "Envoyé par erreur"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    // The worker's steps: claim what is due (made due now), then one notice sent,
    // one dead, one to retry.
    app.state
        .db
        .write(|conn| -> anyhow::Result<()> {
            diesel::update(notices::table)
                .set(notices::next_attempt_at.eq(chrono::Utc::now().naive_utc()))
                .execute(conn)?;
            let claimed = notify::claim_due_notices(conn, 10, Duration::from_secs(60))?;
            assert_eq!(claimed.len(), 3);
            let outcomes: Vec<_> = claimed
                .into_iter()
                .zip([
                    notify::Outcome::Sent,
                    notify::Outcome::Dead { error: "refused" },
                    notify::Outcome::Retry {
                        at: chrono::Utc::now().naive_utc(),
                        error: "busy",
                    },
                ])
                .collect();
            notify::record_outcomes(conn, &outcomes)?;
            Ok(())
        })
        .await
        .unwrap();
    let live = counters(&app).await;
    app.state.db.write(refill::refill).await.unwrap();
    let counted_again = counters(&app).await;
    assert_eq!(live, counted_again);

    // And what they hold: four delivered, one opened, two withdrawn; three notices
    // left, one sent, one failed, one pending.
    let documents = &live.0;
    let total = |column: fn(&DocumentRow) -> i64| documents.iter().map(column).sum::<i64>();
    assert_eq!(total(|row| row.4), 4);
    assert_eq!(total(|row| row.5), 1);
    assert_eq!(total(|row| row.6), 2);
    let everything: Vec<&NoticeRow> = live
        .2
        .iter()
        .filter(|row| row.2 == "*" && row.3 == "*")
        .collect();
    let sum = |column: fn(&NoticeRow) -> i64| everything.iter().map(|row| column(row)).sum::<i64>();
    assert_eq!(
        (sum(|row| row.6), sum(|row| row.7), sum(|row| row.8)),
        (1, 1, 1)
    );
}
