//! The agent's pages: every route checked with every role and with an agent of another
//! tenant; delivering one document from the browser form; following deliveries with
//! filters; withdrawing; and the admin's management of agents and departments.

use crate::common::agent_browser::AgentBrowser;
use crate::common::html::location;
use crate::common::{TestApp, document_bytes, marie, spawn_app};
use eguichet::agents::Role;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

/// A document delivered by an agent of `etat-civil` through the API; returns its id.
async fn delivered_document(app: &TestApp) -> String {
    let token = app
        .agent_token_for("api@mairie.example", Role::Agent, &["etat-civil"])
        .await;
    app.deliver_to(
        &token,
        marie(),
        "Livret de famille",
        document_bytes(3_000, 5),
    )
    .await
}

fn delivery_form(csrf: &str, birthdate: &str, file: Option<Vec<u8>>) -> Form {
    let mut form = Form::new().text("csrf", csrf.to_owned());
    for (name, value) in [
        ("recipient_kind", "pivot"),
        ("family_name", "Dupont"),
        ("given_names", "Marie Jeanne"),
        ("birthdate", birthdate),
        ("birthplace", "75056"),
        ("nrn", ""),
        ("title", "Certificat d'hérédité"),
        ("category", "etat-civil"),
        ("department", "etat-civil"),
        ("email", "marie@example.org"),
        ("phone", ""),
    ] {
        form = form.text(name, value.to_owned());
    }
    if let Some(bytes) = file {
        form = form.part(
            "file",
            Part::bytes(bytes)
                .file_name("certificat.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    }
    form
}

async fn post_delivery(browser: &AgentBrowser, form: Form) -> reqwest::Response {
    browser
        .client
        .post(format!("{}/agent/deliveries/new", browser.base))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_agent_route_answers_each_role_as_it_should() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    let document = delivered_document(&app).await;
    let department = {
        let tenant_id = app.state.default_tenant.id.clone();
        app.state
            .db
            .read(move |conn| eguichet::tenants::find_department(conn, &tenant_id, "etat-civil"))
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let admin = app
        .agent_browser("admin@mairie.example", Role::Admin, None, &[])
        .await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &["etat-civil"])
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
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let delivery = format!("/agent/deliveries/{document}");
    let member = format!("/agent/admin/agents/{}", agent.agent_id);
    // Pages each role may open (200), or not (403); another tenant's admin reaches the
    // tenant-wide pages of their own tenant but none of this tenant's objects (404).
    let pages: [(&str, [u16; 5]); 8] = [
        ("/agent/bulk", [200, 200, 403, 403, 200]),
        ("/agent", [200, 200, 200, 200, 200]),
        ("/agent/deliveries", [200, 200, 403, 403, 200]),
        ("/agent/deliveries/new", [200, 200, 403, 403, 200]),
        (&delivery, [200, 200, 403, 403, 404]),
        ("/agent/admin/agents", [200, 403, 403, 403, 200]),
        (&member, [200, 403, 403, 403, 404]),
        ("/agent/admin/departments", [200, 403, 403, 403, 200]),
    ];
    let browsers = [&admin, &agent, &official, &distributor, &stranger];
    for (path, expected) in pages {
        for (browser, status) in browsers.iter().zip(expected) {
            let answer = browser.get(path).await;
            assert_eq!(answer.status().as_u16(), status, "GET {path}");
        }
        let answer = anonymous
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::SEE_OTHER,
            "anonymous GET {path}"
        );
        assert_eq!(location(&answer), "/agent/login");
    }

    // Forms: refused by role before anything changes, and by tenant as not found.
    let withdraw = format!("{delivery}/withdraw");
    let department_form = format!("/agent/admin/departments/{department}");
    for browser in [&official, &distributor] {
        let csrf = browser.csrf().await;
        for path in [
            withdraw.as_str(),
            "/agent/admin/agents",
            member.as_str(),
            "/agent/admin/departments",
            department_form.as_str(),
        ] {
            let answer = browser
                .post(path, &[("csrf", &csrf), ("reason", "x"), ("name", "x")])
                .await;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "POST {path}");
        }
    }
    let csrf = agent.csrf().await;
    for path in [
        "/agent/admin/agents",
        member.as_str(),
        department_form.as_str(),
    ] {
        let answer = agent.post(path, &[("csrf", &csrf), ("name", "x")]).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "agent POST {path}");
    }
    let csrf = stranger.csrf().await;
    for path in [withdraw.as_str(), member.as_str(), department_form.as_str()] {
        let answer = stranger
            .post(
                path,
                &[
                    ("csrf", &csrf),
                    ("reason", "x"),
                    ("name", "x"),
                    ("role", "agent"),
                ],
            )
            .await;
        assert_eq!(
            answer.status(),
            StatusCode::NOT_FOUND,
            "stranger POST {path}"
        );
    }
    // Nothing was changed by any of the refused requests.
    let status = admin.get(&delivery).await.text().await.unwrap();
    assert!(!status.contains("Motif du retrait"), "{status}");
}

