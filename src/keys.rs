//! The key hierarchy at rest: the master key (outside the database) wraps the server's
//! HMAC key, its contacts key (locked vaults' notification contacts) and every
//! escrowed vault key (inside it). Opening the keyring checks that
//! the master key is the one the database was written with; rotation re-wraps.

use std::path::{Path, PathBuf};

use diesel::prelude::*;
use secrecy::ExposeSecret;

use crate::audit::{self, Actor, AuditEvent};
use crate::citizens::{self, CitizenError};
use crate::config::Config;
use crate::crypto::{
    KeyedHasher, MasterKey, MasterKeyError, MasterKeySource, SealError, VaultIdentity,
};
use crate::db::schema::key_material;
use crate::db::{Conn, Database, DbError};

const HMAC_PURPOSE: &str = "hmac";
const CONTACTS_PURPOSE: &str = "contacts";

/// The keys a running instance holds in memory.
pub struct Keyring {
    pub master: MasterKey,
    pub hasher: KeyedHasher,
    /// Opens the notification contacts of locked vaults (and nothing else).
    pub contacts: VaultIdentity,
}

impl Keyring {
    /// What citizens' records need of these keys.
    pub fn server_keys(&self) -> citizens::ServerKeys<'_> {
        citizens::ServerKeys {
            master: &self.master,
            contacts: &self.contacts,
        }
    }
}

