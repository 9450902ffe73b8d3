//! e-guichet: documents from the commune, encrypted on arrival, waiting in each
//! citizen's vault. The library holds everything; `main.rs` only parses the command line.

pub mod agents;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod citizens;
pub mod cleanup;
pub mod config;
pub mod crypto;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod keys;
pub mod local_time;
pub mod notify;
pub mod private_files;
pub mod spreadsheet;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tenants;
pub mod vault;
pub mod vouchers;
pub mod web;

/// The current UTC time, truncated to microseconds: both engines store that
/// precision, so a value reads back exactly as written (the audit chain hashes it).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now().naive_utc();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

/// A new random identifier (UUID v4, as text in both engines).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
