//! Everything a running instance (server or command) holds: configuration, database
//! pool, object store, keys and the default tenant. Opening it migrates the database
//! and creates what a first start needs.

use std::sync::Arc;

use crate::agents::password_queue::PasswordQueue;
use crate::config::Config;
use crate::db::{self, Database, DbError};
use crate::keys::{KeyError, Keyring};
use crate::storage::{Storage, StorageError};
use crate::tenants::{self, Slug, Tenant};

/// Shared, cheaply cloned handles to the instance's resources.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub storage: Storage,
    pub keys: Arc<Keyring>,
    pub default_tenant: Tenant,
    /// Bounds the password checks running at once (argon2's memory).
    pub password_queue: PasswordQueue,
    /// The relying party of locked vaults' passkeys.
    pub passkeys: Arc<crate::vault::passkeys::VaultWebauthn>,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("object store: {0}")]
    Storage(#[from] StorageError),
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Config(String),
}

/// Refuses to start a command (anything but `serve`) on a portal that is not there:
/// run from the wrong directory, it would otherwise create a new, empty portal beside
/// the real one, and an agent created in it could never log in. Names the directory it
/// looked at, as an absolute path, so the operator sees where they are.
pub fn require_existing_instance(config: &Config) -> Result<(), StartError> {
    let missing = |what: &str, dir: &std::path::Path| {
        let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Err(StartError::Config(format!(
            "{what} {} does not exist: no portal there. Run the command where `eguichet serve` \
             runs, or point it at the portal with --config, EGUICHET_CONFIG or EGUICHET_DATA_DIR \
             (only `eguichet serve` creates a new portal)",
            shown.display()
        )))
    };
    if !config.data_dir.is_dir() {
        return missing("data directory", &config.data_dir);
    }
    if let Ok(db::DatabaseUrl::Sqlite(path)) =
        db::DatabaseUrl::parse(secrecy::ExposeSecret::expose_secret(&config.database_url()))
        && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return missing("database directory", dir);
    }
    Ok(())
}

/// Production keeps the database, the documents, the keys and the audit anchors to
/// the service's own user, as it does for the master key file.
fn refuse_directories_open_to_others(config: &Config) -> Result<(), StartError> {
    let mut directories = vec![config.data_dir.clone()];
    if config.storage.backend == crate::config::StorageBackend::Local {
        directories.push(config.local_blob_dir());
    }
    for dir in directories.iter().filter(|dir| dir.exists()) {
        let open = crate::private_files::is_open_to_others(dir)
            .map_err(|error| StartError::Config(format!("{}: {error}", dir.display())))?;
        if open {
            return Err(StartError::Config(format!(
                "{} is open to other users of the machine; in production it must be the \
                 service's alone: chmod 700 {}",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

impl AppState {
    /// Connects, migrates, opens the keys and ensures the default tenant exists.
    /// Blocking: call it before the async server starts, or from `spawn_blocking`.
    pub fn open(config: Config) -> Result<Self, StartError> {
        if config.mode == crate::config::Mode::Production {
            refuse_directories_open_to_others(&config)?;
        }
        let db = Database::connect(
            &config.database_url(),
            config.database.pool_size.unwrap_or(10),
        )?;
        let applied = db::run_migrations(&mut *db.get_blocking()?)?;
        if applied > 0 {
            tracing::info!(migrations.applied = applied, "database migrated");
        }
        if db.write_blocking(crate::dashboard::refill::fill_if_new)? {
            tracing::info!("dashboard counters filled from the stored data");
        }
        let storage = Storage::from_config(&config)?;
        let keys = Keyring::open(&config, &db)?;
        let chain_key = keys.hasher.derive_key(crate::audit::CHAIN_KEY_INFO);
        db.set_audit_chain_key(chain_key.clone());
        if let Some(report) =
            db.write_blocking(|conn| crate::audit::rechain_unkeyed_events(conn, &chain_key))?
        {
            match report.broken_at {
                None => tracing::info!(
                    audit.events = report.events,
                    "audit log re-chained under the installation's key"
                ),
                Some(seq) => tracing::warn!(
                    audit.events = report.events,
                    audit.broken_at = seq,
                    "audit log re-chained under the installation's key; its plain chain was already broken"
                ),
            }
        }
        let slug =
            Slug::parse(&config.tenant.slug).map_err(|e| StartError::Config(e.to_string()))?;
        let name = config.tenant.name.clone();
        let default_tenant =
            db.write_blocking(|conn| tenants::ensure_tenant(conn, &slug, &name))?;
        let password_queue = PasswordQueue::from_config(&config.limits);
        let passkeys = crate::vault::passkeys::VaultWebauthn::from_config(&config)
            .map_err(StartError::Config)?;
        Ok(Self {
            password_queue,
            passkeys: Arc::new(passkeys),
            config: Arc::new(config),
            db,
            storage,
            keys: Arc::new(keys),
            default_tenant,
        })
    }
}