#[tokio::test]
async fn an_agent_delivers_from_the_form_and_follows_it() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    app.department("finances").await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &["etat-civil"])
        .await;
    let csrf = agent.csrf().await;

    // The form lists only the agent's departments.
    let form = agent
        .get("/agent/deliveries/new")
        .await
        .text()
        .await
        .unwrap();
    assert!(form.contains("value=\"etat-civil\"") && !form.contains("value=\"finances\""));

    // Bad input: the form comes back with the fields kept and nothing is stored.
    let bad_date = post_delivery(
        &agent,
        delivery_form(&csrf, "31/02/1980x", Some(document_bytes(500, 1))),
    )
    .await;
    assert_eq!(bad_date.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad_date.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("value=\"Dupont\""));
    let no_file = post_delivery(&agent, delivery_form(&csrf, "1980-02-29", None)).await;
    assert_eq!(no_file.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let empty = post_delivery(&agent, delivery_form(&csrf, "1980-02-29", Some(Vec::new()))).await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let forged = post_delivery(
        &agent,
        delivery_form("forged", "1980-02-29", Some(document_bytes(500, 1))),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.document_rows().await, 0);

    let delivered = post_delivery(
        &agent,
        delivery_form(&csrf, "1980-02-29", Some(document_bytes(40_000, 9))),
    )
    .await;
    assert_eq!(delivered.status(), StatusCode::SEE_OTHER);
    let detail_path = location(&delivered);
    assert!(detail_path.starts_with("/agent/deliveries/"));
    let detail = agent.get(&detail_path).await.text().await.unwrap();
    assert!(
        detail.contains("stocké") || detail.contains("avis envoyé"),
        "{detail}"
    );
    // The agent's pages never show the title, the recipient or the contact.
    assert!(!detail.contains("hérédité") && !detail.contains("Dupont"));
    assert!(!detail.contains("marie@example.org"));
    // The email notice is waiting for the coalescing window to close.
    assert!(
        detail.contains("courriel") && detail.contains("en attente"),
        "{detail}"
    );
    assert_eq!(app.document_rows().await, 1);

    // The list, with filters.
    let list = agent.get("/agent/deliveries").await.text().await.unwrap();
    assert!(list.contains(&detail_path));
    let withdrawn_only = agent
        .get("/agent/deliveries?state=withdrawn")
        .await
        .text()
        .await
        .unwrap();
    assert!(!withdrawn_only.contains(&detail_path));
    // A page number out of range is refused, never read as the first page.
    for page in ["-1", "abc", "99999999999999999999", "1000001"] {
        let refused = agent.get(&format!("/agent/deliveries?page={page}")).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "page={page}");
        assert!(!refused.text().await.unwrap().contains(&detail_path));
    }
    let past_the_end = agent.get("/agent/deliveries?page=1").await;
    assert_eq!(past_the_end.status(), StatusCode::OK);

    // Withdraw: a reason is required, then it is done once.
    let withdraw = format!("{detail_path}/withdraw");
    let no_reason = agent
        .post(&withdraw, &[("csrf", &csrf), ("reason", "  ")])
        .await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let done = agent
        .post(
            &withdraw,
            &[("csrf", &csrf), ("reason", "Mauvais destinataire")],
        )
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let detail = agent.get(&detail_path).await.text().await.unwrap();
    assert!(detail.contains("Mauvais destinataire"));
    // The notice not yet sent is dropped: nobody is told about a withdrawn document.
    assert!(detail.contains("Aucun avis"), "{detail}");
    let withdrawn_only = agent
        .get("/agent/deliveries?state=withdrawn")
        .await
        .text()
        .await
        .unwrap();
    assert!(withdrawn_only.contains(&detail_path));
}

