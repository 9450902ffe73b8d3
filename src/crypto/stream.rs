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

/// Room for a little more than one age chunk (64 KiB and its tag), so appending never
/// reallocates.
const OUTPUT_CAPACITY: usize = 128 * 1024;

impl CiphertextBuffer {
    /// Takes what was written so far, leaving a buffer of the same capacity behind.
    fn take(&self) -> Vec<u8> {
        let mut buffer = self.lock();
        if buffer.is_empty() {
            return Vec::new();
        }
        std::mem::replace(&mut *buffer, Vec::with_capacity(OUTPUT_CAPACITY))
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
        let output = CiphertextBuffer(Arc::new(Mutex::new(Vec::with_capacity(OUTPUT_CAPACITY))));
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

/// Hashes of a finished encryption.
#[derive(Debug, Clone)]
pub struct EncryptedDigest {
    /// SHA-256 of the whole payload (ciphertext after the header), hex.
    pub ciphertext_sha256: String,
    pub ciphertext_size: u64,
    pub plaintext_size: u64,
    /// SHA-256 of the plaintext, when asked for (to recognise a retried request).
    pub plaintext_sha256: Option<[u8; 32]>,
}

/// Plaintext and ciphertext chunks in flight between the request and the worker.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Encryption and hashing on a thread of their own, so that the thread reading the
/// request (HTTP, multipart) and the one doing the per-byte cryptography run side by
/// side: on a small server this is most of the CPU an upload costs.
pub struct EncryptionWorker {
    plaintext: Option<tokio::sync::mpsc::Sender<Bytes>>,
    ciphertext: tokio::sync::mpsc::Receiver<Bytes>,
    done: tokio::task::JoinHandle<io::Result<EncryptedDigest>>,
}

impl EncryptionWorker {
    /// Starts encrypting to `recipient`; returns the worker and the detached header.
    pub fn start(
        recipient: &VaultRecipient,
        hash_plaintext: bool,
    ) -> Result<(Self, Vec<u8>), SealError> {
        let (encryptor, header) = DocumentEncryptor::start(recipient)?;
        let (plain_tx, plain_rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let (cipher_tx, cipher_rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let done = crate::telemetry::spawn_blocking(move || {
            encrypt_chunks(encryptor, plain_rx, cipher_tx, hash_plaintext)
        });
        let worker = Self {
            plaintext: Some(plain_tx),
            ciphertext: cipher_rx,
            done,
        };
        Ok((worker, header))
    }

    /// Hands over the next plaintext chunk, waiting while the worker is busy; returns
    /// the ciphertext that became ready meanwhile (to be stored in this order).
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<Vec<Bytes>> {
        let sender = self.plaintext.as_ref().ok_or_else(worker_gone)?;
        let mut ready = Vec::new();
        // Waiting for room must not stop ciphertext from flowing out, or both sides
        // would wait on each other.
        let permit = loop {
            tokio::select! {
                permit = sender.reserve() => break permit.map_err(|_| worker_gone())?,
                Some(ciphertext) = self.ciphertext.recv() => ready.push(ciphertext),
            }
        };
        permit.send(chunk);
        while let Ok(ciphertext) = self.ciphertext.try_recv() {
            ready.push(ciphertext);
        }
        Ok(ready)
    }

    /// No more plaintext: returns the remaining ciphertext and the digests.
    pub async fn finish(mut self) -> io::Result<(Vec<Bytes>, EncryptedDigest)> {
        self.plaintext = None;
        let mut rest = Vec::new();
        while let Some(ciphertext) = self.ciphertext.recv().await {
            rest.push(ciphertext);
        }
        let digest = self.done.await.map_err(io::Error::other)??;
        Ok((rest, digest))
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("the encryption worker stopped")
}

/// The worker's loop: encrypt, hash, pass on.
fn encrypt_chunks(
    mut encryptor: DocumentEncryptor,
    mut plaintext: tokio::sync::mpsc::Receiver<Bytes>,
    ciphertext: tokio::sync::mpsc::Sender<Bytes>,
    hash_plaintext: bool,
) -> io::Result<EncryptedDigest> {
    use sha2::{Digest, Sha256};
    let mut cipher_hash = Sha256::new();
    let mut plain_hash = hash_plaintext.then(Sha256::new);
    let (mut ciphertext_size, mut plaintext_size) = (0u64, 0u64);
    let mut emit = |bytes: Bytes, size: &mut u64| -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        cipher_hash.update(&bytes);
        *size += bytes.len() as u64;
        ciphertext.blocking_send(bytes).map_err(|_| worker_gone())
    };
    while let Some(chunk) = plaintext.blocking_recv() {
        plaintext_size += chunk.len() as u64;
        if let Some(hash) = &mut plain_hash {
            hash.update(&chunk);
        }
        emit(encryptor.encrypt(&chunk)?, &mut ciphertext_size)?;
    }
    emit(encryptor.finish()?, &mut ciphertext_size)?;
    Ok(EncryptedDigest {
        ciphertext_sha256: hex::encode(cipher_hash.finalize()),
        ciphertext_size,
        plaintext_size,
        plaintext_sha256: plain_hash.map(|hash| hash.finalize().into()),
    })
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
    async fn worker_output_decrypts_and_its_digest_matches() {
        use sha2::Digest;
        let citizen = VaultIdentity::generate();
        let plaintext: Vec<u8> = (0..500_000u32).map(|i| (i % 241) as u8).collect();
        let (mut worker, header) = EncryptionWorker::start(&citizen.recipient(), true).unwrap();
        let mut payload = Vec::new();
        for chunk in plaintext.chunks(30_000) {
            for out in worker.push(Bytes::copy_from_slice(chunk)).await.unwrap() {
                payload.extend_from_slice(&out);
            }
        }
        let (rest, digest) = worker.finish().await.unwrap();
        for out in rest {
            payload.extend_from_slice(&out);
        }
        assert_eq!(digest.ciphertext_size, payload.len() as u64);
        assert_eq!(
            digest.ciphertext_sha256,
            hex::encode(sha2::Sha256::digest(&payload))
        );
        assert_eq!(digest.plaintext_size, plaintext.len() as u64);
        assert_eq!(
            digest.plaintext_sha256.unwrap(),
            <[u8; 32]>::from(sha2::Sha256::digest(&plaintext))
        );
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
