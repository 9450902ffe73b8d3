//! Voucher campaigns end to end: an agent creates a campaign and its site, imports the
//! households and gets the codes (mail-merge file or letters); distributors redeem
//! them through the page and the API. Single use under 64 concurrent scans, every
//! refusal, lost letters, vouchers in a citizen's vault, and what each role reaches.
//! Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.

use std::time::Duration;

use crate::common::agent_browser::AgentBrowser;
use crate::common::html::location;
use crate::common::pdf_decode::{decode_pdf, decoder_available};
use crate::common::{TestApp, spawn_app, spawn_app_with};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::auth::sessions::{self, SessionKind, SessionPolicy};
use eguichet::db::schema::{notices, voucher_scan_failures, vouchers};
use eguichet::vouchers::campaigns;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const HOUSEHOLDS: &str = "reference;allotment;address_1;address_2;address_3\n\
    F-001;2;M. Jean Dupont;12 rue des Lilas;59000 Lille\n\
    F-002;;Mme Awa Diallo;3 place de la Mairie;59000 Lille\n\
    F-003;5;Famille Martin;Résidence Les Tilleuls;59000 Lille\n";

/// A campaign with one site, created through the agent's pages.
struct Campaign {
    id: String,
    site: String,
}

async fn create_campaign(browser: &AgentBrowser, name: &str) -> Campaign {
    let csrf = browser.csrf().await;
    let created = browser
        .post(
            "/agent/vouchers",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("item", "masques lavables"),
                ("default_allotment", "3"),
                ("starts_on", "2020-05-11"),
                ("ends_on", "2020-05-16"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let id = location(&created)
        .trim_start_matches("/agent/vouchers/")
        .to_owned();
    let added = browser
        .post(
            &format!("/agent/vouchers/{id}/sites"),
            &[
                ("csrf", &csrf),
                ("name", &format!("Salle des fêtes {name}")),
                ("address", "1 place du Marché"),
                ("opening_hours", "9 h – 17 h"),
            ],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let site = site_of(browser, &id).await;
    Campaign { id, site }
}

/// The id of the first site the distributor's site list shows for `campaign`.
async fn site_of(browser: &AgentBrowser, campaign: &str) -> String {
    let page = browser.get("/agent/scan").await.text().await.unwrap();
    let section = page
        .split(&format!("id=\"campaign-{campaign}\""))
        .nth(1)
        .unwrap();
    let start = section.find("/agent/scan/").unwrap() + "/agent/scan/".len();
    section[start..start + 36].to_owned()
}

async fn import(
    browser: &AgentBrowser,
    campaign: &str,
    households: &[u8],
    format: &str,
    replace: bool,
) -> reqwest::Response {
    let mut form = Form::new()
        .text("csrf", browser.csrf().await)
        .text("format", format.to_owned());
    if replace {
        form = form.text("replace", "1");
    }
    form = form.part(
        "file",
        Part::bytes(households.to_vec())
            .file_name("foyers.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    browser
        .client
        .post(format!(
            "{}/agent/vouchers/{campaign}/households",
            browser.base
        ))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// (reference, grouped code) of each row of a mail-merge file.
async fn mail_merge_codes(response: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (reference, code) = (column("household_reference"), column("code"));
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            (record[reference].to_owned(), record[code].to_owned())
        })
        .collect()
}

/// The codes of the three `HOUSEHOLDS`, issued as a mail-merge file.
async fn issue_households(browser: &AgentBrowser, campaign: &str) -> Vec<(String, String)> {
    mail_merge_codes(import(browser, campaign, HOUSEHOLDS.as_bytes(), "csv", false).await).await
}

async fn scan(browser: &AgentBrowser, site: &str, code: &str) -> (StatusCode, String) {
    let csrf = browser.csrf().await;
    let answer = browser
        .post(
            &format!("/agent/scan/{site}"),
            &[("csrf", &csrf), ("code", code), ("identity_checked", "1")],
        )
        .await;
    (answer.status(), answer.text().await.unwrap())
}

/// A distributor's browser that has opened the scan page (and so has a device id).
async fn distributor(app: &TestApp, email: &str, site: &str) -> AgentBrowser {
    let browser = app.agent_browser(email, Role::Distributor, None, &[]).await;
    assert_eq!(
        browser.get(&format!("/agent/scan/{site}")).await.status(),
        StatusCode::OK
    );
    browser
}

async fn redeem_api(app: &TestApp, token: &str, site: &str, body: Value) -> (StatusCode, Value) {
    let answer = app
        .client
        .post(format!(
            "{}/api/v1/voucher-sites/{site}/redemptions",
            app.address
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.json().await.unwrap())
}

/// Runs one query against the portal's database.
async fn query<T: Send + 'static>(
    app: &TestApp,
    run: impl FnOnce(&mut eguichet::db::Conn) -> QueryResult<T> + Send + 'static,
) -> T {
    app.state
        .db
        .read(move |conn| run(conn).map_err(eguichet::db::DbError::from))
        .await
        .unwrap()
}

/// How many vouchers have been collected.
async fn redeemed_count(app: &TestApp) -> i64 {
    query(app, |conn| {
        vouchers::table
            .filter(vouchers::redeemed_at.is_not_null())
            .count()
            .get_result(conn)
    })
    .await
}

/// When the (only) collected voucher was collected, as `HH:MM` in Paris time.
async fn collected_at_local(app: &TestApp) -> String {
    let at: chrono::NaiveDateTime = query(app, |conn| {
        vouchers::table
            .filter(vouchers::redeemed_at.is_not_null())
            .select(vouchers::redeemed_at.assume_not_null())
            .first(conn)
    })
    .await;
    eguichet::local_time::local_time(at, chrono_tz::Europe::Paris)
        .format("%H:%M")
        .to_string()
}

/// Every text column of every voucher row, to check what the database keeps.
async fn stored_voucher_text(app: &TestApp) -> String {
    let rows: Vec<(String, String, String, String)> = query(app, |conn| {
        vouchers::table
            .select((
                vouchers::id,
                vouchers::code_hash,
                vouchers::household_hash,
                vouchers::campaign_id,
            ))
            .load(conn)
    })
    .await;
    format!("{rows:?}")
}

#[tokio::test]
async fn a_campaign_from_import_to_collection() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques mai 2020").await;
    let codes = issue_households(&agent, &campaign.id).await;
    assert_eq!(codes.len(), 3);
    assert_eq!(codes[0].0, "F-001");
    // The database holds neither the codes, nor the references, nor the addresses.
    let stored = stored_voucher_text(&app).await;
    for (reference, code) in &codes {
        let canonical = code.replace('-', "");
        assert!(!stored.contains(&canonical) && !stored.contains(reference));
    }
    assert!(!stored.contains("Dupont") && !stored.contains("Lilas"));
    let campaign_page = agent
        .get(&format!("/agent/vouchers/{}", campaign.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        campaign_page.contains("id=\"count-issued\">3<"),
        "{campaign_page}"
    );

    let first = distributor(&app, "distrib1@mairie.example", &campaign.site).await;
    let second = distributor(&app, "distrib2@mairie.example", &campaign.site).await;
    // Typed with spaces and in lower case: read all the same; the allotment is shown.
    let typed = codes[0].1.to_lowercase().replace('-', " ");
    let (status, page) = scan(&first, &campaign.site, &typed).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("scan-collected") && page.contains("2 × masques lavables"));
    // The same desk again at once (a household coming back, a photocopy): never a
    // hand-over, but when and where it was handed over, in the commune's time.
    let at = collected_at_local(&app).await;
    let (status, page) = scan(&first, &campaign.site, &codes[0].1).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        !page.contains("scan-collected") && page.contains("scan-already"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "Déjà remis à {at} à ce poste — ne pas remettre à nouveau"
        )),
        "{at}: {page}"
    );
    // Another desk of the same site.
    let (status, page) = scan(&second, &campaign.site, &codes[0].1).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        page.contains("scan-already")
            && page.contains(&format!("Déjà remis à {at} à un autre poste de ce lieu")),
        "{page}"
    );
    // The default allotment applies where the file left it empty.
    let (status, page) = scan(&second, &campaign.site, &codes[1].1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("3 × masques lavables"));

    let redeemed: Vec<(Option<bool>, Option<String>)> = query(&app, |conn| {
        vouchers::table
            .filter(vouchers::redeemed_at.is_not_null())
            .select((vouchers::identity_checked, vouchers::redeemed_site_id))
            .load(conn)
    })
    .await;
    assert_eq!(redeemed.len(), 2);
    assert!(
        redeemed.iter().all(|(checked, site)| *checked == Some(true)
            && site.as_deref() == Some(campaign.site.as_str()))
    );

    // Closing the campaign: nothing more is collected.
    let csrf = agent.csrf().await;
    let closed = agent
        .post(
            &format!("/agent/vouchers/{}/close", campaign.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(closed.status(), StatusCode::SEE_OTHER);
    let (status, page) = scan(&second, &campaign.site, &codes[2].1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("La campagne est close"), "{page}");
    let reimport = import(
        &agent,
        &campaign.id,
        b"reference;address_1\nF-9;x\n",
        "csv",
        false,
    )
    .await;
    assert_eq!(reimport.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_letters_are_a_pdf_with_one_page_per_household() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let answer = import(&agent, &campaign.id, HOUSEHOLDS.as_bytes(), "pdf", false).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["content-type"], "application/pdf");
    assert!(
        answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"courriers-")
    );
    let pdf = answer.bytes().await.unwrap();
    let document = lopdf::Document::load_mem(&pdf).unwrap();
    assert_eq!(document.get_pages().len(), 3);
    if !decoder_available() {
        return;
    }
    // Scanned from the rendered pages, each QR code is a code just issued: each is
    // collected once, with its household's allotment.
    let file = app.data_dir.path().join("courriers.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let pages = decode_pdf(&file);
    assert_eq!(pages.len(), 3);
    let token = app
        .agent_token("distrib@mairie.example", Role::Distributor)
        .await;
    for (page, allotment) in pages.iter().zip([2, 3, 5]) {
        assert_eq!(page.codes.len(), 1);
        assert!(page.text.contains("masques lavables") && page.text.contains("59000 Lille"));
        let (status, body) = redeem_api(
            &app,
            &token,
            &campaign.site,
            json!({ "code": page.codes[0] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["allotment"], allotment);
    }
}

#[tokio::test]
async fn every_bad_scan_gets_a_clear_answer_and_redeems_nothing() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let masks = create_campaign(&agent, "Masques").await;
    let gel = create_campaign(&agent, "Gel").await;
    let masks_codes = issue_households(&agent, &masks.id).await;
    let desk = distributor(&app, "distrib@mairie.example", &gel.site).await;
    let valid = masks_codes[0].1.replace('-', "");

    let mut wrong_check = valid.clone().into_bytes();
    wrong_check[23] = if wrong_check[23] == b'0' { b'1' } else { b'0' };
    let wrong_check = String::from_utf8(wrong_check).unwrap();
    let mut typo = valid.clone().into_bytes();
    typo[5] = if typo[5] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let cases: [(&str, StatusCode, &str); 5] = [
        (
            &valid[..20],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Code incomplet",
        ),
        (
            "ABCD-EFGH-UUUU-KKKK-MMMM-NNNN",
            StatusCode::UNPROCESSABLE_ENTITY,
            "caractère impossible",
        ),
        (
            &wrong_check,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Code mal saisi",
        ),
        (&typo, StatusCode::UNPROCESSABLE_ENTITY, "Code mal saisi"),
        // A code of the same commune's other campaign, named.
        (&valid, StatusCode::NOT_FOUND, "autre campagne"),
    ];
    for (code, status, text) in cases {
        let (found, page) = scan(&desk, &gel.site, code).await;
        assert_eq!(found, status, "{code}");
        assert!(page.contains(text), "{code}: {page}");
    }
    // A well-formed code nobody issued.
    let unknown = eguichet::vouchers::VoucherCode::generate();
    let (status, page) = scan(&desk, &gel.site, unknown.as_str()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("Code inconnu"));

    // A code issued by another commune is unknown here.
    let neighbour = app
        .agent_browser(
            "agent@autre.example",
            Role::Agent,
            Some("autre-commune"),
            &[],
        )
        .await;
    let theirs = create_campaign(&neighbour, "Masques voisins").await;
    let their_codes = issue_households(&neighbour, &theirs.id).await;
    let (status, page) = scan(&desk, &gel.site, &their_codes[0].1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("Code inconnu"), "{page}");

    // Another commune's distributor cannot redeem this commune's codes, nor see its sites.
    let stranger_token = app
        .agent_token_in(
            Some("autre-commune"),
            "distrib@autre.example",
            Role::Distributor,
        )
        .await;
    let (status, body) =
        redeem_api(&app, &stranger_token, &masks.site, json!({ "code": valid })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");

    // Nothing was redeemed, and each failure was logged for the rate limit.
    let redeemed = redeemed_count(&app).await;
    assert_eq!(redeemed, 0);
    let failures: Vec<String> = query(&app, |conn| {
        voucher_scan_failures::table
            .select(voucher_scan_failures::reason)
            .load(conn)
    })
    .await;
    assert_eq!(failures.len(), 7, "{failures:?}");
    assert!(failures.iter().all(|reason| !reason.contains(&valid)));
}

#[tokio::test]
async fn failed_scans_are_limited_per_distributor() {
    let app = spawn_app_with(crate::common::Options {
        extra_toml: "[limits]\nmax_failed_scans = 3\nfailed_scan_window_minutes = 10\n".to_owned(),
        ..Default::default()
    })
    .await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let codes = issue_households(&agent, &campaign.id).await;
    let guesser = app
        .agent_token("guesser@mairie.example", Role::Distributor)
        .await;
    for _ in 0..3 {
        let guess = eguichet::vouchers::VoucherCode::generate();
        let (status, body) = redeem_api(
            &app,
            &guesser,
            &campaign.site,
            json!({ "code": guess.as_str() }),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["outcome"], "unknown_code");
    }
    // Even a good code waits now; nothing is redeemed.
    let (status, body) = redeem_api(
        &app,
        &guesser,
        &campaign.site,
        json!({ "code": codes[0].1 }),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["outcome"], "too_many_failures");
    // Another distributor is not held up.
    let other = app
        .agent_token("honest@mairie.example", Role::Distributor)
        .await;
    let (status, body) =
        redeem_api(&app, &other, &campaign.site, json!({ "code": codes[0].1 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allotment"], 2);
    assert_eq!(body["item"], "masques lavables");
}

/// 64 simultaneous scans, eight of each of eight codes, from eight distributors:
/// exactly one success per code; every other answer is "already collected".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_scans_redeem_each_code_exactly_once() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let mut households = String::from("reference,address_1\n");
    for n in 0..8 {
        households.push_str(&format!("F-{n},Foyer {n}\n"));
    }
    let codes =
        mail_merge_codes(import(&agent, &campaign.id, households.as_bytes(), "csv", false).await)
            .await;
    let mut tokens = Vec::new();
    for n in 0..8 {
        tokens.push(
            app.agent_token(&format!("site{n}@mairie.example"), Role::Distributor)
                .await,
        );
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut scans = Vec::new();
    for (code_index, (_, code)) in codes.iter().enumerate() {
        for (device, token) in tokens.iter().enumerate() {
            let (client, url, token, code, barrier) = (
                app.client.clone(),
                format!(
                    "{}/api/v1/voucher-sites/{}/redemptions",
                    app.address, campaign.site
                ),
                token.clone(),
                code.clone(),
                barrier.clone(),
            );
            scans.push(tokio::spawn(async move {
                barrier.wait().await;
                let answer = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "code": code, "device": format!("device-{device}") }))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status();
                let body: Value = answer.json().await.unwrap();
                (code_index, status, body)
            }));
        }
    }
    let mut wins = [0; 8];
    for scan in scans {
        let (code_index, status, body) = scan.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(body["replayed"], Value::Null, "{body}");
                wins[code_index] += 1;
            }
            StatusCode::CONFLICT => assert_eq!(body["outcome"], "already_collected"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(wins, [1; 8]);
    let redeemed = redeemed_count(&app).await;
    assert_eq!(redeemed, 8);
}

/// The hidden fields of the scan form on `page`: its CSRF and one-time tokens.
fn scan_form_tokens(page: &str) -> (String, String) {
    let fields = crate::common::html::hidden_fields(page);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {name} in {page}"))
    };
    (field("csrf"), field("scan_token"))
}

/// Sends a scan form with its one-time token, as the browser does.
async fn send_form(
    browser: &AgentBrowser,
    site: &str,
    (csrf, token): &(String, String),
    code: &str,
) -> (StatusCode, String) {
    let answer = browser
        .post(
            &format!("/agent/scan/{site}"),
            &[("csrf", csrf), ("scan_token", token), ("code", code)],
        )
        .await;
    (answer.status(), answer.text().await.unwrap())
}

/// What the page says in its answer box.
fn answer_box(page: &str) -> &str {
    let start = page.find("<div class=\"scan-answer").unwrap();
    &page[start..start + page[start..].find("</div>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_scan_form_sent_twice_scans_once_and_shows_the_same_answer() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let codes = issue_households(&agent, &campaign.id).await;
    let desk = distributor(&app, "distrib@mairie.example", &campaign.site).await;
    let scan_page = format!("/agent/scan/{}", campaign.site);
    let form = scan_form_tokens(&desk.get(&scan_page).await.text().await.unwrap());

    // A double click: the second submission shows the first one's answer.
    let (status, first) = send_form(&desk, &campaign.site, &form, &codes[0].1).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first.contains("scan-collected") && first.contains("2 × masques lavables"));
    let (status, again) = send_form(&desk, &campaign.site, &form, &codes[0].1).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(answer_box(&again), answer_box(&first));
    assert_eq!(redeemed_count(&app).await, 1);
    // Nothing was counted as a refused scan either.
    let failures: i64 = query(&app, |conn| {
        voucher_scan_failures::table.count().get_result(conn)
    })
    .await;
    assert_eq!(failures, 0);

    // The answer page carries a new token: the next form is a new scan, and a code
    // collected before is never a hand-over, even sent twice.
    let next = scan_form_tokens(&first);
    assert_ne!(next.1, form.1);
    for _ in 0..2 {
        let (status, page) = send_form(&desk, &campaign.site, &next, &codes[0].1).await;
        assert_eq!(status, StatusCode::CONFLICT, "{page}");
        assert!(
            !page.contains("scan-collected") && page.contains("à ce poste"),
            "{page}"
        );
    }

    // Two submissions of one form at the same instant: one scan, the same answer twice.
    let form = scan_form_tokens(&desk.get(&scan_page).await.text().await.unwrap());
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let (first, second) = tokio::join!(
        async {
            barrier.wait().await;
            send_form(&desk, &campaign.site, &form, &codes[1].1).await
        },
        async {
            barrier.wait().await;
            send_form(&desk, &campaign.site, &form, &codes[1].1).await
        }
    );
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    assert!(first.1.contains("scan-collected"), "{}", first.1);
    assert_eq!(answer_box(&first.1), answer_box(&second.1));
    assert_eq!(redeemed_count(&app).await, 2);

    // A used token sent with another code scans that code: it absorbs nothing else.
    let (status, page) = send_form(&desk, &campaign.site, &form, &codes[2].1).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("5 × masques lavables"));
    // Another agent cannot use this desk's token to replay its answer.
    let other = distributor(&app, "autre@mairie.example", &campaign.site).await;
    let other_csrf = other.csrf().await;
    let (status, page) = send_form(
        &other,
        &campaign.site,
        &(other_csrf, form.1.clone()),
        &codes[1].1,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
    assert!(page.contains("à un autre poste de ce lieu"), "{page}");
    assert_eq!(redeemed_count(&app).await, 3);
}

#[tokio::test]
async fn an_api_request_sent_again_with_its_idempotency_key_redeems_once() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let codes = issue_households(&agent, &campaign.id).await;
    let token = app
        .agent_token("scanner@mairie.example", Role::Distributor)
        .await;
    let url = format!(
        "{}/api/v1/voucher-sites/{}/redemptions",
        app.address, campaign.site
    );
    let send = |key: Option<&str>, code: &str| {
        let mut request = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "code": code, "device": "scanner-1" }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let answer = request.send().await.unwrap();
            (answer.status(), answer.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = send(Some("scan-0001"), &codes[0].1).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["allotment"], 2);
    assert_eq!(first["replayed"], Value::Null);
    // The retry: the first answer, marked as such, and nothing redeemed again.
    let (status, retry) = send(Some("scan-0001"), &codes[0].1).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(
        (retry["outcome"].as_str(), retry["replayed"].as_bool()),
        (Some("collected"), Some(true))
    );
    assert_eq!(redeemed_count(&app).await, 1);
    // A new request for the same code: collected before, at this desk.
    let (status, repeat) = send(Some("scan-0002"), &codes[0].1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{repeat}");
    assert_eq!(repeat["outcome"], "already_collected");
    assert_eq!(repeat["collected_where"], "this_desk");
    let (status, repeat) = send(None, &codes[0].1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{repeat}");
    // The same key for another code is a client's mistake, refused.
    let (status, reused) = send(Some("scan-0001"), &codes[1].1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reused}");
    assert_eq!(reused["error"], "idempotency_key_reused");
    assert_eq!(redeemed_count(&app).await, 1);
    // Keys are each agent's own.
    let other = app
        .agent_token("scanner2@mairie.example", Role::Distributor)
        .await;
    let answer = app
        .client
        .post(&url)
        .bearer_auth(&other)
        .header("Idempotency-Key", "scan-0001")
        .json(&json!({ "code": codes[1].1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let (status, malformed) = send(Some("two words"), &codes[2].1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{malformed}");
    assert_eq!(redeemed_count(&app).await, 2);
}

#[tokio::test]
async fn expired_scan_requests_are_purged() {
    use eguichet::db::schema::voucher_scan_requests;
    use eguichet::vouchers::scan_requests::{issue_form_token, purge_expired_scan_requests};
    let app = spawn_app().await;
    let hasher = app.state.keys.clone();
    let now = eguichet::now();
    let purged = app
        .state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            for hours_ago in [0, 13, 30] {
                let at = now - chrono::TimeDelta::hours(hours_ago);
                issue_form_token(conn, &hasher.hasher, "tenant", "agent", "site", at)?;
            }
            purge_expired_scan_requests(conn, now)
        })
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let left: i64 = query(&app, |conn| {
        voucher_scan_requests::table.count().get_result(conn)
    })
    .await;
    assert_eq!(left, 1);
}

#[tokio::test]
async fn only_the_scanning_pages_may_use_the_camera() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let desk = distributor(&app, "distrib@mairie.example", &campaign.site).await;
    let policy = |response: &reqwest::Response| {
        response.headers()["permissions-policy"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let scan_page = desk.get(&format!("/agent/scan/{}", campaign.site)).await;
    let csrf = desk.csrf().await;
    let answer = desk
        .post(
            &format!("/agent/scan/{}", campaign.site),
            &[("csrf", &csrf), ("code", "X")],
        )
        .await;
    for scanning in [policy(&scan_page), policy(&answer)] {
        assert!(scanning.starts_with("camera=(self),"), "{scanning}");
        assert!(scanning.contains("microphone=()") && scanning.contains("geolocation=()"));
    }
    for path in [
        "/",
        "/agent/scan",
        "/agent",
        "/agent/vouchers",
        "/no-such-page",
    ] {
        let response = desk.get(path).await;
        let elsewhere = policy(&response);
        assert!(elsewhere.starts_with("camera=(),"), "{path}: {elsewhere}");
        assert!(elsewhere.contains("microphone=()") && !elsewhere.contains("(self)"));
    }
    let api = app.get("/api/v1/openapi.json").await;
    assert!(policy(&api).starts_with("camera=(),"));
}

#[tokio::test]
async fn a_bad_households_file_issues_nothing_and_an_import_never_issues_twice() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let bad = "reference;allotment;address_1\nF-1;2;A\nf-1;2;B\nF-2;0;C\nF-3;deux;D\nF-4;2;\n";
    let answer = import(&agent, &campaign.id, bad.as_bytes(), "csv", false).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = answer.text().await.unwrap();
    for expected in [
        "Ligne 3 : reference : le même foyer figure à la ligne 2.",
        "Ligne 4 : allotment : un nombre entier de 1 à 1000.",
        "Ligne 5 : allotment : un nombre entier",
        "Ligne 6 : address_1 : absente",
        "Aucun code n&#x27;a été émis",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let missing = import(&agent, &campaign.id, b"name;city\nx;y\n", "csv", false).await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("Il manque à l&#x27;en-tête la ou les colonnes : reference, address_1.")
    );
    assert!(stored_voucher_text(&app).await == "[]");

    // The same good file twice: the second import is refused line by line...
    let first = issue_households(&agent, &campaign.id).await;
    let again = import(&agent, &campaign.id, HOUSEHOLDS.as_bytes(), "csv", false).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("Ligne 2 : reference : ce foyer a déjà un code")
    );
    // ...unless the agent asks to replace (the first file was lost): new codes, and
    // the old ones no longer work.
    let replaced =
        mail_merge_codes(import(&agent, &campaign.id, HOUSEHOLDS.as_bytes(), "csv", true).await)
            .await;
    assert_eq!(replaced.len(), 3);
    assert_ne!(replaced[0].1, first[0].1);
    let desk = distributor(&app, "distrib@mairie.example", &campaign.site).await;
    let (status, page) = scan(&desk, &campaign.site, &first[0].1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("révoqué"), "{page}");
    let (status, _) = scan(&desk, &campaign.site, &replaced[0].1).await;
    assert_eq!(status, StatusCode::OK);
    // A household that has collected cannot be given a new code.
    let collected = import(&agent, &campaign.id, HOUSEHOLDS.as_bytes(), "csv", true).await;
    assert_eq!(collected.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        collected
            .text()
            .await
            .unwrap()
            .contains("Ligne 2 : reference : ce foyer a déjà retiré sa dotation.")
    );
    // What the campaign's pages count: three live codes, one collected, three revoked.
    let id = campaign.id.clone();
    let counts = app
        .state
        .db
        .read(move |conn| campaigns::campaign_counts(conn, &id))
        .await
        .unwrap();
    assert_eq!(
        (
            counts.issued,
            counts.redeemed,
            counts.revoked,
            counts.in_vaults
        ),
        (3, 1, 3, 0)
    );
}

#[tokio::test]
async fn a_lost_letter_is_revoked_and_replaced() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let codes = issue_households(&agent, &campaign.id).await;
    let csrf = agent.csrf().await;
    let lost = format!("/agent/vouchers/{}/lost", campaign.id);
    // A replacement needs an address to print.
    let no_address = agent
        .post(
            &lost,
            &[
                ("csrf", &csrf),
                ("reference", "F-003"),
                ("action", "replace"),
            ],
        )
        .await;
    assert_eq!(no_address.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let replaced = agent
        .post(
            &lost,
            &[
                ("csrf", &csrf),
                ("reference", "f-003"),
                ("action", "replace"),
                ("format", "csv"),
                ("address_1", "Famille Martin"),
                ("address_2", "59000 Lille"),
            ],
        )
        .await;
    let new = mail_merge_codes(replaced).await;
    assert_eq!(new.len(), 1);
    let desk = distributor(&app, "distrib@mairie.example", &campaign.site).await;
    let (status, page) = scan(&desk, &campaign.site, &codes[2].1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("révoqué"));
    let (status, page) = scan(&desk, &campaign.site, &new[0].1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("5 × masques lavables"),
        "same allotment: {page}"
    );
    // Collected: it can no longer be revoked.
    let too_late = agent
        .post(
            &lost,
            &[
                ("csrf", &csrf),
                ("reference", "F-003"),
                ("action", "revoke"),
            ],
        )
        .await;
    assert_eq!(too_late.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_late.text().await.unwrap().contains("a déjà retiré"));
    // Revoke only; an unknown household is said so.
    let revoked = agent
        .post(
            &lost,
            &[
                ("csrf", &csrf),
                ("reference", "F-002"),
                ("action", "revoke"),
            ],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let (status, _) = scan(&desk, &campaign.site, &codes[1].1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = agent
        .post(
            &lost,
            &[
                ("csrf", &csrf),
                ("reference", "F-404"),
                ("action", "revoke"),
            ],
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("Aucun code valide pour ce foyer")
    );
}

/// The citizen's browser, with a session opened directly for the citizen who holds
/// the vault vouchers (the login itself is covered by tests/login.rs).
async fn citizen_browser(app: &TestApp) -> reqwest::Client {
    let cookie = app
        .state
        .db
        .write(|conn| -> anyhow::Result<String> {
            let citizen: String = vouchers::table
                .filter(vouchers::citizen_id.is_not_null())
                .select(vouchers::citizen_id.assume_not_null())
                .first(conn)?;
            let policy = SessionPolicy {
                idle: Duration::from_secs(900),
                absolute: Duration::from_secs(3600),
            };
            let opened =
                sessions::open_session(conn, policy, SessionKind::Citizen, &citizen, None, None)?;
            Ok(opened.cookie_value)
        })
        .await
        .unwrap();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let url: reqwest::Url = app.address.parse().unwrap();
    jar.add_cookie_str(
        &format!("{}={cookie}; Path=/", sessions::SESSION_COOKIE),
        &url,
    );
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_voucher_in_the_vault_shows_its_code_until_collected() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let csrf = agent.csrf().await;
    let vault_form = format!("/agent/vouchers/{}/vault", campaign.id);
    let marie = [
        ("csrf", csrf.as_str()),
        ("reference", "F-100"),
        ("allotment", "4"),
        ("recipient_kind", "pivot"),
        ("family_name", "Dupont"),
        ("given_names", "Marie Claire"),
        ("birthdate", "1980-07-30"),
        ("birthplace", "75056"),
        ("email", "marie@example.org"),
    ];
    let mut bad_contact = marie;
    bad_contact[8] = ("email", "marie at example");
    let refused = agent.post(&vault_form, &bad_contact).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("adresse électronique")
    );
    let placed = agent.post(&vault_form, &marie).await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    assert!(location(&placed).ends_with("?done=vault"));
    // She is told something is waiting, as for a document: one email notice, naming
    // no document.
    let notices: Vec<(String, String)> = query(&app, |conn| {
        notices::table
            .select((notices::channel, notices::kind))
            .load(conn)
    })
    .await;
    assert_eq!(notices, vec![("email".to_owned(), "document".to_owned())]);
    // The campaign counts it among the live codes, and among those in a vault.
    let id = campaign.id.clone();
    let counts = app
        .state
        .db
        .read(move |conn| campaigns::campaign_counts(conn, &id))
        .await
        .unwrap();
    assert_eq!((counts.issued, counts.in_vaults), (1, 1));
    // The same household twice is refused; a bad recipient too.
    let twice = agent.post(&vault_form, &marie).await;
    assert_eq!(twice.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut nobody = marie;
    nobody[1] = ("reference", "F-101");
    nobody[6] = ("birthdate", "30/07/1980x");
    let refused = agent.post(&vault_form, &nobody).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let citizen = citizen_browser(&app).await;
    let vault = citizen
        .get(format!("{}/vault", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(vault.contains("Mes bons à retirer"), "{vault}");
    assert!(vault.contains("4 × masques lavables"));
    assert!(vault.contains("<svg role=\"img\" aria-label=\"QR code du bon\""));
    let start = vault.find("<code>").unwrap() + "<code>".len();
    let code = vault[start..start + 29].to_owned();
    assert!(
        eguichet::vouchers::VoucherCode::parse(&code).is_ok(),
        "{code}"
    );
    // The sealed code is not the code.
    assert!(
        !stored_voucher_text(&app)
            .await
            .contains(&code.replace('-', ""))
    );

    let token = app
        .agent_token("distrib@mairie.example", Role::Distributor)
        .await;
    let (status, body) = redeem_api(&app, &token, &campaign.site, json!({ "code": code })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allotment"], 4);
    let vault = citizen
        .get(format!("{}/vault", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!vault.contains("Mes bons à retirer"));
    assert!(!vault.contains(&code));
    assert!(vault.contains("Bons déjà retirés") && vault.contains("retiré le"));
}

#[tokio::test]
async fn each_role_reaches_only_its_voucher_pages() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let admin = app
        .agent_browser("admin@mairie.example", Role::Admin, None, &[])
        .await;
    let official = app
        .agent_browser("elu@mairie.example", Role::Official, None, &[])
        .await;
    let distributor = app
        .agent_browser("distrib@mairie.example", Role::Distributor, None, &[])
        .await;
    let stranger = app
        .agent_browser(
            "admin@autre.example",
            Role::Admin,
            Some("autre-commune"),
            &[],
        )
        .await;
    let detail = format!("/agent/vouchers/{}", campaign.id);
    let scan_page = format!("/agent/scan/{}", campaign.site);
    let pages: [(&str, [u16; 5]); 4] = [
        ("/agent/vouchers", [200, 200, 403, 403, 200]),
        (&detail, [200, 200, 403, 403, 404]),
        ("/agent/scan", [200, 200, 403, 200, 200]),
        (&scan_page, [200, 200, 403, 200, 404]),
    ];
    let browsers = [&admin, &agent, &official, &distributor, &stranger];
    for (path, expected) in pages {
        for (browser, status) in browsers.iter().zip(expected) {
            assert_eq!(
                browser.get(path).await.status().as_u16(),
                status,
                "GET {path}"
            );
        }
        let anonymous = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&anonymous), "/agent/login", "anonymous {path}");
    }
    // Forms: refused by role, and by tenant as not found; nothing changes.
    let posts = [
        format!("{detail}/sites"),
        format!("{detail}/close"),
        format!("{detail}/lost"),
        format!("{detail}/vault"),
        "/agent/vouchers".to_owned(),
    ];
    for browser in [&official, &distributor] {
        let csrf = browser.csrf().await;
        for path in &posts {
            let answer = browser
                .post(
                    path,
                    &[("csrf", &csrf), ("name", "x"), ("reference", "F-1")],
                )
                .await;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "POST {path}");
        }
    }
    let csrf = official.csrf().await;
    let answer = official
        .post(&scan_page, &[("csrf", &csrf), ("code", "x")])
        .await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let csrf = stranger.csrf().await;
    for path in posts.iter().take(4).chain([&scan_page]) {
        let answer = stranger
            .post(
                path,
                &[
                    ("csrf", &csrf),
                    ("name", "x"),
                    ("reference", "F-1"),
                    ("code", "x"),
                ],
            )
            .await;
        assert_eq!(
            answer.status(),
            StatusCode::NOT_FOUND,
            "stranger POST {path}"
        );
    }
    let official_token = app.agent_token("elu2@mairie.example", Role::Official).await;
    let (status, _) = redeem_api(
        &app,
        &official_token,
        &campaign.site,
        json!({ "code": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let detail_page = agent.get(&detail).await.text().await.unwrap();
    assert!(detail_page.contains("Ouverte"), "still open");
    // Forms without the session's CSRF token change nothing either.
    let forged = agent
        .post(&format!("{detail}/close"), &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

/// A town-sized import (large enough to refresh the database's statistics in its
/// transaction) issues every code, and a scan then finds its code at once.
#[tokio::test]
async fn a_large_import_issues_every_code() {
    let app = spawn_app().await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &[])
        .await;
    let campaign = create_campaign(&agent, "Masques").await;
    let mut households = String::from("reference;address_1;address_2\n");
    for n in 0..600 {
        households.push_str(&format!("F-{n:04};Foyer {n};59000 Lille\n"));
    }
    let codes =
        mail_merge_codes(import(&agent, &campaign.id, households.as_bytes(), "csv", false).await)
            .await;
    assert_eq!(codes.len(), 600);
    let token = app
        .agent_token("distrib@mairie.example", Role::Distributor)
        .await;
    let (status, body) = redeem_api(
        &app,
        &token,
        &campaign.site,
        json!({ "code": codes[599].1 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(redeemed_count(&app).await, 1);
}
