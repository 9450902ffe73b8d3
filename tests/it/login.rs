//! Citizens log in through the demonstration provider (the same relying-party code as
//! FranceConnect), find the documents addressed to them before they ever logged in,
//! download them, and log out — and every bad return gets a clear page, no session.

use crate::common::citizen_browser::CitizenBrowser as Browser;
use crate::common::html::{hidden_fields, location};
use crate::common::{TestApp, awa, document_bytes, marie, spawn_app};
use diesel::prelude::*;
use eguichet::agents::Role;
use eguichet::db::schema::{documents, sessions};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn citizen_logs_in_finds_documents_addressed_before_downloads_and_logs_out() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let plaintext = document_bytes(150_000, 11);
    let id = app
        .deliver_to(
            &token,
            marie(),
            "Avis de taxe foncière 2026",
            plaintext.clone(),
        )
        .await;

    // The authorization request carries only FranceConnect's documented parameters.
    let browser = Browser::new(&app);
    let start = browser.get("/login/demo").await;
    let authorize = url::Url::parse(&location(&start)).unwrap();
    let mut names: Vec<String> = authorize
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "acr_values",
            "client_id",
            "nonce",
            "redirect_uri",
            "response_type",
            "scope",
            "state"
        ]
    );
    for (name, value) in authorize.query_pairs() {
        if name == "state" || name == "nonce" {
            assert!(value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    let browser = Browser::logged_in_as(&app, "marie.dupont").await;
    let vault = browser.vault().await;
    assert!(vault.contains("Avis de taxe foncière 2026"), "{vault}");
    assert!(vault.contains("Commune de démonstration"));

    let download = browser.get(&format!("/vault/documents/{id}")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["cache-control"], "no-store");
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"avis-taxe-fonciere.pdf\""),
        "{disposition}"
    );
    assert_eq!(
        download.bytes().await.unwrap().as_ref(),
        plaintext.as_slice()
    );
    let status: Value = app.status(&token, &id).await.json().await.unwrap();
    assert_eq!(status["state"], "opened");

    // Logout: server session gone, provider's end-session with the hint, state checked.
    let csrf = hidden_fields(&browser.vault().await)
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .unwrap()
        .1;
    let logout = browser.post("/logout", &[("csrf".to_owned(), csrf)]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert!(
        logout.headers()["clear-site-data"]
            .to_str()
            .unwrap()
            .contains("cache")
    );
    let end_session = url::Url::parse(&location(&logout)).unwrap();
    let params: Vec<String> = end_session
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    for required in ["id_token_hint", "state", "post_logout_redirect_uri"] {
        assert!(params.iter().any(|p| p == required), "{end_session}");
    }
    let back = browser.get(end_session.as_str()).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let done = browser.get(&location(&back)).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(
        done.headers()["clear-site-data"]
            .to_str()
            .unwrap()
            .contains("cookies")
    );
    assert_eq!(
        browser.get("/vault").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The home page offers the login again (no loop through the expired page).
    let home = browser.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("/login/demo"));
}

#[tokio::test]
async fn citizens_reach_only_their_own_documents() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let marie_doc = app
        .deliver_to(&token, marie(), "Attestation", document_bytes(5_000, 1))
        .await;
    let awa_doc = app
        .deliver_to(&token, awa(), "Facture cantine", document_bytes(5_000, 2))
        .await;

    // Jean shares Marie's email address: he sees nothing of hers.
    let jean = Browser::logged_in_as(&app, "jean.dupont").await;
    assert!(!jean.vault().await.contains("Attestation"));
    let awa_browser = Browser::logged_in_as(&app, "awa.diallo").await;
    let vault = awa_browser.vault().await;
    assert!(vault.contains("Facture cantine") && !vault.contains("Attestation"));

    for path in [
        format!("/vault/documents/{marie_doc}"),
        format!("/vault/documents/{}", uuid::Uuid::new_v4()),
        "/vault/documents/not-an-id".to_owned(),
    ] {
        let answer = awa_browser.get(&path).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        jean.get(&format!("/vault/documents/{awa_doc}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Without a session: the expired-session page, not the document.
    let anonymous = Browser::new(&app);
    for path in [
        "/vault",
        "/vault/settings",
        &format!("/vault/documents/{awa_doc}"),
    ] {
        assert_eq!(
            anonymous.get(path).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
}

#[tokio::test]
async fn forged_replayed_or_refused_returns_get_a_page_and_no_session() {
    let app = spawn_app().await;

    // A state nobody issued.
    let browser = Browser::new(&app);
    let forged = browser
        .get(&format!(
            "/login/demo/callback?code=x&state={}",
            "ab".repeat(32)
        ))
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(
        forged
            .headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("eg_session="))
    );

    // The same callback twice: the second finds its state consumed.
    let (action, mut fields) = browser.open_provider_page().await;
    fields.push(("citizen".to_owned(), "paul.casanova".to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let callback = location(&browser.post(&action, &fields).await);
    assert_eq!(browser.get(&callback).await.status(), StatusCode::SEE_OTHER);
    let replay = Browser::new(&app);
    assert_eq!(
        replay.get(&callback).await.status(),
        StatusCode::BAD_REQUEST
    );

    // The state is bound to the browser that started the login.
    let (action, mut fields) = browser.open_provider_page().await;
    fields.push(("citizen".to_owned(), "paul.casanova".to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let callback = location(&browser.post(&action, &fields).await);
    let other_browser = Browser::new(&app);
    assert_eq!(
        other_browser.get(&callback).await.status(),
        StatusCode::BAD_REQUEST
    );

    // The citizen refuses at the provider: the provider's error, shown as a page.
    let (action, mut fields) = browser.open_provider_page().await;
    fields.push(("decision".to_owned(), "refuse".to_owned()));
    let refused = browser
        .get(&location(&browser.post(&action, &fields).await))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("<h1>"));

    // Unknown provider.
    assert_eq!(
        browser.get("/login/nowhere").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn idle_sessions_expire_and_csrf_is_required() {
    let app = spawn_app().await;
    let browser = Browser::logged_in_as(&app, "sophie.lefebvre").await;
    let page = browser.get("/vault/settings").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = hidden_fields(&page.text().await.unwrap())
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .unwrap()
        .1;

    let form = |csrf: &str, email: &str, channel: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("email".to_owned(), email.to_owned()),
            ("phone".to_owned(), "06 12 34 56 78".to_owned()),
            ("channel".to_owned(), channel.to_owned()),
        ]
    };
    let forged = browser
        .post(
            "/vault/settings",
            &form("0".repeat(64).as_str(), "s@example.org", "email"),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let invalid = browser
        .post("/vault/settings", &form(&csrf, "not-an-email", "email"))
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let saved = browser
        .post(
            "/vault/settings",
            &form(&csrf, "sophie@example.org", "both"),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let shown = browser.get("/vault/settings").await.text().await.unwrap();
    assert!(shown.contains("sophie@example.org") && shown.contains("+33612345678"));

    // Fifteen idle minutes later the session is gone.
    app.state
        .db
        .write(|conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(sessions::table)
                .set(sessions::last_seen_at.eq(eguichet::now() - chrono::TimeDelta::minutes(16)))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let expired = browser.get("/vault").await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    // With the stale cookie still in the browser, home shows the login buttons.
    assert_eq!(browser.get("/").await.status(), StatusCode::OK);
    assert!(expired.text().await.unwrap().contains("href=\"/\""));
}

#[tokio::test]
async fn pages_carry_strict_headers_and_tampered_downloads_are_refused() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let id = app
        .deliver_to(&token, awa(), "Avis", document_bytes(80_000, 3))
        .await;
    let browser = Browser::logged_in_as(&app, "awa.diallo").await;

    let vault = browser.get("/vault").await;
    let csp = vault.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(vault.headers()["cache-control"], "no-store");
    assert_eq!(vault.headers()["referrer-policy"], "no-referrer");
    let html = vault.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\"") && html.contains("<main"));

    // English on request, remembered.
    let english = browser.get("/vault?lang=en").await.text().await.unwrap();
    assert!(english.contains("<html lang=\"en\"") && english.contains("My documents"));

    // The stored ciphertext no longer matches its record: refused before any byte.
    let lookup = id.clone();
    app.state
        .db
        .write(move |conn| -> Result<usize, eguichet::db::DbError> {
            Ok(diesel::update(documents::table.find(lookup))
                .set(documents::ciphertext_sha256.eq("0".repeat(64)))
                .execute(conn)?)
        })
        .await
        .unwrap();
    let tampered = browser.get(&format!("/vault/documents/{id}")).await;
    assert_eq!(tampered.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(tampered.headers().get("content-disposition").is_none());
}

#[tokio::test]
async fn session_cookie_is_http_only_and_lax() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let (action, mut fields) = browser.open_provider_page().await;
    fields.push(("citizen".to_owned(), "ahmad.rahimi".to_owned()));
    fields.push(("decision".to_owned(), "accept".to_owned()));
    let callback = location(&browser.post(&action, &fields).await);
    let answer = browser.get(&callback).await;
    let session_cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("eg_session="))
        .unwrap();
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
    let value = session_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("eg_session=");
    assert_eq!(value.len(), 64);
}

#[tokio::test]
async fn a_withdrawn_document_shows_as_withdrawn_without_its_title() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let kept = app
        .deliver_to(
            &token,
            marie(),
            "Carte d'électeur",
            document_bytes(2_000, 3),
        )
        .await;
    let withdrawn = app
        .deliver_to(
            &token,
            marie(),
            "Avis destiné à un homonyme",
            document_bytes(2_000, 4),
        )
        .await;
    let answer = app
        .client
        .post(format!(
            "{}/api/v1/documents/{withdrawn}/withdraw",
            app.address
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "Adressé par erreur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    let browser = Browser::logged_in_as(&app, "marie.dupont").await;
    let vault = browser.vault().await;
    assert!(vault.contains("Carte d&#x27;électeur") || vault.contains("Carte d'électeur"));
    assert!(vault.contains(&format!("/vault/documents/{kept}")));
    assert!(!vault.contains("homonyme"), "{vault}");
    assert!(!vault.contains(&format!("/vault/documents/{withdrawn}")));
    assert!(vault.contains("Document retiré par la commune"));
    assert!(vault.contains("Adressé par erreur"));
    let download = browser.get(&format!("/vault/documents/{withdrawn}")).await;
    assert_eq!(download.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_citizen_whose_only_document_was_withdrawn_is_not_told_one_waits() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let withdrawn = app
        .deliver_to(
            &token,
            marie(),
            "Avis destiné à un homonyme",
            document_bytes(2_000, 5),
        )
        .await;
    let answer = app
        .client
        .post(format!(
            "{}/api/v1/documents/{withdrawn}/withdraw",
            app.address
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "Adressé par erreur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    let browser = Browser::logged_in_as(&app, "marie.dupont").await;
    let vault = browser.vault().await;
    assert!(!vault.contains("vous attend."), "{vault}");
    assert!(vault.contains("Aucun document ne vous attend"), "{vault}");
    assert!(vault.contains("Document retiré par la commune"), "{vault}");
}

/// Delivers a file part exactly as a hostile client writes it (raw UTF-8 name).
async fn deliver_raw_part(
    app: &TestApp,
    token: &str,
    file_name: &str,
    content_type: &str,
) -> String {
    let metadata = crate::common::metadata(marie(), "Avis");
    let boundary = "eguichet-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{metadata}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let answer = app
        .client
        .post(format!("{}/api/v1/documents", app.address))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    answer.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_document_that_could_run_in_the_browser_is_only_ever_downloaded_and_its_name_is_clean() {
    let app = spawn_app().await;
    let token = app.agent_token("agent@mairie.example", Role::Agent).await;
    let browser_types = [
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/javascript",
        "application/javascript",
        "text/xml",
    ];
    let mut ids = Vec::new();
    for content_type in browser_types {
        ids.push(deliver_raw_part(&app, &token, "avis\u{202E}fdp.exe", content_type).await);
    }

    let browser = Browser::logged_in_as(&app, "marie.dupont").await;
    let vault = browser.vault().await;
    assert!(!vault.contains('\u{202E}'), "{vault}");
    assert!(vault.contains("avisfdp.exe"), "{vault}");
    for id in ids {
        let download = browser.get(&format!("/vault/documents/{id}")).await;
        assert_eq!(download.status(), StatusCode::OK);
        let headers = download.headers();
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        assert!(!disposition.contains("%E2%80%AE"), "{disposition}");
        assert!(disposition.contains("avisfdp.exe"), "{disposition}");
    }
}

/// An error answer is a page of the portal: its stylesheet, a heading, a way home.
fn assert_portal_page(body: &str, words: &str) {
    assert!(body.contains("/static/app.css"), "{body}");
    assert!(body.contains("<h1"), "{body}");
    assert!(body.contains(words), "{words}: {body}");
    assert!(body.contains("href=\"/\""), "{body}");
}

#[tokio::test]
async fn every_error_is_a_page_in_the_visitors_language_and_the_api_keeps_json() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let get = |path: &str, lang: &str| {
        client
            .get(format!("{}{path}", app.address))
            .header("Accept-Language", lang)
            .send()
    };

    // Unknown URLs, in French by default and in English when the browser asks.
    for path in [
        "/no-such-page",
        "/vault/documents/x/y/z",
        "/demo-idp/nothing-here",
    ] {
        let answer = get(path, "fr").await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_portal_page(&answer.text().await.unwrap(), "Page introuvable");
    }
    let answer = get("/no-such-page", "en").await.unwrap();
    assert_portal_page(&answer.text().await.unwrap(), "Page not found");

    // A method the address does not take.
    let answer = client
        .delete(format!("{}/vault", app.address))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error());
    assert_portal_page(&answer.text().await.unwrap(), "<h1");

    // A query the framework cannot read: a page, not the parser's message.
    let answer = get("/login/demo/callback?code=a&code=b&state=%ZZ", "en")
        .await
        .unwrap();
    assert!(answer.status().is_client_error());
    let body = answer.text().await.unwrap();
    assert!(body.contains("<h1"), "{body}");
    assert!(!body.contains("deserialize"), "{body}");

    // Under /api, errors stay JSON, for unknown URLs and wrong methods too.
    for (answer, code) in [
        (get("/api/v1/nothing", "fr").await.unwrap(), "not_found"),
        (
            client
                .delete(format!("{}/api/v1/documents", app.address))
                .send()
                .await
                .unwrap(),
            "not_found",
        ),
    ] {
        assert!(answer.status().is_client_error());
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], code, "{body}");
    }
}

#[tokio::test]
async fn the_demo_provider_lists_its_citizens_with_what_addresses_them() {
    let app = spawn_app().await;
    for path in ["/demo-idp", "/demo-idp/"] {
        let answer = app.get(path).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let body = answer.text().await.unwrap();
        for citizen in eguichet::auth::demo_idp::demo_citizens() {
            for field in [
                citizen.family_name,
                citizen.given_name,
                citizen.birthdate,
                citizen.birthcountry,
            ] {
                assert!(body.contains(field), "{field} missing");
            }
            if !citizen.birthplace.is_empty() {
                assert!(body.contains(citizen.birthplace));
            }
        }
        // The recipient exactly as the API takes it.
        assert!(body.contains("&quot;given_names&quot;:&quot;Marie Claire&quot;"));
    }
}