#[tokio::test]
async fn an_admin_manages_agents_and_departments() {
    let app = spawn_app().await;
    let admin = app
        .agent_browser("admin@mairie.example", Role::Admin, None, &[])
        .await;
    let csrf = admin.csrf().await;

    let created = admin
        .post(
            "/agent/admin/departments",
            &[
                ("csrf", &csrf),
                ("slug", "etat-civil"),
                ("name", "État civil"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let duplicate = admin
        .post(
            "/agent/admin/departments",
            &[("csrf", &csrf), ("slug", "etat-civil"), ("name", "Autre")],
        )
        .await;
    assert_eq!(duplicate.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_slug = admin
        .post(
            "/agent/admin/departments",
            &[("csrf", &csrf), ("slug", "État Civil"), ("name", "x")],
        )
        .await;
    assert_eq!(bad_slug.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let departments = admin
        .get("/agent/admin/departments")
        .await
        .text()
        .await
        .unwrap();
    assert!(departments.contains("État civil"));
    let department_id = departments
        .split("action=\"/agent/admin/departments/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    let new_agent = admin
        .post(
            "/agent/admin/agents",
            &[
                ("csrf", &csrf),
                ("email", "Nouvel.Agent@Mairie.example"),
                ("role", "agent"),
                ("department", &department_id),
            ],
        )
        .await;
    assert_eq!(new_agent.status(), StatusCode::SEE_OTHER);
    let member_path = location(&new_agent);
    let member = admin.get(&member_path).await.text().await.unwrap();
    assert!(member.contains("nouvel.agent@mairie.example"));
    assert!(
        member.contains(&format!("value=\"{department_id}\" checked")),
        "{member}"
    );
    for (email, role) in [
        ("nouvel.agent@mairie.example", "agent"),
        ("pas-une-adresse", "agent"),
        ("x@mairie.example", "root"),
    ] {
        let refused = admin
            .post(
                "/agent/admin/agents",
                &[("csrf", &csrf), ("email", email), ("role", role)],
            )
            .await;
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email} {role}"
        );
    }
    let unknown_department = admin
        .post(
            "/agent/admin/agents",
            &[
                ("csrf", &csrf),
                ("email", "y@mairie.example"),
                ("role", "agent"),
                ("department", "nope"),
            ],
        )
        .await;
    assert_eq!(
        unknown_department.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let agents = admin.get("/agent/admin/agents").await.text().await.unwrap();
    assert!(
        !agents.contains("y@mairie.example"),
        "a refused creation leaves nothing"
    );

    // Promote, then disable the new agent; the admin cannot lock themselves out.
    let disabled = admin
        .post(
            &member_path,
            &[("csrf", &csrf), ("role", "official"), ("disabled", "on")],
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let member = admin.get(&member_path).await.text().await.unwrap();
    assert!(member.contains("value=\"official\" selected"));
    assert!(member.contains("id=\"disabled\" name=\"disabled\" checked"));
    let own = format!("/agent/admin/agents/{}", admin.agent_id);
    let demoted = admin
        .post(&own, &[("csrf", &csrf), ("role", "agent")])
        .await;
    assert_eq!(demoted.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Archive the department: it stays listed, and receives no new documents.
    let archived = admin
        .post(
            &format!("/agent/admin/departments/{department_id}"),
            &[("csrf", &csrf), ("name", "État civil"), ("archived", "on")],
        )
        .await;
    assert_eq!(archived.status(), StatusCode::SEE_OTHER);
    let form = admin
        .get("/agent/deliveries/new")
        .await
        .text()
        .await
        .unwrap();
    assert!(!form.contains("value=\"etat-civil\""));
}

#[tokio::test]
async fn an_agent_delivers_in_bulk_from_the_browser_and_reads_the_report() {
    let app = spawn_app().await;
    app.department("impots").await;
    let agent = app
        .agent_browser("agent@mairie.example", Role::Agent, None, &["impots"])
        .await;
    let csrf = agent.csrf().await;
    let manifest = "file;title;category;family_name;given_names;birthdate;birthplace;email\n\
        a.pdf;Avis A;impots;Martin;Paul;1970-01-02;75056;paul@example.org\n\
        b.pdf;Avis B;impots;Martin;Luc;02/03/1971;75056;\n\
        c.pdf;Avis C;impots;Martin;Léa;1972-13-45;75056;\n\
        d.pdf;Avis D;impots;Martin;Noé;1973-01-01;75056;\n";
    let form = |csrf: &str| {
        Form::new()
            .text("csrf", csrf.to_owned())
            .part(
                "manifest",
                Part::bytes(manifest.as_bytes().to_vec()).file_name("envoi.csv"),
            )
            // A file input left empty: no name, no content.
            .part("archive", Part::bytes(Vec::new()).file_name(""))
            .part(
                "file",
                Part::bytes(document_bytes(2_000, 1)).file_name("a.pdf"),
            )
            .part(
                "file",
                Part::bytes(document_bytes(2_000, 2)).file_name("b.pdf"),
            )
            .part(
                "file",
                Part::bytes(document_bytes(2_000, 3)).file_name("c.pdf"),
            )
    };
    let forged = agent
        .client
        .post(format!("{}/agent/bulk", agent.base))
        .multipart(form("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let started = agent
        .client
        .post(format!("{}/agent/bulk", agent.base))
        .multipart(form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let job = location(&started);
    let mut finished = false;
    for _ in 0..100 {
        let progress: serde_json::Value = agent
            .get(&format!("{job}/progress"))
            .await
            .json()
            .await
            .unwrap();
        if progress["finished"] == true {
            assert_eq!(progress["delivered"], 2);
            assert_eq!(progress["refused"], 2);
            finished = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(finished);
    let report = agent.get(&job).await.text().await.unwrap();
    assert!(report.contains("birthdate"), "{report}");
    assert!(report.contains("/agent/deliveries/"));
    assert!(!report.contains("Martin") && !report.contains("Avis A"));
    assert_eq!(app.document_rows().await, 2);
    let listed = agent.get("/agent/bulk").await.text().await.unwrap();
    assert!(listed.contains(&job));

    // Without a manifest, the form says so.
    let empty = agent
        .client
        .post(format!("{}/agent/bulk", agent.base))
        .multipart(
            Form::new()
                .text("csrf", csrf.clone())
                .part("manifest", Part::bytes(Vec::new()).file_name("")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
