//! Moving an age file to a new recipient without touching its payload.
//!
//! In age the payload key and the header's MAC both derive from the 16-byte file key
//! alone. A new header that wraps the *same* file key to another recipient therefore
//! opens the untouched payload: locking a vault re-wraps headers kept in the database
//! and leaves the (possibly very large) payloads in the object store as they are.
//! The `age` crate has no public re-wrap call, so the header is written here in the
//! format of the specification (C2SP age, "age-encryption.org/v1").

use std::cell::RefCell;
use std::iter;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};

use super::sealed::{SealError, VaultIdentity, VaultRecipient};

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const MAC_PREFIX: &[u8] = b"---";
/// Stanza bodies are written as base64 lines of this many columns, the last one short.
const BODY_COLUMNS: usize = 64;

/// Re-wraps the age file (or detached header) `encrypted`, which `old` can open, to
/// `new`: the bytes after the header (nonce and payload) are returned unchanged.
/// The old header's MAC is checked first, so a tampered header is refused rather
/// than laundered into a valid one.
pub fn rewrap(
    encrypted: &[u8],
    old: &VaultIdentity,
    new: &VaultRecipient,
) -> Result<Vec<u8>, SealError> {
    let header_length = header_length(encrypted)?;
    let file_key = recover_file_key(encrypted, header_length, old)?;
    let (stanzas, _labels) = age::Recipient::wrap_file_key(new.as_age(), &file_key)
        .map_err(|error| SealError::Encrypt(error.to_string()))?;
    let mut rewrapped = write_header(&stanzas, &file_key)?;
    rewrapped.extend_from_slice(&encrypted[header_length..]);
    Ok(rewrapped)
}

/// The recipients' stanzas of an age header, as `(tag, arguments)`, without opening
/// anything: enough to tell whether a header was written for one X25519 recipient.
pub fn header_stanza_tags(encrypted: &[u8]) -> Result<Vec<String>, SealError> {
    let header = &encrypted[..header_length(encrypted)?];
    Ok(header
        .split(|&byte| byte == b'\n')
        .filter_map(|line| line.strip_prefix(b"-> "))
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect())
}

/// Length of the header, up to and including the MAC line's newline.
fn header_length(encrypted: &[u8]) -> Result<usize, SealError> {
    let malformed = || SealError::Decrypt("not an age header".to_owned());
    if !encrypted.starts_with(VERSION_LINE) {
        return Err(malformed());
    }
    let mut start = VERSION_LINE.len();
    loop {
        let end = encrypted[start..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|offset| start + offset)
            .ok_or_else(malformed)?;
        if encrypted[start..].starts_with(b"--- ") {
            return Ok(end + 1);
        }
        start = end + 1;
    }
}

/// The file key that `identity` unwraps from the header, after the header's MAC
/// has been verified with it.
fn recover_file_key(
    encrypted: &[u8],
    header_length: usize,
    identity: &VaultIdentity,
) -> Result<FileKey, SealError> {
    let recorder = FileKeyRecorder {
        inner: identity.as_age(),
        file_key: RefCell::new(None),
    };
    // The decryptor reads the header and the payload nonce; the MAC covers the header
    // only, so a detached header shorter than its nonce is padded with zeros.
    let mut input = encrypted[..header_length].to_vec();
    input.extend_from_slice(&[0u8; 16]);
    let decryptor = age::Decryptor::new_buffered(&input[..])
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    decryptor
        .decrypt(iter::once(&recorder as &dyn age::Identity))
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    recorder
        .file_key
        .into_inner()
        .ok_or_else(|| SealError::Decrypt("no stanza for this identity".to_owned()))
}

/// An identity that remembers the file key it unwrapped.
struct FileKeyRecorder<'a> {
    inner: &'a dyn age::Identity,
    file_key: RefCell<Option<FileKey>>,
}

