//! The key hierarchy and everything that touches ciphertext: the master key, wrapped
//! per-citizen vault keys, sealed metadata, streaming document encryption and keyed
//! hashes. Nothing here knows about HTTP, tables or object stores.

mod keyed_hash;
mod master_key;
mod rewrap;
mod sealed;
mod stream;

pub use keyed_hash::{DerivedKey, HashDomain, KeyedHash, KeyedHasher};
pub use master_key::{MasterKey, MasterKeyError, MasterKeySource};
pub use rewrap::{header_stanza_tags, rewrap};
pub use sealed::{SealError, VaultIdentity, VaultRecipient, seal, unseal};
pub use stream::{DocumentEncryptor, EncryptedDigest, EncryptionWorker, decrypt_document};

/// Hex-encoded SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Base64url without padding: how pages and senders exchange binary values (keys,
/// sealed values, WebAuthn ids).
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url, with or without padding.
pub fn from_base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}
