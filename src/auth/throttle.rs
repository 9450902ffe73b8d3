//! Failed logins counted per client address in the database: a second line of defence
//! behind the per-account lock-out, against one address trying many accounts. Each
//! attempt is reserved (counted as a failure) by one upsert before its password or code
//! is checked, so concurrent attempts count one by one, across instances; an attempt
//! that succeeds gives its reservation back.

use std::net::IpAddr;
use std::time::Duration;

use chrono::TimeDelta;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text, Timestamp};

use crate::crypto::{HashDomain, KeyedHasher};
use crate::db::schema::login_failures_by_address;
use crate::db::{Conn, DbError, sql_on_either_engine};

/// Failed logins one client address may make within the window (a kiosk or an office
/// behind one address has many agents, hence more than one account's share).
pub const LOGIN_FAILURES_PER_ADDRESS: i32 = 30;
/// The window starts at an address's first failure.
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(900);

/// What an address is counted under: a keyed hash, so that no address is stored; an
/// IPv6 client is counted by its /64, which one subscriber usually holds whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressKey(String);

impl AddressKey {
    pub fn of(hasher: &KeyedHasher, address: IpAddr) -> Self {
        let counted = match address.to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
        };
        Self(
            hasher
                .start(HashDomain::ClientAddress)
                .part(&counted)
                .finish(),
        )
    }

    /// The keyed hash itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(QueryableByName)]
struct FailuresRow {
    #[diesel(sql_type = Integer)]
    #[expect(dead_code, reason = "only whether a row came back matters")]
    failures: i32,
}

/// Counts one attempt from `key`, unless the address has used up its failures within
/// the window: one upsert whose `WHERE` refuses past the limit, so that N concurrent
/// attempts count as N. True when the attempt may go on.
pub fn reserve_attempt(conn: &mut Conn, key: &AddressKey) -> Result<bool, DbError> {
    const SQL: &str = "INSERT INTO login_failures_by_address (address_hash, failures, window_started_at) \
         VALUES ($1, 1, $2) \
         ON CONFLICT (address_hash) DO UPDATE SET \
         failures = CASE WHEN login_failures_by_address.window_started_at <= $3 THEN 1 \
             ELSE login_failures_by_address.failures + 1 END, \
         window_started_at = CASE WHEN login_failures_by_address.window_started_at <= $3 THEN $2 \
             ELSE login_failures_by_address.window_started_at END \
         WHERE login_failures_by_address.window_started_at <= $3 \
             OR login_failures_by_address.failures < $4 \
         RETURNING failures";
    let now = crate::now();
    let window_start = now - TimeDelta::from_std(LOGIN_FAILURE_WINDOW).unwrap_or(TimeDelta::MAX);
    forget_old_windows(conn, window_start)?;
    let reserved = sql_on_either_engine!(
        conn,
        SQL,
        FailuresRow,
        get_result,
        (Text, &key.0),
        (Timestamp, now),
        (Timestamp, window_start),
        (Integer, LOGIN_FAILURES_PER_ADDRESS),
    )
    .optional()?;
    Ok(reserved.is_some())
}

/// Gives back the attempt reserved for `key`: it succeeded.
pub fn release_attempt(conn: &mut Conn, key: &AddressKey) -> Result<(), DbError> {
    diesel::update(
        login_failures_by_address::table
            .find(&key.0)
            .filter(login_failures_by_address::failures.gt(0)),
    )
    .set(login_failures_by_address::failures.eq(login_failures_by_address::failures - 1))
    .execute(conn)?;
    Ok(())
}

/// Rows whose window has passed count for nothing: they go (an index range, cheap).
fn forget_old_windows(conn: &mut Conn, window_start: chrono::NaiveDateTime) -> Result<(), DbError> {
    diesel::delete(
        login_failures_by_address::table
            .filter(login_failures_by_address::window_started_at.le(window_start)),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes the addresses whose window has closed at `now`; returns how many went.
pub fn purge_closed_windows(conn: &mut Conn, now: chrono::NaiveDateTime) -> Result<usize, DbError> {
    let window_start = now - TimeDelta::from_std(LOGIN_FAILURE_WINDOW).unwrap_or(TimeDelta::MAX);
    Ok(diesel::delete(
        login_failures_by_address::table
            .filter(login_failures_by_address::window_started_at.le(window_start)),
    )
    .execute(conn)?)
}
