//! Leases on periodic work that one instance at a time does when several serve the
//! same database. A lease is a row (seeded by the migration that introduces its work);
//! taking it is one `UPDATE` that only succeeds on an expired lease, so of any number
//! of instances racing, exactly one gets it, on either engine.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::schema::maintenance_leases;
use super::{Conn, DbError};

/// The cleanup of expired logins, sessions and other short-lived rows.
pub const CLEANUP_LEASE: &str = "cleanup";

/// Takes the lease `name` for `holder` until `now + duration`, if nobody holds it at
/// `now`. True when taken.
pub fn take_lease(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: NaiveDateTime,
    duration: TimeDelta,
) -> Result<bool, DbError> {
    let taken = diesel::update(
        maintenance_leases::table
            .find(name)
            .filter(maintenance_leases::expires_at.le(now)),
    )
    .set((
        maintenance_leases::holder.eq(holder),
        maintenance_leases::expires_at.eq(now + duration),
    ))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Gives the lease back early (the work is done), if `holder` still holds it.
pub fn release_lease(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(
        maintenance_leases::table
            .find(name)
            .filter(maintenance_leases::holder.eq(holder)),
    )
    .set(maintenance_leases::expires_at.eq(now))
    .execute(conn)?;
    Ok(())
}
