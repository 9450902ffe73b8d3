//! Documents their sender encrypted (end to end): the `eguichet deliver` client or the
//! agent's browser sends an age file for the citizen's vault key, and the server stores
//! it as it is. The server checks what it can without a key: a well-formed header with
//! exactly one X25519 stanza, a payload whose length is one age can have, sizes. It
//! splits the header (kept in the database, like every document's) from the payload
//! (kept in the object store) as the bytes stream through.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::DocumentError;
use crate::crypto::header_stanza_tags;

/// A header for one recipient is a few hundred bytes; anything longer is not one.
const MAX_HEADER_BYTES: usize = 4 * 1024;
/// The payload starts with a 16-byte nonce.
const NONCE_BYTES: usize = 16;
/// age's STREAM chunks: 64 KiB of plaintext and a 16-byte tag.
const CHUNK_PLAINTEXT: u64 = 64 * 1024;
const TAG_BYTES: u64 = 16;
/// Sealed titles and file names are small.
pub const MAX_SEALED_METADATA_BYTES: usize = 8 * 1024;

/// An age file streaming in.
pub struct SenderStream {
    /// The bytes before the payload, until the header is complete.
    head: BytesMut,
    header: Option<Vec<u8>>,
    payload: Sha256,
    payload_size: u64,
    /// SHA-256 of the whole file as received (the request's fingerprint).
    received: Sha256,
}

/// A complete age file: its header and what the payload's digest and size say.
pub struct SenderEncrypted {
    /// The header followed by the payload's nonce, as documents keep it.
    pub header: Vec<u8>,
    pub payload_size: u64,
    pub payload_sha256: String,
    pub plaintext_size: u64,
    pub received_sha256: Vec<u8>,
}

impl Default for SenderStream {
    fn default() -> Self {
        Self::new()
    }
}

impl SenderStream {
    pub fn new() -> Self {
        Self {
            head: BytesMut::new(),
            header: None,
            payload: Sha256::new(),
            payload_size: 0,
            received: Sha256::new(),
        }
    }

    /// Takes the next piece of the file; returns the payload bytes to store.
    pub fn push(
        &mut self,
        chunk: Bytes,
        max_plaintext: u64,
    ) -> Result<Option<Bytes>, DocumentError> {
        self.received.update(&chunk);
        let payload = if self.header.is_some() {
            chunk
        } else {
            self.head.extend_from_slice(&chunk);
            let Some(end) = header_end(&self.head)? else {
                return Ok(None);
            };
            let rest = self.head.split_off(end).freeze();
            let header = std::mem::take(&mut self.head).to_vec();
            check_single_x25519(&header)?;
            self.header = Some(header);
            rest
        };
        self.payload.update(&payload);
        self.payload_size += payload.len() as u64;
        if self.payload_size > max_plaintext + TAG_BYTES * (max_plaintext / CHUNK_PLAINTEXT + 1) {
            return Err(DocumentError::TooLarge {
                limit: max_plaintext,
            });
        }
        Ok((!payload.is_empty()).then_some(payload))
    }

    /// The file ended: checks it is complete and says what it holds.
    pub fn finish(self, max_plaintext: u64) -> Result<SenderEncrypted, DocumentError> {
        let header = self.header.ok_or_else(not_age)?;
        let plaintext_size = plaintext_size(self.payload_size).ok_or_else(|| {
            DocumentError::InvalidRequest(
                "the encrypted file is truncated: its length is not one age can write".to_owned(),
            )
        })?;
        if plaintext_size == 0 {
            return Err(DocumentError::EmptyDocument);
        }
        if plaintext_size > max_plaintext {
            return Err(DocumentError::TooLarge {
                limit: max_plaintext,
            });
        }
        Ok(SenderEncrypted {
            header,
            payload_size: self.payload_size,
            payload_sha256: hex::encode(self.payload.finalize()),
            plaintext_size,
            received_sha256: self.received.finalize().to_vec(),
        })
    }
}

/// Where the payload starts in `head` (after the MAC line and the nonce), once known.
fn header_end(head: &[u8]) -> Result<Option<usize>, DocumentError> {
    if head.len() >= 22 && !head.starts_with(b"age-encryption.org/v1\n") {
        return Err(not_age());
    }
    let mut start = 0;
    while let Some(offset) = head[start..].iter().position(|&byte| byte == b'\n') {
        let line = &head[start..start + offset];
        if line.starts_with(b"--- ") {
            let end = start + offset + 1 + NONCE_BYTES;
            return Ok((head.len() >= end).then_some(end));
        }
        start += offset + 1;
    }
    if head.len() > MAX_HEADER_BYTES {
        return Err(not_age());
    }
    Ok(None)
}

