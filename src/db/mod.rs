//! The database: one diesel code base for SQLite (embedded default) and PostgreSQL,
//! a connection pool, and the only way the async server reaches it — closures run on
//! the blocking thread pool, so a query never stalls an HTTP worker.

pub mod chain_key;
mod connection;
pub mod lease;
mod migrations;
pub mod schema;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use diesel::Connection;
use diesel::r2d2::Pool;
use secrecy::{ExposeSecret, SecretString};

pub use connection::{AnyConnection, Backend, ConnectionManager, DatabaseUrl, DatabaseUrlError};
pub use migrations::{revert_all_migrations, run_migrations};

/// A pooled connection.
pub type Conn = AnyConnection;

/// The SQL dialect of `Conn`, for boxed queries that run on either engine.
pub type SqlDialect = <AnyConnection as diesel::Connection>::Backend;

/// Runs one SQL text, written with `$1`-style parameters, on whichever engine `conn`
/// is (SQLite reads `?1` as PostgreSQL reads `$1`), with the same binds on both:
/// `sql_on_either_engine!(conn, sql, Row, get_result, (Text, value), …)`, or
/// `sql_on_either_engine!(conn, sql, execute, …)` for a statement without rows. For
/// the few statements the query builder cannot express on both engines (`RETURNING`
/// from raw SQL, `ON CONFLICT … WHERE`, upserts that add to a counter,
/// engine-specific day arithmetic).
macro_rules! sql_on_either_engine {
    ($conn:expr, $sql:expr, execute $(, ($ty:ty, $value:expr))* $(,)?) => {{
        let sql: &str = &$sql;
        match $conn {
            $crate::db::AnyConnection::Postgresql(pg) => diesel::sql_query(sql)
                $(.bind::<$ty, _>($value))*
                .execute(pg),
            $crate::db::AnyConnection::Sqlite(sqlite) => diesel::sql_query(sql.replace('$', "?"))
                $(.bind::<$ty, _>($value))*
                .execute(sqlite),
        }
    }};
    ($conn:expr, $sql:expr, $row:ty, $load:ident $(, ($ty:ty, $value:expr))* $(,)?) => {{
        let sql: &str = &$sql;
        match $conn {
            $crate::db::AnyConnection::Postgresql(pg) => diesel::sql_query(sql)
                $(.bind::<$ty, _>($value))*
                .$load::<$row>(pg),
            $crate::db::AnyConnection::Sqlite(sqlite) => diesel::sql_query(sql.replace('$', "?"))
                $(.bind::<$ty, _>($value))*
                .$load::<$row>(sqlite),
        }
    }};
}
pub(crate) use sql_on_either_engine;

/// How long a request waits for a pooled connection before the database is
/// reported unavailable (instead of the pool's default 30 s).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server cannot be reached or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A migration could not be applied or reverted.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A query failed.
    #[error(transparent)]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for DbError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::Unavailable(info.message().to_owned()),
            other => DbError::Query(other),
        }
    }
}

impl DbError {
    /// True when the error is a unique constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// The connection pool, shared by every request and background task.
#[derive(Clone)]
pub struct Database {
    pool: Pool<ConnectionManager>,
    backend: Backend,
    /// SQLite allows one writer at a time; serialising our own writers in-process
    /// avoids `database is locked` errors when a deferred transaction tries to
    /// upgrade to a write lock. PostgreSQL needs no such lock.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// The audit chain's key, once the keys are open (see `chain_key`).
    audit_chain_key: Arc<OnceLock<crate::crypto::DerivedKey>>,
}

impl Database {
    /// Opens a pool on `url` (the backend is chosen by the URL scheme).
    pub fn connect(url: &SecretString, pool_size: u32) -> Result<Self, DbError> {
        let url = DatabaseUrl::parse(url.expose_secret())
            .map_err(|error| DbError::Unavailable(error.to_string()))?;
        let backend = url.backend();
        url.prepare()
            .map_err(|error| DbError::Unavailable(error.to_string()))?;
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build(ConnectionManager::new(url))
            .map_err(|error| DbError::Unavailable(error.to_string()))?;
        let sqlite_writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            pool,
            backend,
            sqlite_writer,
            audit_chain_key: Arc::default(),
        })
    }

    /// Gives the pool the audit chain's key: from now on, work run through it can
    /// append to the audit log. Set once; a second key is ignored.
    pub fn set_audit_chain_key(&self, key: crate::crypto::DerivedKey) {
        let _ = self.audit_chain_key.set(key);
    }

    /// The audit chain's key, if the keys are open.
    pub fn audit_chain_key(&self) -> Option<crate::crypto::DerivedKey> {
        self.audit_chain_key.get().cloned()
    }

    /// Which engine this pool talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `work` with a connection on the blocking pool (reads, or single statements
    /// that need no lock ordering).
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let key = self.audit_chain_key();
        run_blocking(move || {
            let _key = chain_key::enter(key);
            let mut conn = checkout(&pool)?;
            work(&mut conn)
        })
        .await
    }

    /// Runs `work` inside one transaction on the blocking pool: all of it commits,
    /// or none of it does.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        let database = self.clone();
        run_blocking(move || database.write_blocking(work)).await
    }

    /// The same as [`Database::write`], for callers already on a blocking thread
    /// (command-line tools).
    pub fn write_blocking<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E>,
        E: From<DbError> + From<diesel::result::Error>,
    {
        let _writer = self
            .sqlite_writer
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let _key = chain_key::enter(self.audit_chain_key());
        let mut pooled = checkout(&self.pool)?;
        let conn: &mut Conn = &mut pooled;
        conn.transaction(work)
    }

    /// Checks out a connection on the current (blocking) thread.
    pub fn get_blocking(&self) -> Result<impl std::ops::DerefMut<Target = Conn>, DbError> {
        checkout(&self.pool)
    }

    /// After secrets were deleted: on SQLite, copies the write-ahead log into the file
    /// (whose freed space `secure_delete` zeroes) and truncates it, so the old pages
    /// holding them leave the disk now rather than whenever the log is reused.
    /// PostgreSQL reclaims dead rows with its own `VACUUM`.
    pub async fn forget_deleted_pages(&self) -> Result<(), DbError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        self.read(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(DbError::from)
        })
        .await
    }

    /// Answers when the database accepts a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.read(|conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map(|_| ())
                .map_err(DbError::from)
        })
        .await
    }
}

fn checkout(
    pool: &Pool<ConnectionManager>,
) -> Result<diesel::r2d2::PooledConnection<ConnectionManager>, DbError> {
    pool.get()
        .map_err(|error| DbError::Unavailable(error.to_string()))
}

/// Runs blocking work on tokio's blocking pool, keeping the caller's tracing span.
async fn run_blocking<T, E, F>(work: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    crate::telemetry::spawn_blocking(work)
        .await
        .map_err(|error| {
            E::from(DbError::Unavailable(format!(
                "database task failed: {error}"
            )))
        })?
}
