//! The periodic cleanup purges what has expired and keeps what still lives, and of
//! several instances racing for it, exactly one runs it.

use crate::common::{TestApp, spawn_app};
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use eguichet::agents::{self, Agent, AgentEmail, Role, TokenName, TokenRequest};
use eguichet::audit::Actor;
use eguichet::auth::sessions::{self, FlowPurpose, SessionKind};
use eguichet::cleanup::{self, CleanupOutcome, CleanupPolicy, CleanupReport};
use eguichet::db::lease::{self, CLEANUP_LEASE};
use eguichet::db::schema::{
    agent_pending_logins, agent_tenant_choices, api_tokens, auth_flows, login_failures_by_address,
    sessions as sessions_table, voucher_scan_failures, voucher_scan_requests,
};
use eguichet::db::{Conn, DbError};
use eguichet::vouchers::scan_requests::issue_form_token;

async fn create_agent(app: &TestApp) -> Agent {
    let tenant = app.state.default_tenant.clone();
    app.state
        .db
        .write(move |conn| {
            agents::create_agent(
                conn,
                &tenant,
                &AgentEmail::parse("voirie@mairie.example").unwrap(),
                Role::Agent,
                None,
                Actor::Operator,
            )
        })
        .await
        .unwrap()
}

/// A login redirect that expires at `expires_at`.
fn flow(conn: &mut Conn, expires_at: NaiveDateTime) -> Result<(), DbError> {
    let state = sessions::new_secret();
    sessions::record_flow(
        conn,
        FlowPurpose::Login,
        &state,
        &sessions::new_secret(),
        "demo",
        "nonce",
        None,
    )?;
    diesel::update(auth_flows::table.find(sessions::hash_secret(&state)))
        .set(auth_flows::expires_at.eq(expires_at))
        .execute(conn)?;
    Ok(())
}

