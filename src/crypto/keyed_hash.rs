//! Keyed hashes (HMAC-SHA-256) used as lookup indexes for values that must be found
//! again but never stored: a recipient's identity, an idempotent request. Each use has
//! its own domain so one index cannot be replayed against another.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// What a keyed hash is computed for; part of the hashed input.
#[derive(Debug, Clone, Copy)]
pub enum HashDomain {
    /// A normalised pivot identity (names, birth date, birth place).
    PivotIdentity,
    /// A Belgian national register number.
    NationalRegisterNumber,
    /// The content of a delivery request, to recognise retries.
    DeliveryRequest,
    /// An agent's recovery code (with the agent's id).
    RecoveryCode,
    /// A voucher code (the database keeps only this hash).
    VoucherCode,
    /// A household reference within a voucher campaign (with the campaign's id).
    VoucherHousehold,
    /// The id a scanning device keeps in a cookie.
    ScanDevice,
    /// A client address (or IPv6 network) counted by the login limits.
    ClientAddress,
    /// A scan form's one-time token or an API Idempotency-Key (with the code it
    /// carried), to recognise the same submission coming back.
    ScanRequest,
}

impl HashDomain {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::PivotIdentity => b"eguichet/pivot-identity/v1",
            Self::NationalRegisterNumber => b"eguichet/nrn/v1",
            Self::DeliveryRequest => b"eguichet/delivery-request/v1",
            Self::RecoveryCode => b"eguichet/recovery-code/v1",
            Self::VoucherCode => b"eguichet/voucher-code/v1",
            Self::VoucherHousehold => b"eguichet/voucher-household/v1",
            Self::ScanDevice => b"eguichet/scan-device/v1",
            Self::ClientAddress => b"eguichet/client-address/v1",
            Self::ScanRequest => b"eguichet/scan-request/v1",
        }
    }
}

/// The installation's HMAC key (kept wrapped by the master key in the database).
pub struct KeyedHasher {
    key: SecretBox<[u8; 32]>,
}

impl KeyedHasher {
    /// Wraps 32 secret bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: SecretBox::new(Box::new(key)),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::new(super::random_bytes())
    }

    /// The raw key, for wrapping under the master key.
    pub fn key_bytes(&self) -> &[u8; 32] {
        self.key.expose_secret()
    }

    /// Starts a hash of several parts in `domain`.
    pub fn start(&self, domain: HashDomain) -> KeyedHash {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(domain.tag());
        mac.update(&[0]);
        KeyedHash { mac }
    }

    /// A separate key for one purpose (HKDF-SHA-256, `info` naming the purpose): whoever
    /// holds a derived key learns nothing of this one or of the other derived keys.
    pub fn derive_key(&self, info: &[u8]) -> DerivedKey {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, self.key.expose_secret())
            .expand(info, &mut key)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA-256 length"));
        DerivedKey(std::sync::Arc::new(SecretBox::new(Box::new(key))))
    }

    /// Hex keyed hash of one value in `domain`.
    pub fn hash(&self, domain: HashDomain, value: &[u8]) -> String {
        self.start(domain).part(value).finish()
    }
}

/// A key derived from the installation's HMAC key for one purpose; cheap to clone.
#[derive(Clone)]
pub struct DerivedKey(std::sync::Arc<SecretBox<[u8; 32]>>);

impl DerivedKey {
    /// Starts an HMAC-SHA-256 under this key.
    pub fn start(&self) -> KeyedHash {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        KeyedHash { mac }
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// A keyed hash being computed.
pub struct KeyedHash {
    mac: Hmac<Sha256>,
}

impl KeyedHash {
    /// Adds one length-prefixed part, so ("ab","c") and ("a","bc") differ.
    pub fn part(mut self, value: &[u8]) -> Self {
        self.mac.update(&(value.len() as u64).to_be_bytes());
        self.mac.update(value);
        self
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_parts_separate_inputs() {
        let hasher = KeyedHasher::new([7; 32]);
        let pivot = hasher.hash(HashDomain::PivotIdentity, b"x");
        assert_ne!(pivot, hasher.hash(HashDomain::NationalRegisterNumber, b"x"));
        let ab_c = hasher
            .start(HashDomain::DeliveryRequest)
            .part(b"ab")
            .part(b"c")
            .finish();
        let a_bc = hasher
            .start(HashDomain::DeliveryRequest)
            .part(b"a")
            .part(b"bc")
            .finish();
        assert_ne!(ab_c, a_bc);
        assert_ne!(
            pivot,
            KeyedHasher::new([8; 32]).hash(HashDomain::PivotIdentity, b"x")
        );
    }
}
