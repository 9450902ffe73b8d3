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

impl AppState {
    /// Connects, migrates, opens the keys and ensures the default tenant exists.
    /// Blocking: call it before the async server starts, or from `spawn_blocking`.
    pub fn open(config: Config) -> Result<Self, StartError> {
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
        let slug =
            Slug::parse(&config.tenant.slug).map_err(|e| StartError::Config(e.to_string()))?;
        let name = config.tenant.name.clone();
        let default_tenant =
            db.write_blocking(|conn| tenants::ensure_tenant(conn, &slug, &name))?;
        let password_queue = PasswordQueue::from_config(&config.limits);
        Ok(Self {
            password_queue,
            config: Arc::new(config),
            db,
            storage,
            keys: Arc::new(keys),
            default_tenant,
        })
    }
}
