//! Vault keys and small sealed values. Every citizen has an age X25519 identity; what
//! is sealed to its recipient (document metadata, the payload's file key) can only be
//! opened with that identity, which itself rests wrapped by the master key.

use std::io::{Read, Write};
use std::iter;
use std::str::FromStr;

use age::x25519;
use secrecy::ExposeSecret;

/// Failures to seal or open a value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("encryption failed: {0}")]
    Encrypt(String),
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

/// A citizen's private vault key.
pub struct VaultIdentity(x25519::Identity);

/// A citizen's public vault key: enough to encrypt, useless to decrypt.
#[derive(Clone)]
pub struct VaultRecipient(x25519::Recipient);

impl VaultIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self(x25519::Identity::generate())
    }

    /// Parses `AGE-SECRET-KEY-1…`.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        x25519::Identity::from_str(text.trim())
            .map(Self)
            .map_err(|error| SealError::InvalidKey(error.to_owned()))
    }

    /// The matching public recipient.
    pub fn recipient(&self) -> VaultRecipient {
        VaultRecipient(self.0.to_public())
    }

    /// The secret in age's text form, for wrapping.
    pub fn to_secret_string(&self) -> secrecy::SecretString {
        self.0.to_string()
    }

    pub(crate) fn as_age(&self) -> &dyn age::Identity {
        &self.0
    }
}

impl VaultRecipient {
    /// Parses `age1…`.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        x25519::Recipient::from_str(text.trim())
            .map(Self)
            .map_err(|error| SealError::InvalidKey(error.to_owned()))
    }

    pub(crate) fn as_age(&self) -> &dyn age::Recipient {
        &self.0
    }
}

impl std::fmt::Display for VaultRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Encrypts a small value (kilobytes at most) to `recipient`.
pub fn seal(recipient: &VaultRecipient, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let encryptor = age::Encryptor::with_recipients(iter::once(recipient.as_age()))
        .map_err(|error| SealError::Encrypt(error.to_string()))?;
    let mut sealed = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut sealed)
        .map_err(|error| SealError::Encrypt(error.to_string()))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|error| SealError::Encrypt(error.to_string()))?;
    Ok(sealed)
}

/// Opens a value sealed by [`seal`].
pub fn unseal(identity: &VaultIdentity, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let decryptor = age::Decryptor::new_buffered(sealed)
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    let mut reader = decryptor
        .decrypt(iter::once(identity.as_age()))
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    Ok(plaintext)
}

impl VaultIdentity {
    /// Wraps this identity for storage (sealed to `wrapping` — the master key).
    pub fn wrap(&self, wrapping: &VaultRecipient) -> Result<Vec<u8>, SealError> {
        seal(wrapping, self.to_secret_string().expose_secret().as_bytes())
    }

    /// Unwraps an identity stored by [`VaultIdentity::wrap`].
    pub fn unwrap(wrapped: &[u8], wrapping: &VaultIdentity) -> Result<Self, SealError> {
        let text = Wiped(unseal(wrapping, wrapped)?);
        let text = std::str::from_utf8(&text.0)
            .map_err(|_| SealError::InvalidKey("wrapped identity is not text".to_owned()))?;
        Self::parse(text)
    }
}

/// Plaintext key material that is wiped when dropped.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize;
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_identity() {
        let citizen = VaultIdentity::generate();
        let stranger = VaultIdentity::generate();
        let sealed = seal(&citizen.recipient(), b"Avis d'imposition 2026").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"Avis "));
        assert_eq!(
            unseal(&citizen, &sealed).unwrap(),
            b"Avis d'imposition 2026"
        );
        assert!(unseal(&stranger, &sealed).is_err());
    }

    #[test]
    fn identities_wrap_and_unwrap() {
        let master = VaultIdentity::generate();
        let citizen = VaultIdentity::generate();
        let wrapped = citizen.wrap(&master.recipient()).unwrap();
        let unwrapped = VaultIdentity::unwrap(&wrapped, &master).unwrap();
        assert_eq!(
            unwrapped.recipient().to_string(),
            citizen.recipient().to_string()
        );
        assert!(VaultIdentity::unwrap(&wrapped, &VaultIdentity::generate()).is_err());
    }
}
