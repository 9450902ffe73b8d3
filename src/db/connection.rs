//! Connections to either engine. The backend is picked from the URL scheme, never by
//! trial: diesel's SQLite driver accepts any string as a file name, so a mistyped
//! PostgreSQL URL would otherwise silently create a new, empty SQLite database.

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

/// One connection to whichever engine is configured.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// The two supported engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database URL whose scheme has been checked.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (relative or absolute) or `sqlite::memory:`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, passed to libpq as is.
    Postgres(String),
}

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error(
        "database.url must start with sqlite:// (embedded file) or postgres:// (server), got {scheme:?}"
    )]
    UnknownScheme { scheme: String },
    #[error("database.url sqlite:// needs a file path, e.g. sqlite://./data/eguichet.db")]
    MissingPath,
    #[error("cannot open the SQLite database: {0}")]
    Open(ConnectionError),
    #[error("cannot create the directory of the SQLite database {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the SQLite database {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DatabaseUrl {
    /// Parses a URL; anything but `sqlite://` or `postgres(ql)://` is an error.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DatabaseUrlError::MissingPath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        // Only the scheme is echoed back: the rest may hold a password.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(DatabaseUrlError::UnknownScheme {
            scheme: scheme.to_owned(),
        })
    }

    /// Which engine the URL names.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Creates the directory of an embedded database so the first start just works,
    /// and switches the file to WAL mode (readers proceed while one writer commits).
    /// This is persistent, and done once here rather than by every pooled connection,
    /// which would contend for the lock when the pool opens.
    pub fn prepare(&self) -> Result<(), DatabaseUrlError> {
        let Self::Sqlite(path) = self else {
            return Ok(());
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir).map_err(|source| {
                DatabaseUrlError::Directory {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
        }
        // Created here, owner only, before SQLite creates it with the umask's mode; its
        // write-ahead log and shared-memory files copy that mode.
        crate::private_files::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| DatabaseUrlError::File {
                path: path.clone(),
                source,
            })?;
        let mut conn = self.establish().map_err(DatabaseUrlError::Open)?;
        conn.batch_execute("PRAGMA journal_mode = WAL;")
            .map_err(|error| {
                DatabaseUrlError::Open(ConnectionError::CouldntSetupConfiguration(error))
            })
    }

    /// Opens one connection, configured for our use.
    pub fn establish(&self) -> Result<AnyConnection, ConnectionError> {
        match self {
            Self::Postgres(url) => Ok(AnyConnection::Postgresql(PgConnection::establish(url)?)),
            Self::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // Foreign keys are off by default in SQLite, per connection; the busy
                // timeout makes a second process (the CLI next to a running server)
                // wait its turn. WAL mode is set once per file, in `prepare`.
                // `secure_delete` zeroes what a deletion frees, so a withdrawn
                // document's header and sealed metadata do not linger in free space.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000;
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA secure_delete = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

/// The r2d2 manager: opens connections from a checked URL.
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

impl ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        self.url
            .establish()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_backend() {
        let sqlite = DatabaseUrl::parse("sqlite://./data/e.db").unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        let pg = DatabaseUrl::parse("postgres://u@localhost/db").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        let pg = DatabaseUrl::parse("postgresql://u@localhost/db").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
    }

    #[test]
    fn mistyped_url_is_an_error_not_a_new_file() {
        for url in [
            "postgress://u:pw@h/db",
            "./data/e.db",
            "mysql://x",
            "sqlite:/x",
        ] {
            let error = DatabaseUrl::parse(url).err().unwrap();
            assert!(!error.to_string().contains("pw"), "{error}");
        }
        assert!(matches!(
            DatabaseUrl::parse("sqlite://"),
            Err(DatabaseUrlError::MissingPath)
        ));
    }
}
