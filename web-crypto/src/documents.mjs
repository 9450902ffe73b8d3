// Documents and the small sealed texts of a locked vault (titles, file names, voucher
// codes), in the server's storage format. A document is kept in two parts: the age
// header with the 16-byte payload nonce after it (in the database) and the STREAM
// chunks (in the object store). Concatenated, they are an ordinary age file.

import { Decrypter, Encrypter } from 'age-encryption';
import { VaultCryptoError, isNoMatchingIdentity } from './errors.mjs';

const NONCE_LENGTH = 16;
const VERSION_LINE = 'age-encryption.org/v1\n';
const NEWLINE = 0x0a;

/** A small text sealed to a vault's recipient, as a complete age file. */
export async function sealText(recipient, text) {
  const encrypter = x25519Encrypter(recipient);
  return encrypter.encrypt(String(text));
}

// One Decrypter per imported key: age derives the key's public half once per
// Decrypter, and a vault page opens dozens of titles with the same key.
const decrypters = new WeakMap();
function decrypterFor(identity) {
  if (typeof identity !== 'object' || identity === null) {
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    return decrypter;
  }
  let decrypter = decrypters.get(identity);
  if (!decrypter) {
    decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    decrypters.set(identity, decrypter);
  }
  return decrypter;
}

/** The text from sealText's bytes, opened with the vault identity (imported key or string). */
export async function openSealed(identity, bytes) {
  const decrypter = decrypterFor(identity);
  try {
    return await decrypter.decrypt(bytes, 'text');
  } catch (cause) {
    throw classifyAgeError(cause);
  }
}

/**
 * The age header and nonce split from a stored header: `{stanzaTypes, headerLength}`.
 * `stanzaTypes` lists each recipient stanza's type ('X25519', 'scrypt', …);
 * `headerLength` is where the MAC line ends. Throws 'malformed' unless exactly the
 * 16-byte nonce follows the MAC line.
 */
export function inspectHeader(headerBytes) {
  const headerLength = macLineEnd(headerBytes);
  if (headerLength === -1 || headerBytes.length !== headerLength + NONCE_LENGTH) {
    throw new VaultCryptoError('malformed');
  }
  return { stanzaTypes: stanzaTypes(headerBytes.subarray(0, headerLength)), headerLength };
}

/** How many recipient stanzas a stored header carries (a locked vault's documents have one). */
export function headerRecipientCount(headerBytes) {
  return inspectHeader(headerBytes).stanzaTypes.length;
}

/**
 * The plaintext of a stored document, as a stream: the stored header (with nonce)
 * followed by the payload stream is fed to age's streaming decryption, 64 KiB at a
 * time, so memory stays bounded whatever the document's size.
 * Resolves once the header is verified ('not-for-this-vault', 'tampered',
 * 'malformed' are thrown before any byte is produced); an altered or cut payload
 * makes the returned stream error with 'tampered' (or 'interrupted' if the payload
 * stream itself failed). Nothing read before such an error may be kept.
 */
export async function decryptDocument(identity, headerBytes, payloadStream) {
  requireStream(payloadStream);
  inspectHeader(headerBytes);
  const decrypter = decrypterFor(identity);
  const ageFile = concatenate(headerBytes, markInterruptions(payloadStream));
  let plaintext;
  try {
    plaintext = await decrypter.decrypt(ageFile);
  } catch (cause) {
    throw classifyAgeError(cause);
  }
  return relabelErrors(plaintext, (cause) =>
    cause instanceof VaultCryptoError ? cause : new VaultCryptoError('tampered', { cause }));
}

/**
 * A document encrypted to a vault's recipient, split in the storage format:
 * `header` resolves to the age header followed by the 16-byte nonce, `payload`
 * streams the STREAM chunks. Both may be consumed in either order; the header is
 * known as soon as encryption starts, before the plaintext is read.
 */