impl age::Identity for FileKeyRecorder<'_> {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        let unwrapped = self.inner.unwrap_stanza(stanza)?;
        if let Ok(file_key) = &unwrapped {
            *self.file_key.borrow_mut() = Some(FileKey::new(Box::new(*file_key.expose_secret())));
        }
        Some(unwrapped)
    }
}

/// A complete header (version line, stanzas, MAC line) for `file_key`.
fn write_header(stanzas: &[Stanza], file_key: &FileKey) -> Result<Vec<u8>, SealError> {
    let mut header = VERSION_LINE.to_vec();
    for stanza in stanzas {
        header.extend_from_slice(b"-> ");
        header.extend_from_slice(stanza.tag.as_bytes());
        for argument in &stanza.args {
            header.push(b' ');
            header.extend_from_slice(argument.as_bytes());
        }
        header.push(b'\n');
        let body = STANDARD_NO_PAD.encode(&stanza.body);
        // Full lines, then a final short (possibly empty) line that ends the body.
        let mut rest = body.as_bytes();
        loop {
            let line = &rest[..rest.len().min(BODY_COLUMNS)];
            header.extend_from_slice(line);
            header.push(b'\n');
            rest = &rest[line.len()..];
            if line.len() < BODY_COLUMNS {
                break;
            }
        }
    }
    header.extend_from_slice(MAC_PREFIX);
    let mac = header_mac(file_key, &header)?;
    header.push(b' ');
    header.extend_from_slice(STANDARD_NO_PAD.encode(mac).as_bytes());
    header.push(b'\n');
    Ok(header)
}

