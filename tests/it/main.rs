//! The integration suite, as one test binary (linking one binary instead of one per
//! file is most of a warm `cargo test` on two cores). Each module starts the real
//! server (`common::spawn_app`) and drives it over HTTP, the command line or the
//! library, on the embedded defaults or, when `TEST_DATABASE_URL` and `TEST_S3_*` say
//! so, on PostgreSQL and a real S3 server.

#![allow(
    clippy::unwrap_used,
    reason = "tests and their harness fail loudly on the first surprise"
)]

mod common;

mod agent_login;
mod agent_pages;
mod audit_chain;
mod bulk;
mod cleanup;
mod command_line;
mod dashboard;
mod data_at_rest;
mod delivery;
mod demo_idp;
mod interop;
mod login;
mod notify;
mod notify_restart;
mod operations;
mod org_chart;
mod provider_errors;
mod sender_encryption;
mod sessions_and_tokens;
mod vault_lock;
mod voucher_letters;
mod vouchers;
