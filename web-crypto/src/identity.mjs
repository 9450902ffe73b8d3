// The vault identity: an age X25519 key pair made in the citizen's page. The secret
// string exists only while locking or unlocking; for reading documents it is imported
// into WebCrypto as a non-extractable key that no script can read back.

import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { bech32 } from '@scure/base';
import { VaultCryptoError } from './errors.mjs';

// PKCS#8 wrapping of a raw X25519 scalar (RFC 8410): WebCrypto imports private X25519
// keys only as PKCS#8 or JWK, and the prefix is fixed because the scalar is 32 bytes.
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);

/** A new vault key pair: `{identity: 'AGE-SECRET-KEY-1…', recipient: 'age1…'}`. */
export async function generateVaultIdentity() {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  return { identity, recipient };
}

/**
 * The vault identity as a non-extractable WebCrypto X25519 key, which
 * age-encryption's Decrypter accepts as an identity. After this, the page drops the
 * string: the key can open files but cannot be exported, stored or sent.
 * Throws 'no-x25519' on a browser without X25519 in WebCrypto, unless
 * `allowInMemoryFallback` is set: then the string itself is returned and age does the
 * arithmetic in JavaScript (weaker: the secret stays readable in the page's memory).
 */
export async function importIdentity(identityString, { allowInMemoryFallback = false } = {}) {
  const scalar = decodeIdentity(identityString);
  const pkcs8 = new Uint8Array(PKCS8_X25519_PREFIX.length + scalar.length);
  pkcs8.set(PKCS8_X25519_PREFIX);
  pkcs8.set(scalar, PKCS8_X25519_PREFIX.length);
  scalar.fill(0);
  try {
    return await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
  } catch (cause) {
    if (allowInMemoryFallback) return identityString;
    throw new VaultCryptoError('no-x25519', { cause });
  } finally {
    pkcs8.fill(0);
  }
}

/**
 * The recipient ('age1…') of an identity, string or imported key: the page checks it
 * against the recipient the server has on file before trusting either.
 */
export async function recipientOf(identity) {
  return identityToRecipient(identity);
}

function decodeIdentity(identityString) {
  if (typeof identityString !== 'string' || !identityString.startsWith('AGE-SECRET-KEY-1')) {
    throw new VaultCryptoError('malformed');
  }
  let decoded;
  try {
    decoded = bech32.decodeToBytes(identityString);
  } catch (cause) {
    throw new VaultCryptoError('malformed', { cause });
  }
  if (decoded.prefix.toUpperCase() !== 'AGE-SECRET-KEY-' || decoded.bytes.length !== 32) {
    throw new VaultCryptoError('malformed');
  }
  return decoded.bytes;
}