/// Why the keys could not be opened or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(
        "the master key ({loaded}) is not the one this database was written with ({expected}); \
         check keys.master_key_file{hint}"
    )]
    WrongMasterKey {
        loaded: String,
        expected: String,
        hint: String,
    },
    #[error("key material: {0}")]
    Seal(#[from] SealError),
    #[error(
        "the master key comes from the environment: pass --new-key-file to say where the new key goes"
    )]
    NoKeyFile,
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Citizens(#[from] CitizenError),
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for KeyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

impl Keyring {
    /// Loads the master key, then unwraps (or on first start creates) the HMAC key.
    pub fn open(config: &Config, db: &Database) -> Result<Self, KeyError> {
        let (master, source) = MasterKey::load(config)?;
        match &source {
            MasterKeySource::Generated(path) => tracing::warn!(
                key.path = %path.display(),
                "generated a new master key; back this file up now: without it no document can ever be decrypted"
            ),
            MasterKeySource::File(path) => {
                tracing::info!(key.path = %path.display(), "master key loaded")
            }
            MasterKeySource::Environment => {
                tracing::info!("master key loaded from the environment")
            }
        }
        let (hasher, contacts) = db.write_blocking(|conn| -> Result<_, KeyError> {
            let hasher = load_or_create_hmac_key(conn, &master, &source)?;
            let contacts = load_or_create_secret(conn, &master, CONTACTS_PURPOSE, || {
                VaultIdentity::generate()
                    .to_secret_string()
                    .expose_secret()
                    .as_bytes()
                    .to_vec()
            })?;
            let text = std::str::from_utf8(&contacts)
                .map_err(|_| SealError::InvalidKey("stored contacts key is not text".into()))?;
            Ok((hasher, VaultIdentity::parse(text)?))
        })?;
        Ok(Self {
            master,
            hasher,
            contacts,
        })
    }
}

fn load_or_create_hmac_key(
    conn: &mut Conn,
    master: &MasterKey,
    source: &MasterKeySource,
) -> Result<KeyedHasher, KeyError> {
    let stored: Option<(Vec<u8>, String)> = key_material::table
        .find(HMAC_PURPOSE)
        .select((key_material::wrapped, key_material::master_recipient))
        .first(conn)
        .optional()?;
    let master_recipient = master.recipient().to_string();
    if let Some((wrapped, expected)) = stored {
        if expected != master_recipient {
            let hint = match source {
                MasterKeySource::File(path) | MasterKeySource::Generated(path) => {
                    let pending = pending_key_path(path);
                    if pending.exists() {
                        format!(
                            "; an interrupted rotation left the new key in {}",
                            pending.display()
                        )
                    } else {
                        String::new()
                    }
                }
                MasterKeySource::Environment => String::new(),
            };
            return Err(KeyError::WrongMasterKey {
                loaded: master_recipient,
                expected,
                hint,
            });
        }
        let bytes = master.unwrap(&wrapped)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::InvalidKey("stored HMAC key has the wrong length".into()))?;
        return Ok(KeyedHasher::new(key));
    }
    let hasher = KeyedHasher::generate();
    diesel::insert_into(key_material::table)
        .values((
            key_material::purpose.eq(HMAC_PURPOSE),
            key_material::wrapped.eq(master.wrap(hasher.key_bytes())?),
            key_material::master_recipient.eq(&master_recipient),
            key_material::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    Ok(hasher)
}

/// A server secret kept wrapped by the master key under `purpose`, created by
/// `generate` on first start. (The HMAC key is loaded first: it checks that the master
/// key is the database's.)
fn load_or_create_secret(
    conn: &mut Conn,
    master: &MasterKey,
    purpose: &str,
    generate: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, KeyError> {
    let stored: Option<Vec<u8>> = key_material::table
        .find(purpose)
        .select(key_material::wrapped)
        .first(conn)
        .optional()?;
    if let Some(wrapped) = stored {
        return Ok(master.unwrap(&wrapped)?);
    }
    let secret = generate();
    diesel::insert_into(key_material::table)
        .values((
            key_material::purpose.eq(purpose),
            key_material::wrapped.eq(master.wrap(&secret)?),
            key_material::master_recipient.eq(master.recipient().to_string()),
            key_material::created_at.eq(crate::now()),
        ))
        .execute(conn)?;
    Ok(secret)
}

/// Where a rotation writes the new key before the database switches to it.
fn pending_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// What a rotation did.
#[derive(Debug)]
pub struct RotationReport {
    pub citizens: u64,
    pub new_key_file: PathBuf,
    pub previous_key_file: Option<PathBuf>,
}

/// Replaces the master key: writes the new key next to the old one, re-wraps every
/// citizen identity and server key in one transaction, then swaps the files. No
/// document is re-encrypted.
pub fn rotate_master_key(
    config: &Config,
    db: &Database,
    new_key_file: Option<&Path>,
) -> Result<RotationReport, KeyError> {
    let (old, source) = MasterKey::load(config)?;
    let current_file = match &source {
        MasterKeySource::File(path) | MasterKeySource::Generated(path) => Some(path.clone()),
        MasterKeySource::Environment => None,
    };
    let target = match (new_key_file, &current_file) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(current)) => pending_key_path(current),
        (None, None) => return Err(KeyError::NoKeyFile),
    };
    let new = MasterKey::generate();
    new.write_new_file(&target)?;

    let citizens = db.write_blocking(|conn| -> Result<u64, KeyError> {
        let count = citizens::rewrap_vault_identities(conn, &old, &new)?;
        rewrap_server_keys(conn, &old, &new)?;
        audit::record(
            conn,
            AuditEvent::new(Actor::Operator, "keys.master_rotated")
                .details(serde_json::json!({ "citizens": count })),
        )?;
        Ok(count)
    });
    let citizens = match citizens {
        Ok(count) => count,
        Err(error) => {
            // Nothing was re-wrapped: the new key is useless, remove it.
            let _ = std::fs::remove_file(&target);
            return Err(error);
        }
    };

    // The database now needs the new key: put it where the configuration points,
    // keeping the old one beside it (old backups of the database still need it).
    match (new_key_file, current_file) {
        (None, Some(current)) => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let backup = PathBuf::from(format!("{}.{stamp}.old", current.display()));
            let io = |error: std::io::Error| {
                KeyError::Io(format!(
                    "rotation committed, but moving the key files failed ({error}); the new key is in {}",
                    target.display()
                ))
            };
            std::fs::rename(&current, &backup).map_err(io)?;
            std::fs::rename(&target, &current).map_err(io)?;
            Ok(RotationReport {
                citizens,
                new_key_file: current,
                previous_key_file: Some(backup),
            })
        }
        _ => Ok(RotationReport {
            citizens,
            new_key_file: target,
            previous_key_file: None,
        }),
    }
}

fn rewrap_server_keys(conn: &mut Conn, old: &MasterKey, new: &MasterKey) -> Result<(), KeyError> {
    let rows: Vec<(String, Vec<u8>)> = key_material::table
        .select((key_material::purpose, key_material::wrapped))
        .load(conn)?;
    for (purpose, wrapped) in rows {
        let secret = old.unwrap(&wrapped)?;
        diesel::update(key_material::table.find(&purpose))
            .set((
                key_material::wrapped.eq(new.wrap(&secret)?),
                key_material::master_recipient.eq(new.recipient().to_string()),
                key_material::rewrapped_at.eq(crate::now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}