export function encryptDocument(recipient, plaintextStream) {
  // age treats anything but a ReadableStream as bytes to buffer whole: refuse early.
  requireStream(plaintextStream);
  const encrypter = x25519Encrypter(recipient);
  let resolveHeader;
  let rejectHeader;
  const header = new Promise((resolve, reject) => {
    resolveHeader = resolve;
    rejectHeader = reject;
  });
  // A caller that only reads the payload learns of a failure there; do not also
  // report the header's rejection as unhandled.
  header.catch(() => {});

  let reader;
  let leftover = null;
  // Reads age's output until the MAC line and the nonce are complete; what came
  // after them in the same chunk is the payload's beginning.
  const split = (async () => {
    reader = (await encrypter.encrypt(plaintextStream)).getReader();
    let buffered = new Uint8Array(0);
    for (;;) {
      const end = macLineEnd(buffered);
      if (end !== -1 && buffered.length >= end + NONCE_LENGTH) {
        resolveHeader(buffered.slice(0, end + NONCE_LENGTH));
        leftover = buffered.subarray(end + NONCE_LENGTH);
        return;
      }
      const { done, value } = await reader.read();
      if (done) throw new VaultCryptoError('malformed');
      buffered = join(buffered, value);
    }
  })();
  split.catch((error) => rejectHeader(error));

  const payload = new ReadableStream({
    async pull(controller) {
      await split;
      if (leftover !== null && leftover.length > 0) {
        controller.enqueue(leftover);
        leftover = null;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await split.catch(() => {});
      await reader?.cancel(reason);
    },
  });
  return { header, payload };
}

function requireStream(stream) {
  if (!(stream instanceof ReadableStream)) throw new VaultCryptoError('malformed');
}

function x25519Encrypter(recipient) {
  // Vault recipients are plain X25519; other age recipient types would be valid age
  // but are never what the server hands out for a vault.
  if (typeof recipient !== 'string' || !/^age1[02-9ac-hj-np-z]{58}$/.test(recipient)) {
    throw new VaultCryptoError('malformed');
  }
  const encrypter = new Encrypter();
  try {
    encrypter.addRecipient(recipient);
  } catch (cause) {
    throw new VaultCryptoError('malformed', { cause });
  }
  return encrypter;
}

// age-encryption throws plain Errors; these are the distinctions a citizen needs.
function classifyAgeError(cause) {
  if (cause instanceof VaultCryptoError) return cause;
  if (isNoMatchingIdentity(cause)) return new VaultCryptoError('not-for-this-vault', { cause });
  const message = cause instanceof Error ? cause.message : '';
  if (/invalid version|invalid stanza|invalid header$|non-ASCII|stream ended/.test(message)) {
    return new VaultCryptoError('malformed', { cause });
  }
  return new VaultCryptoError('tampered', { cause });
}

// Where the `--- <mac>\n` line ends, or -1 while it is not complete. Stanza bodies
// are base64 and stanza lines start with "-> ", so the first line starting with
// "---" is the MAC line.
function macLineEnd(bytes) {
  if (bytes.length < VERSION_LINE.length) return -1;
  let lineStart = 0;
  while (lineStart < bytes.length) {
    const newline = bytes.indexOf(NEWLINE, lineStart);
    if (newline === -1) return -1;
    if (bytes[lineStart] === 0x2d && bytes[lineStart + 1] === 0x2d && bytes[lineStart + 2] === 0x2d) {
      return newline + 1;
    }
    lineStart = newline + 1;
  }
  return -1;
}

function stanzaTypes(header) {
  const text = new TextDecoder().decode(header);
  if (!text.startsWith(VERSION_LINE)) throw new VaultCryptoError('malformed');
  return text
    .split('\n')
    .filter((line) => line.startsWith('-> '))
    .map((line) => line.split(' ')[1] ?? '');
}

function concatenate(first, rest) {
  return rest.pipeThrough(new TransformStream({
    start(controller) {
      controller.enqueue(first);
    },
  }));
}

// A failure of the download itself (network, server) is not evidence of tampering:
// tag it so the page can offer to try again rather than raise an alarm.
function markInterruptions(stream) {
  return relabelErrors(stream, (cause) => new VaultCryptoError('interrupted', { cause }));
}

// The same chunks, one at a time (no read-ahead), with a read's failure replaced by
// `relabel(cause)`.
function relabelErrors(stream, relabel) {
  const reader = stream.getReader();
  return new ReadableStream({
    async pull(controller) {
      let result;
      try {
        result = await reader.read();
      } catch (cause) {
        controller.error(relabel(cause));
        return;
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function join(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