/// HMAC-SHA256 over the header up to `---`, keyed by HKDF(file key, info "header").
fn header_mac(file_key: &FileKey, header: &[u8]) -> Result<[u8; 32], SealError> {
    let failed = |error: String| SealError::Encrypt(format!("header MAC: {error}"));
    let mut mac_key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&[]), file_key.expose_secret())
        .expand(b"header", &mut mac_key)
        .map_err(|error| failed(error.to_string()))?;
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&mac_key)
        .map_err(|error| failed(error.to_string()))?;
    mac.update(header);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{DocumentEncryptor, decrypt_document, seal, unseal};

    /// A detached header (nonce included, as stored) and its payload.
    fn encrypted_document(recipient: &VaultRecipient, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut encryptor, header) = DocumentEncryptor::start(recipient).unwrap();
        let mut payload = encryptor.encrypt(plaintext).unwrap().to_vec();
        payload.extend_from_slice(&encryptor.finish().unwrap());
        (header, payload)
    }

    /// The whole plaintext, or `None` when the header or any chunk fails to open.
    async fn open(identity: &VaultIdentity, header: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
        use futures::io::{AsyncReadExt, Cursor};
        let mut reader = decrypt_document(identity, header.to_vec(), Cursor::new(payload))
            .await
            .ok()?;
        let mut plaintext = Vec::new();
        reader.read_to_end(&mut plaintext).await.ok()?;
        Some(plaintext)
    }

    #[tokio::test]
    async fn a_rewrapped_header_opens_the_untouched_payload_with_the_new_key_only() {
        let escrowed = VaultIdentity::generate();
        let locked = VaultIdentity::generate();
        let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (header, payload) = encrypted_document(&escrowed.recipient(), &plaintext);

        let rewrapped = rewrap(&header, &escrowed, &locked.recipient()).unwrap();

        assert_ne!(rewrapped, header);
        assert_eq!(
            open(&locked, &rewrapped, &payload).await.unwrap(),
            plaintext
        );
        assert!(open(&escrowed, &rewrapped, &payload).await.is_none());
        // The payload's own nonce was carried over: the stored header still ends with it.
        assert_eq!(
            rewrapped[rewrapped.len() - 16..],
            header[header.len() - 16..]
        );
        assert_eq!(header_stanza_tags(&rewrapped).unwrap().len(), 1);
        assert!(header_stanza_tags(&rewrapped).unwrap()[0].starts_with("X25519 "));
    }

    #[test]
    fn sealed_values_move_to_the_new_key() {
        let escrowed = VaultIdentity::generate();
        let locked = VaultIdentity::generate();
        let sealed = seal(&escrowed.recipient(), b"Avis d'imposition 2026").unwrap();
        let moved = rewrap(&sealed, &escrowed, &locked.recipient()).unwrap();
        assert_eq!(unseal(&locked, &moved).unwrap(), b"Avis d'imposition 2026");
        assert!(unseal(&escrowed, &moved).is_err());
    }

    #[test]
    fn a_tampered_header_is_refused_not_laundered() {
        let escrowed = VaultIdentity::generate();
        let (header, _) = encrypted_document(&escrowed.recipient(), b"payload");
        let mut flipped = header.clone();
        let mac_at = header_length(&header).unwrap() - 3;
        flipped[mac_at] ^= 0x01;
        assert!(rewrap(&flipped, &escrowed, &VaultIdentity::generate().recipient()).is_err());

        let stranger = VaultIdentity::generate();
        assert!(rewrap(&header, &stranger, &stranger.recipient()).is_err());
        assert!(rewrap(b"not age at all", &escrowed, &escrowed.recipient()).is_err());
    }

    /// What the citizen's browser writes (`web-crypto`, `tests/fixtures/browser-age`)
    /// is what the server reads, stores and re-wraps.
    mod written_by_the_browser {
        use super::*;

        const FIXTURE: &str = include_str!("../../tests/fixtures/browser-age/fixture.json");
        const HEADER: &[u8] = include_bytes!("../../tests/fixtures/browser-age/document.header");
        const PAYLOAD: &[u8] = include_bytes!("../../tests/fixtures/browser-age/document.payload");
        const TITLE: &[u8] = include_bytes!("../../tests/fixtures/browser-age/title.age");
        const RECOVERY: &[u8] =
            include_bytes!("../../tests/fixtures/browser-age/identity.recovery.age");

        fn fixture() -> serde_json::Value {
            serde_json::from_str(FIXTURE).unwrap()
        }

        fn identity() -> VaultIdentity {
            VaultIdentity::parse(fixture()["identity"].as_str().unwrap()).unwrap()
        }

        #[tokio::test]
        async fn its_documents_and_titles_open_and_move_to_another_key() {
            let identity = identity();
            assert_eq!(
                identity.recipient().to_string(),
                fixture()["recipient"].as_str().unwrap()
            );
            let expected: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
            assert_eq!(open(&identity, HEADER, PAYLOAD).await.unwrap(), expected);
            assert_eq!(
                String::from_utf8(unseal(&identity, TITLE).unwrap()).unwrap(),
                fixture()["title"].as_str().unwrap()
            );

            let other = VaultIdentity::generate();
            let moved = rewrap(HEADER, &identity, &other.recipient()).unwrap();
            assert_eq!(open(&other, &moved, PAYLOAD).await.unwrap(), expected);
        }

        #[test]
        fn its_recovery_copy_is_one_scrypt_stanza_that_the_code_opens() {
            let stanzas = header_stanza_tags(RECOVERY).unwrap();
            assert_eq!(stanzas.len(), 1);
            assert!(stanzas[0].starts_with("scrypt "), "{stanzas:?}");

            let code: String = fixture()["recovery_code"]
                .as_str()
                .unwrap()
                .chars()
                .filter(|c| *c != '-')
                .collect();
            let mut passphrase = age::scrypt::Identity::new(code.into());
            // The browser uses age's default work factor (2^18), above what this crate
            // accepts by default on a slow machine.
            passphrase.set_max_work_factor(18);
            let decryptor = age::Decryptor::new_buffered(RECOVERY).unwrap();
            let mut reader = decryptor
                .decrypt(std::iter::once(&passphrase as &dyn age::Identity))
                .unwrap();
            let mut opened = String::new();
            std::io::Read::read_to_string(&mut reader, &mut opened).unwrap();
            assert_eq!(opened, fixture()["identity"].as_str().unwrap());
        }
    }
}