/// A session of `kind`, last seen at `last_seen_at`, ending at `expires_at`.
fn session(
    conn: &mut Conn,
    policy: &CleanupPolicy,
    kind: SessionKind,
    subject: &str,
    last_seen_at: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> Result<(), DbError> {
    let opened = sessions::open_session(conn, policy.citizen_sessions, kind, subject, None, None)?;
    diesel::update(sessions_table::table.find(&opened.session.id_hash))
        .set((
            sessions_table::last_seen_at.eq(last_seen_at),
            sessions_table::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// A token of `agent`, revoked at `revoked_at`, expiring at `expires_at`.
fn token(
    conn: &mut Conn,
    agent: &Agent,
    name: &str,
    revoked_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
) -> Result<(), agents::AgentError> {
    let request = TokenRequest {
        name: TokenName::parse(name).unwrap(),
        expires_at,
    };
    let issued = agents::issue_api_token(conn, agent, &request, Actor::Operator)?;
    diesel::update(api_tokens::table.find(&issued.id))
        .set(api_tokens::revoked_at.eq(revoked_at))
        .execute(conn)?;
    Ok(())
}

async fn counts(app: &TestApp) -> [i64; 8] {
    app.state
        .db
        .read(|conn| -> Result<[i64; 8], DbError> {
            Ok([
                auth_flows::table.count().get_result(conn)?,
                sessions_table::table.count().get_result(conn)?,
                api_tokens::table.count().get_result(conn)?,
                agent_pending_logins::table.count().get_result(conn)?,
                agent_tenant_choices::table.count().get_result(conn)?,
                login_failures_by_address::table.count().get_result(conn)?,
                voucher_scan_failures::table.count().get_result(conn)?,
                voucher_scan_requests::table.count().get_result(conn)?,
            ])
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cleanup_removes_expired_rows_and_keeps_live_ones() {
    let app = spawn_app().await;
    let agent = create_agent(&app).await;
    let policy = CleanupPolicy::from_config(&app.state.config);
    let now = eguichet::now();
    let ago = move |minutes: i64| now - TimeDelta::minutes(minutes);
    let later = move |minutes: i64| now + TimeDelta::minutes(minutes);
    let day = 24 * 60;
    let tenant_id = agent.tenant_id.clone();
    let who = agent.clone();
    let keys = app.state.keys.clone();
    app.state
        .db
        .write(move |conn| -> Result<(), agents::AgentError> {
            // Pending logins: one expired, one live.
            flow(conn, ago(1))?;
            flow(conn, later(9))?;
            // Sessions: past their end; idle too long (citizen 15 min, agent 30 min);
            // live ones of both kinds.
            session(conn, &policy, SessionKind::Citizen, "c1", ago(1), ago(1))?;
            session(
                conn,
                &policy,
                SessionKind::Citizen,
                "c2",
                ago(16),
                later(600),
            )?;
            session(
                conn,
                &policy,
                SessionKind::Agent,
                &who.id,
                ago(31),
                later(600),
            )?;
            session(
                conn,
                &policy,
                SessionKind::Citizen,
                "c3",
                ago(5),
                later(600),
            )?;
            session(
                conn,
                &policy,
                SessionKind::Agent,
                &who.id,
                ago(20),
                later(600),
            )?;
            // Tokens: revoked or expired more than 90 days ago go; revoked or expired
            // recently, and live ones, stay (listed as such).
            token(conn, &who, "vieux révoqué", Some(ago(91 * day)), None)?;
            token(conn, &who, "vieux expiré", None, Some(ago(91 * day)))?;
            token(conn, &who, "révoqué hier", Some(ago(day)), None)?;
            token(conn, &who, "expiré hier", None, Some(ago(day)))?;
            token(conn, &who, "actif", None, Some(later(day)))?;
            token(conn, &who, "sans fin", None, None)?;
            // Half-finished agent logins and tenant choices.
            for (id, expires_at) in [("p1", ago(1)), ("p2", later(5))] {
                diesel::insert_into(agent_pending_logins::table)
                    .values((
                        agent_pending_logins::id_hash.eq(id),
                        agent_pending_logins::agent_id.eq(&who.id),
                        agent_pending_logins::attempts.eq(0),
                        agent_pending_logins::created_at.eq(ago(10)),
                        agent_pending_logins::expires_at.eq(expires_at),
                    ))
                    .execute(conn)?;
            }
            for (id, expires_at) in [("t1", ago(1)), ("t2", later(5))] {
                diesel::insert_into(agent_tenant_choices::table)
                    .values((
                        agent_tenant_choices::id_hash.eq(id),
                        agent_tenant_choices::agent_ids.eq(&who.id),
                        agent_tenant_choices::provider_id.eq("proconnect"),
                        agent_tenant_choices::id_token.eq("x"),
                        agent_tenant_choices::expires_at.eq(expires_at),
                    ))
                    .execute(conn)?;
            }
            // Failed-login windows (15 minutes): one closed, one open.
            for (address, started) in [("a1", ago(16)), ("a2", ago(5))] {
                diesel::insert_into(login_failures_by_address::table)
                    .values((
                        login_failures_by_address::address_hash.eq(address),
                        login_failures_by_address::failures.eq(3),
                        login_failures_by_address::window_started_at.eq(started),
                    ))
                    .execute(conn)?;
            }
            // Refused scans: one older than a day, one recent.
            for (id, at) in [("s1", ago(day + 1)), ("s2", ago(30))] {
                diesel::insert_into(voucher_scan_failures::table)
                    .values((
                        voucher_scan_failures::id.eq(id),
                        voucher_scan_failures::tenant_id.eq(&tenant_id),
                        voucher_scan_failures::agent_id.eq(&who.id),
                        voucher_scan_failures::reason.eq("limited:unknown"),
                        voucher_scan_failures::at.eq(at),
                    ))
                    .execute(conn)?;
            }
            // Scan-form tokens (12 hours): one issued yesterday, one just now.
            for issued_at in [ago(13 * 60), now] {
                issue_form_token(conn, &keys.hasher, &tenant_id, &who.id, "site", issued_at)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(counts(&app).await, [2, 5, 6, 2, 2, 2, 2, 2]);

    let outcome = cleanup::run_cleanup(&app.state.db, policy, now)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CleanupOutcome::Done(CleanupReport {
            pending_logins: 1,
            sessions: 3,
            api_tokens: 2,
            agent_pending_logins: 1,
            agent_tenant_choices: 1,
            login_failure_windows: 1,
            voucher_scan_failures: 1,
            voucher_scan_requests: 1,
            vault_ceremonies: 0,
        })
    );
    assert_eq!(counts(&app).await, [1, 2, 4, 1, 1, 1, 1, 1]);
    let who = agent.id.clone();
    let names: Vec<String> = app
        .state
        .db
        .read(move |conn| agents::api_tokens::list_api_tokens(conn, &who, now))
        .await
        .unwrap()
        .into_iter()
        .map(|token| token.name)
        .collect();
    for kept in ["révoqué hier", "expiré hier", "actif", "sans fin"] {
        assert!(names.iter().any(|name| name == kept), "{kept}: {names:?}");
    }
    // Nothing more to do right after.
    let again = cleanup::run_cleanup(&app.state.db, policy, now)
        .await
        .unwrap();
    assert_eq!(again, CleanupOutcome::Done(CleanupReport::default()));
}

#[tokio::test]
async fn of_instances_racing_for_the_cleanup_exactly_one_runs_it() {
    let app = spawn_app().await;
    let now = eguichet::now();
    // Eight instances reach for the lease at the same instant.
    let attempts = futures::future::join_all((0..8).map(|i| {
        let db = app.state.db.clone();
        async move {
            db.write(move |conn| {
                lease::take_lease(
                    conn,
                    CLEANUP_LEASE,
                    &format!("instance-{i}"),
                    now,
                    TimeDelta::minutes(10),
                )
            })
            .await
            .unwrap()
        }
    }))
    .await;
    assert_eq!(attempts.iter().filter(|taken| **taken).count(), 1);
    let holder = format!(
        "instance-{}",
        attempts.iter().position(|taken| *taken).unwrap()
    );

    // While it runs, another instance's cleanup does nothing.
    let policy = CleanupPolicy::from_config(&app.state.config);
    assert_eq!(
        cleanup::run_cleanup(&app.state.db, policy, now)
            .await
            .unwrap(),
        CleanupOutcome::Skipped
    );
    // Someone else's release gives nothing back; the holder's does.
    let (other, mine) = (String::from("instance-x"), holder.clone());
    app.state
        .db
        .write(move |conn| lease::release_lease(conn, CLEANUP_LEASE, &other, now))
        .await
        .unwrap();
    assert_eq!(
        cleanup::run_cleanup(&app.state.db, policy, now)
            .await
            .unwrap(),
        CleanupOutcome::Skipped
    );
    app.state
        .db
        .write(move |conn| lease::release_lease(conn, CLEANUP_LEASE, &mine, now))
        .await
        .unwrap();
    assert!(matches!(
        cleanup::run_cleanup(&app.state.db, policy, now)
            .await
            .unwrap(),
        CleanupOutcome::Done(_)
    ));
    // An instance that died holding it is not waited for past the lease.
    let (dead, later) = (String::from("dead"), now + TimeDelta::minutes(1));
    app.state
        .db
        .write(move |conn| {
            lease::take_lease(conn, CLEANUP_LEASE, &dead, later, TimeDelta::minutes(10))
        })
        .await
        .unwrap();
    assert_eq!(
        cleanup::run_cleanup(&app.state.db, policy, later)
            .await
            .unwrap(),
        CleanupOutcome::Skipped
    );
    assert!(matches!(
        cleanup::run_cleanup(&app.state.db, policy, later + TimeDelta::minutes(11))
            .await
            .unwrap(),
        CleanupOutcome::Done(_)
    ));
}
