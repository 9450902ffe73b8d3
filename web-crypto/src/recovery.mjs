// The recovery code: the one way into a locked vault that needs no passkey. The page
// shows it once; the server keeps only the vault identity sealed under it with age's
// scrypt passphrase recipient, and never sees the code.

import { Decrypter, Encrypter } from 'age-encryption';
import { VaultCryptoError, isNoMatchingIdentity } from './errors.mjs';

// Crockford base32: no I, L, O or U, so a code copied by hand cannot be misread.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Groups of four characters, 5 bits each: 7 × 4 × 5 = 140 bits. */
export const RECOVERY_GROUPS = 7;
export const RECOVERY_GROUP_LENGTH = 4;
const CODE_LENGTH = RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH;

/** A fresh recovery code, e.g. "7K3M-QX9D-…" (7 groups of 4, 140 random bits). */
export function newRecoveryCode() {
  const bytes = crypto.getRandomValues(new Uint8Array(CODE_LENGTH));
  // 256 is a multiple of 32, so keeping the low 5 bits of each byte is uniform.
  const characters = Array.from(bytes, (b) => ALPHABET[b & 31]);
  bytes.fill(0);
  return group(characters.join(''));
}

/**
 * The canonical form of a typed recovery code: 28 characters, upper case, no
 * separators. Spaces and dashes are ignored, O reads as 0, I and L as 1.
 * Throws 'malformed-code' when it cannot be a code, before any slow scrypt work.
 */
export function normalizeRecoveryCode(typed) {
  if (typeof typed !== 'string') throw new VaultCryptoError('malformed-code');
  const canonical = lenient(typed);
  if (canonical.length !== CODE_LENGTH || ![...canonical].every((c) => ALPHABET.includes(c))) {
    throw new VaultCryptoError('malformed-code');
  }
  return canonical;
}

/** The code as it is shown and printed: groups of four joined by dashes. */
export function formatRecoveryCode(code) {
  return group(normalizeRecoveryCode(code));
}

/**
 * Which group the citizen must type back to show the code was written down:
 * `{index}` is 0-based, `{number}` is what the page shows ("group 3").
 */
export function recoveryCodeChallenge(code) {
  normalizeRecoveryCode(code);
  // Rejection sampling keeps every group equally likely.
  const limit = 256 - (256 % RECOVERY_GROUPS);
  const byte = new Uint8Array(1);
  do crypto.getRandomValues(byte); while (byte[0] >= limit);
  const index = byte[0] % RECOVERY_GROUPS;
  return { index, number: index + 1 };
}

/** Whether `typed` is the group at `index` of `code`, read with the same leniency as the code. */
export function answersRecoveryChallenge(code, index, typed) {
  const start = index * RECOVERY_GROUP_LENGTH;
  const expected = normalizeRecoveryCode(code).slice(start, start + RECOVERY_GROUP_LENGTH);
  return lenient(String(typed)) === expected;
}

/**
 * The vault identity sealed under the recovery code: a complete age file with one
 * scrypt stanza (age's default work factor, 2^18: about 2.5 s in Node on a busy
 * machine; the page should show that it is working).
 */
export async function sealToRecoveryCode(identityString, code) {
  if (typeof identityString !== 'string' || !identityString.startsWith('AGE-SECRET-KEY-1')) {
    throw new VaultCryptoError('malformed');
  }
  const encrypter = new Encrypter();
  encrypter.setPassphrase(normalizeRecoveryCode(code));
  return encrypter.encrypt(identityString);
}

/** The vault identity from sealToRecoveryCode's bytes; 'wrong-code' if the code is not the one. */
export async function openWithRecoveryCode(bytes, code) {
  const passphrase = normalizeRecoveryCode(code);
  const decrypter = new Decrypter();
  decrypter.addPassphrase(passphrase);
  let identity;
  try {
    identity = await decrypter.decrypt(bytes, 'text');
  } catch (cause) {
    if (isNoMatchingIdentity(cause)) throw new VaultCryptoError('wrong-code', { cause });
    throw new VaultCryptoError('malformed', { cause });
  }
  if (!identity.startsWith('AGE-SECRET-KEY-1')) throw new VaultCryptoError('malformed');
  return identity;
}

// Upper case, no spaces or dashes of any kind, and the letters Crockford base32 left
// out read as the digits they look like.
function lenient(typed) {
  return typed
    .toUpperCase()
    .replace(/[\s\u002d\u2010-\u2015\u2212]/g, '')
    .replace(/O/g, '0')
    .replace(/[IL]/g, '1');
}

function group(canonical) {
  const groups = [];
  for (let i = 0; i < canonical.length; i += RECOVERY_GROUP_LENGTH) {
    groups.push(canonical.slice(i, i + RECOVERY_GROUP_LENGTH));
  }
  return groups.join('-');
}
