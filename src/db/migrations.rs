//! Embedded migrations, one tree per engine, applied at start and by `eguichet migrate`.

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{AnyConnection, DbError};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Applies every pending migration; returns how many ran.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<usize, DbError> {
    let applied = match conn {
        AnyConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE).map(|v| v.len()),
        AnyConnection::Postgresql(conn) => conn.run_pending_migrations(POSTGRES).map(|v| v.len()),
    };
    applied.map_err(|error| DbError::Migration(error.to_string()))
}

/// Reverts every migration (used by the round-trip test).
pub fn revert_all_migrations(conn: &mut AnyConnection) -> Result<(), DbError> {
    let reverted = match conn {
        AnyConnection::Sqlite(conn) => conn.revert_all_migrations(SQLITE).map(|_| ()),
        AnyConnection::Postgresql(conn) => conn.revert_all_migrations(POSTGRES).map(|_| ()),
    };
    reverted.map_err(|error| DbError::Migration(error.to_string()))
}
