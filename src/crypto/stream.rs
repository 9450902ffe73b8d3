//! Streaming document encryption. The age header (which carries the file key wrapped
//! to the citizen) is split from the payload: the header goes to the database, the
//! payload to the object store. Plaintext is only ever held one chunk at a time.

use std::io::{self, Write};
use std::iter;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncReadExt, Chain, Cursor};

use super::sealed::{SealError, VaultIdentity, VaultRecipient};

/// Ciphertext produced by the age writer, collected until the caller takes it.
#[derive(Clone, Default)]
struct CiphertextBuffer(Arc<Mutex<Vec<u8>>>);

impl CiphertextBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for CiphertextBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encrypts one document to one citizen, chunk by chunk.
pub struct DocumentEncryptor {
    writer: age::stream::StreamWriter<CiphertextBuffer>,
    output: CiphertextBuffer,
}

impl DocumentEncryptor {
    /// Starts an encryption to `recipient`; also returns the detached age header
    /// (everything before the first payload chunk, nonce included).
    pub fn start(recipient: &VaultRecipient) -> Result<(Self, Vec<u8>), SealError> {
        let encryptor = age::Encryptor::with_recipients(iter::once(recipient.as_age()))
            .map_err(|error| SealError::Encrypt(error.to_string()))?;
        let output = CiphertextBuffer::default();
        let writer = encryptor
            .wrap_output(output.clone())
            .map_err(|error| SealError::Encrypt(error.to_string()))?;
        // `wrap_output` writes the header and nonce before returning.
        let header = output.take();
        Ok((Self { writer, output }, header))
    }

    /// Encrypts the next plaintext chunk; returns whatever ciphertext is complete
    /// (age emits one 64 KiB chunk at a time, so this is often empty).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<Bytes> {
        self.writer.write_all(plaintext)?;
        Ok(Bytes::from(self.output.take()))
    }

    /// Ends the stream (the final chunk is marked as such, so truncation is detected)
    /// and returns the remaining ciphertext.
    pub fn finish(self) -> io::Result<Bytes> {
        let Self { writer, output } = self;
        writer.finish()?;
        Ok(Bytes::from(output.take()))
    }
}

/// The decrypting reader over a detached header followed by its payload.
pub type DecryptingReader<R> = age::stream::StreamReader<Chain<Cursor<Vec<u8>>, R>>;

/// Starts decrypting a document whose header was stored apart from its `payload`.
pub async fn decrypt_document<R: AsyncRead + Unpin>(
    identity: &VaultIdentity,
    header: Vec<u8>,
    payload: R,
) -> Result<DecryptingReader<R>, SealError> {
    let input = Cursor::new(header).chain(payload);
    let decryptor = age::Decryptor::new_async(input)
        .await
        .map_err(|error| SealError::Decrypt(error.to_string()))?;
    decryptor
        .decrypt_async(iter::once(identity.as_age()))
        .map_err(|error| SealError::Decrypt(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt_all(recipient: &VaultRecipient, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut encryptor, header) = DocumentEncryptor::start(recipient).unwrap();
        let mut payload = Vec::new();
        for chunk in plaintext.chunks(10_000) {
            payload.extend_from_slice(&encryptor.encrypt(chunk).unwrap());
        }
        payload.extend_from_slice(&encryptor.finish().unwrap());
        (header, payload)
    }

    #[tokio::test]
    async fn detached_header_and_payload_round_trip() {
        let citizen = VaultIdentity::generate();
        let plaintext: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (header, payload) = encrypt_all(&citizen.recipient(), &plaintext);
        assert!(header.starts_with(b"age-encryption.org/v1\n"));
        // The payload alone holds no header: it cannot even be parsed as an age file.
        assert!(age::Decryptor::new_buffered(&payload[..]).is_err());

        let mut reader = decrypt_document(&citizen, header, Cursor::new(payload))
            .await
            .unwrap();
        let mut decrypted = Vec::new();
        reader.read_to_end(&mut decrypted).await.unwrap();
        assert_eq!(decrypted, plaintext);
    }

    #[tokio::test]
    async fn truncated_payload_fails_to_decrypt() {
        let citizen = VaultIdentity::generate();
        let (header, mut payload) = encrypt_all(&citizen.recipient(), &[42u8; 200_000]);
        payload.truncate(65_536 + 16);
        let mut reader = decrypt_document(&citizen, header, Cursor::new(payload))
            .await
            .unwrap();
        let mut decrypted = Vec::new();
        assert!(reader.read_to_end(&mut decrypted).await.is_err());
    }
}