/// A document or sealed value for a vault must be encrypted to exactly one X25519 key:
/// no passphrase, no second recipient that could open it too. (age writers may add
/// "grease" stanzas, random ones no key opens; those are let through.)
pub fn check_single_x25519(header: &[u8]) -> Result<(), DocumentError> {
    let stanzas = header_stanza_tags(header).map_err(|_| not_age())?;
    let tag = |stanza: &String| stanza.split(' ').next().unwrap_or_default().to_owned();
    let x25519 = stanzas.iter().filter(|s| tag(s) == "X25519").count();
    let others = stanzas
        .iter()
        .filter(|s| tag(s) != "X25519" && !tag(s).ends_with("-grease"))
        .count();
    if x25519 == 1 && others == 0 {
        Ok(())
    } else {
        Err(DocumentError::InvalidRequest(
            "the encrypted file must be for exactly one vault key (one X25519 recipient)"
                .to_owned(),
        ))
    }
}

fn not_age() -> DocumentError {
    DocumentError::InvalidRequest("the file is not an age-encrypted file".to_owned())
}

/// The plaintext length of an age payload of `sealed` bytes (after the nonce), or
/// `None` if no age file has that length: full chunks of 64 KiB + tag, then a last
/// chunk that is not empty unless it is the only one. (A file cut inside its last
/// chunk can still have a possible length: the citizen's page, which checks every
/// chunk's tag, refuses it.)
fn plaintext_size(sealed: u64) -> Option<u64> {
    let full = CHUNK_PLAINTEXT + TAG_BYTES;
    let chunks = sealed.div_ceil(full).max(1);
    let plaintext = sealed.checked_sub(chunks * TAG_BYTES)?;
    let last = sealed - (chunks - 1) * full;
    (last > TAG_BYTES || chunks == 1).then_some(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{VaultIdentity, seal};

    fn age_file(plaintext: &[u8]) -> Vec<u8> {
        seal(&VaultIdentity::generate().recipient(), plaintext).unwrap()
    }

    fn stream_in(file: &[u8], piece: usize) -> Result<(SenderEncrypted, Vec<u8>), DocumentError> {
        let mut stream = SenderStream::new();
        let mut stored = Vec::new();
        for chunk in file.chunks(piece) {
            if let Some(payload) = stream.push(Bytes::copy_from_slice(chunk), 1 << 30)? {
                stored.extend_from_slice(&payload);
            }
        }
        Ok((stream.finish(1 << 30)?, stored))
    }

    #[test]
    fn an_age_file_splits_into_header_and_payload_whatever_the_pieces() {
        for size in [1, 1000, 65_536, 65_537, 200_000] {
            let file = age_file(&vec![7; size]);
            for piece in [1, 7, 4096, file.len()] {
                let (encrypted, stored) = stream_in(&file, piece).unwrap();
                assert_eq!(encrypted.plaintext_size, size as u64, "{size} by {piece}");
                assert_eq!(encrypted.header.len() + stored.len(), file.len());
                assert_eq!(&file[..encrypted.header.len()], &encrypted.header[..]);
                assert_eq!(encrypted.payload_size, stored.len() as u64);
            }
        }
    }

    #[test]
    fn what_is_not_one_recipients_age_file_is_refused() {
        assert!(stream_in(b"%PDF-1.7 plain text", 4).is_err());
        let file = age_file(&[1; 100]);
        assert!(
            stream_in(&file[..file.len() - 110], 64).is_err(),
            "cut before a tag"
        );
        // The header up to its MAC line, without the payload's nonce.
        let mac_line = file.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
        let mac_end = mac_line + file[mac_line..].iter().position(|&b| b == b'\n').unwrap() + 1;
        assert!(stream_in(&file[..mac_end], 64).is_err(), "header only");
        assert!(
            stream_in(&file[..mac_end + 16], 64).is_err(),
            "nonce, no chunk"
        );
        let two = {
            let recipients = [
                VaultIdentity::generate().recipient(),
                VaultIdentity::generate().recipient(),
            ];
            let encryptor =
                age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_age())).unwrap();
            let mut out = Vec::new();
            let mut writer = encryptor.wrap_output(&mut out).unwrap();
            std::io::Write::write_all(&mut writer, b"x").unwrap();
            writer.finish().unwrap();
            out
        };
        assert!(matches!(
            stream_in(&two, 64),
            Err(DocumentError::InvalidRequest(message)) if message.contains("exactly one")
        ));
    }

    #[test]
    fn payload_lengths_follow_age_chunks() {
        assert_eq!(plaintext_size(16), Some(0));
        assert_eq!(plaintext_size(16 + 5), Some(5));
        assert_eq!(plaintext_size(65_552), Some(65_536));
        assert_eq!(plaintext_size(65_552 + 16), None, "empty last chunk");
        assert_eq!(plaintext_size(65_552 + 17), Some(65_537));
        assert_eq!(plaintext_size(10), None);
    }
}
