//! The org chart decides what an agent reaches: they deliver for, and follow the
//! deliveries of, their own departments; admins reach the whole tenant; another
//! tenant reaches nothing. Withdrawing a document is scoped the same way.

use crate::common::{error_code, marie, metadata, spawn_app};
use eguichet::agents::Role;
use eguichet::db::schema::{audit_events, documents};
use eguichet::tenants;
use serde_json::{Value, json};

fn addressed(department: Option<&str>) -> Value {
    let mut body = metadata(marie(), "Acte de naissance");
    if let Some(department) = department {
        body["department"] = json!(department);
    }
    body
}

#[tokio::test]
async fn agents_deliver_only_for_their_departments() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    app.department("finances").await;
    app.department("urbanisme").await;
    let civil = app
        .agent_token_for("civil@mairie.example", Role::Agent, &["etat-civil"])
        .await;
    let both = app
        .agent_token_for(
            "polyvalent@mairie.example",
            Role::Agent,
            &["etat-civil", "finances"],
        )
        .await;
    let admin = app.agent_token("admin@mairie.example", Role::Admin).await;

    let own = app
        .deliver(&civil)
        .metadata(addressed(Some("etat-civil")))
        .send()
        .await;
    assert_eq!(own.status(), 201);
    let other = app
        .deliver(&civil)
        .metadata(addressed(Some("finances")))
        .send()
        .await;
    assert_eq!(error_code(other, 403).await, "department_not_allowed");

    // With one department, it is implied; with two, the agent must choose.
    let implied: Value = app
        .deliver(&civil)
        .metadata(addressed(None))
        .send()
        .await
        .json()
        .await
        .unwrap();
    let status: Value = app
        .status(&civil, implied["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["department"], "etat-civil");
    let ambiguous = app.deliver(&both).metadata(addressed(None)).send().await;
    assert_eq!(error_code(ambiguous, 422).await, "department_required");

    // Admins deliver for any department, or none.
    for department in [Some("urbanisme"), None] {
        let response = app
            .deliver(&admin)
            .metadata(addressed(department))
            .send()
            .await;
        assert_eq!(response.status(), 201);
    }

    // An archived department receives nothing new.
    let tenant_id = app.state.default_tenant.id.clone();
    app.state
        .db
        .write(move |conn| {
            let department = tenants::find_department(conn, &tenant_id, "urbanisme")?.unwrap();
            tenants::update_department(
                conn,
                &tenant_id,
                &department.id,
                "Urbanisme",
                true,
                eguichet::audit::Actor::Operator,
            )
        })
        .await
        .unwrap();
    let archived = app
        .deliver(&admin)
        .metadata(addressed(Some("urbanisme")))
        .send()
        .await;
    assert_eq!(error_code(archived, 422).await, "archived_department");
    assert_eq!(app.document_rows().await, 4);
}

#[tokio::test]
async fn agents_follow_only_deliveries_within_their_reach() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    app.department("finances").await;
    let civil = app
        .agent_token_for("civil@mairie.example", Role::Agent, &["etat-civil"])
        .await;
    let finances = app
        .agent_token_for("finances@mairie.example", Role::Agent, &["finances"])
        .await;
    let colleague = app
        .agent_token_for("collegue@mairie.example", Role::Agent, &["etat-civil"])
        .await;
    let admin = app.agent_token("admin@mairie.example", Role::Admin).await;
    let official = app.agent_token("elu@mairie.example", Role::Official).await;
    let elsewhere = app
        .agent_token_in(Some("autre-commune"), "admin@autre.example", Role::Admin)
        .await;

    let response: Value = app
        .deliver(&civil)
        .metadata(addressed(Some("etat-civil")))
        .send()
        .await
        .json()
        .await
        .unwrap();
    let id = response["id"].as_str().unwrap();

    for token in [&civil, &colleague, &admin] {
        assert_eq!(app.status(token, id).await.status(), 200);
    }
    for token in [&finances, &elsewhere] {
        assert_eq!(
            error_code(app.status(token, id).await, 404).await,
            "not_found"
        );
    }
    // An official follows no delivery at all: refused for the role, as on the pages.
    assert_eq!(
        error_code(app.status(&official, id).await, 403).await,
        "forbidden"
    );
}

async fn withdraw(
    app: &crate::common::TestApp,
    token: &str,
    id: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/documents/{id}/withdraw", app.address))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_withdrawal_needs_a_reason_is_audited_and_erases_the_document() {
    let app = spawn_app().await;
    app.department("etat-civil").await;
    app.department("finances").await;
    let civil = app
        .agent_token_for("civil@mairie.example", Role::Agent, &["etat-civil"])
        .await;
    let finances = app
        .agent_token_for("finances@mairie.example", Role::Agent, &["finances"])
        .await;
    let official = app.agent_token("elu@mairie.example", Role::Official).await;
    let response: Value = app
        .deliver(&civil)
        .metadata(addressed(Some("etat-civil")))
        .send()
        .await
        .json()
        .await
        .unwrap();
    let id = response["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_for_stored_objects(1).await, 1);

    for bad in [
        json!({}),
        json!({"reason": "   "}),
        json!({"reason": "x".repeat(501)}),
    ] {
        let refused = withdraw(&app, &civil, &id, bad).await;
        assert!(
            [400, 422].contains(&refused.status().as_u16()),
            "{}",
            refused.status()
        );
    }
    let not_theirs = withdraw(&app, &finances, &id, json!({"reason": "Erreur"})).await;
    assert_eq!(error_code(not_theirs, 404).await, "not_found");
    let not_allowed = withdraw(&app, &official, &id, json!({"reason": "Erreur"})).await;
    assert_eq!(not_allowed.status(), 403);

    let done = withdraw(
        &app,
        &civil,
        &id,
        json!({"reason": "Envoyé par erreur à la mauvaise personne"}),
    )
    .await;
    assert_eq!(done.status(), 200);
    let status: Value = done.json().await.unwrap();
    assert_eq!(status["state"], "withdrawn");
    assert_eq!(
        status["withdrawal_reason"],
        "Envoyé par erreur à la mauvaise personne"
    );
    let again = withdraw(&app, &civil, &id, json!({"reason": "Encore"})).await;
    assert_eq!(error_code(again, 409).await, "already_withdrawn");

    // Nothing readable is left: no payload, no age header, no sealed title.
    assert_eq!(app.wait_for_stored_objects(0).await, 0);
    let lookup = id.clone();
    let (header, sealed, events): (Vec<u8>, Vec<u8>, i64) = app
        .state
        .db
        .read(move |conn| -> Result<_, eguichet::db::DbError> {
            use diesel::prelude::*;
            let (header, sealed) = documents::table
                .find(&lookup)
                .select((documents::age_header, documents::sealed_metadata))
                .first::<(Vec<u8>, Vec<u8>)>(conn)?;
            let events = audit_events::table
                .filter(audit_events::action.eq("document.withdrawn"))
                .filter(audit_events::subject.eq(format!("document:{lookup}")))
                .count()
                .get_result(conn)?;
            Ok((header, sealed, events))
        })
        .await
        .unwrap();
    assert!(header.is_empty() && sealed.is_empty());
    assert_eq!(events, 1);
}
