//! The master key: an age X25519 identity that wraps every citizen's vault key and the
//! server's own keys. It comes from a file or the environment; in demo mode it is
//! generated on first start into the data directory. Lose it and nothing can be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::sealed::{SealError, VaultIdentity, VaultRecipient};
use crate::config::{Config, Mode};

/// Where the master key came from (for the start-up log line).
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    File(PathBuf),
    Environment,
    Generated(PathBuf),
}

/// Why the master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read the master key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the master key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the master key in {origin} is not an age identity (AGE-SECRET-KEY-1…)")]
    Malformed { origin: String },
    #[error(
        "the master key file {path} can be read by other users; run `chmod 600 {path}` (refused in production)"
    )]
    Permissions { path: PathBuf },
}

/// The loaded master key.
pub struct MasterKey {
    identity: VaultIdentity,
    recipient: VaultRecipient,
}

impl MasterKey {
    /// Loads the configured key, or in demo mode generates one on first start.
    pub fn load(config: &Config) -> Result<(Self, MasterKeySource), MasterKeyError> {
        if let Some(secret) = &config.keys.master_key {
            let key = Self::parse(secret.expose_secret(), "EGUICHET_KEYS__MASTER_KEY")?;
            return Ok((key, MasterKeySource::Environment));
        }
        let (path, may_generate) = match &config.keys.master_key_file {
            Some(path) => (path.clone(), false),
            None => (
                config.generated_master_key_path(),
                config.mode == Mode::Demo,
            ),
        };
        if !path.exists() && may_generate {
            let key = Self::generate();
            key.write_new_file(&path)?;
            return Ok((key, MasterKeySource::Generated(path)));
        }
        let key = Self::read_file(&path, config.mode == Mode::Production)?;
        Ok((key, MasterKeySource::File(path)))
    }

    /// A fresh random master key.
    pub fn generate() -> Self {
        Self::from_identity(VaultIdentity::generate())
    }

    fn from_identity(identity: VaultIdentity) -> Self {
        let recipient = identity.recipient();
        Self {
            identity,
            recipient,
        }
    }

    /// Parses the key's text form; `origin` names it in the error.
    pub fn parse(text: &str, origin: &str) -> Result<Self, MasterKeyError> {
        // Key files may carry `# created: …` comment lines, as age-keygen writes them.
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .unwrap_or_default();
        VaultIdentity::parse(line)
            .map(Self::from_identity)
            .map_err(|_| MasterKeyError::Malformed {
                origin: origin.to_owned(),
            })
    }

    /// Reads a key file, refusing one readable by others when `strict`.
    pub fn read_file(path: &Path, strict: bool) -> Result<Self, MasterKeyError> {
        let read_error = |source| MasterKeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        if is_readable_by_others(path).map_err(read_error)? {
            if strict {
                return Err(MasterKeyError::Permissions {
                    path: path.to_path_buf(),
                });
            }
            tracing::warn!(key.path = %path.display(), "master key file is readable by other users");
        }
        Self::parse(&text, &path.display().to_string())
    }

    /// Writes the key to a new file readable by its owner only; never overwrites.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let write_error = |source| MasterKeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir).map_err(write_error)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(write_error)?;
        let text = format!(
            "# e-guichet master key, public part: {}\n# Back this file up: without it no document can ever be decrypted.\n{}\n",
            self.recipient,
            self.identity.to_secret_string().expose_secret()
        );
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error)
    }

    /// The public half, recorded next to what it wraps.
    pub fn recipient(&self) -> &VaultRecipient {
        &self.recipient
    }

    /// Wraps secret bytes (a server key) under the master key.
    pub fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        super::seal(&self.recipient, secret)
    }

    /// Unwraps bytes wrapped by [`MasterKey::wrap`].
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, SealError> {
        super::unseal(&self.identity, wrapped)
    }

    /// Wraps a citizen's vault identity.
    pub fn wrap_identity(&self, identity: &VaultIdentity) -> Result<Vec<u8>, SealError> {
        identity.wrap(&self.recipient)
    }

    /// Unwraps a citizen's vault identity.
    pub fn unwrap_identity(&self, wrapped: &[u8]) -> Result<VaultIdentity, SealError> {
        VaultIdentity::unwrap(wrapped, &self.identity)
    }
}

#[cfg(unix)]
fn is_readable_by_others(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn is_readable_by_others(_path: &Path) -> std::io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_generates_a_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::demo(dir.path());
        let (first, source) = MasterKey::load(&config).unwrap();
        assert!(matches!(source, MasterKeySource::Generated(_)));
        let path = config.generated_master_key_path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = MasterKey::load(&config).unwrap();
        assert!(matches!(source, MasterKeySource::File(_)));
        assert_eq!(
            first.recipient().to_string(),
            second.recipient().to_string()
        );
    }

    #[test]
    fn malformed_key_is_a_clear_error() {
        let error = MasterKey::parse("not a key", "test").err().unwrap();
        assert!(error.to_string().contains("AGE-SECRET-KEY-1"), "{error}");
    }
}
