// The passkey side of a locked vault: whether this browser can lock at all, and the
// AES-GCM key derived from a passkey's PRF output that wraps the vault identity.
// WebAuthn calls themselves (create/get) stay in the page; this only shapes their
// PRF inputs and outputs.

import { VaultCryptoError } from './errors.mjs';

/** HKDF info and AES-GCM additional data; changing it makes every wrapped identity unreadable. */
export const WRAP_INFO = 'e-guichet vault identity wrap v1';
const WRAP_INFO_BYTES = new TextEncoder().encode(WRAP_INFO);
const IV_LENGTH = 12;
const GCM_TAG_LENGTH = 16;

/**
 * Whether this browser can lock a vault with a passkey.
 * Resolves to `{supported, reason?}`; `reason` is a message key the page translates.
 * `supported: true` with reason 'prf-unknown' means the browser cannot say in advance:
 * registration will tell (a passkey whose response reports no PRF is refused then).
 */
export async function passkeyPrfSupport() {
  const credentialClass = globalThis.PublicKeyCredential;
  if (typeof credentialClass !== 'function' || !globalThis.navigator?.credentials) {
    return { supported: false, reason: 'no-webauthn' };
  }
  if (typeof credentialClass.getClientCapabilities !== 'function') {
    return { supported: true, reason: 'prf-unknown' };
  }
  let capabilities;
  try {
    capabilities = await credentialClass.getClientCapabilities();
  } catch {
    // A browser that has the method but fails it knows no more than one without it.
    return { supported: true, reason: 'prf-unknown' };
  }
  const prf = capabilities?.['extension:prf'];
  if (prf === true) return { supported: true };
  if (prf === false) return { supported: false, reason: 'no-prf' };
  return { supported: true, reason: 'prf-unknown' };
}

/** 32 fresh random bytes: one per passkey, kept by the server beside the wrapped identity. */
export function newPasskeySalt() {
  return crypto.getRandomValues(new Uint8Array(32));
}

/**
 * The `extensions` member for navigator.credentials.create/get asking the passkey for
 * its PRF output on `prfInput` (the passkey's salt).
 */
export function prfExtensionInput(prfInput) {
  return { prf: { eval: { first: requireBytes(prfInput, 32, 'prf input') } } };
}

/**
 * The 32-byte PRF output from a credential returned by create or get.
 * Throws 'no-prf' when the authenticator gave none: Windows Hello, for one, reports
 * PRF as enabled at creation and then returns nothing, so the page must call `get`
 * once right after registering and rely on this check, not on `prf.enabled`.
 */
export function prfOutputFrom(credential) {
  const results = credential?.getClientExtensionResults?.()?.prf?.results;
  const first = results?.first;
  if (first == null) throw new VaultCryptoError('no-prf');
  const bytes = first instanceof ArrayBuffer
    ? new Uint8Array(first)
    : new Uint8Array(first.buffer, first.byteOffset, first.byteLength);
  if (bytes.length !== 32) throw new VaultCryptoError('no-prf');
  return bytes;
}

/**
 * The AES-256-GCM key that wraps the vault identity for one passkey.
 * HKDF-SHA256 over the PRF output, salted per passkey, named by WRAP_INFO.
 * Not extractable: once derived, the key cannot be read back out of WebCrypto.
 */
export async function deriveWrappingKey(prfOutput, salt) {
  requireBytes(prfOutput, 32, 'PRF output');
  requireBytes(salt, 32, 'salt');
  const secret = await crypto.subtle.importKey('raw', prfOutput, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt, info: WRAP_INFO_BYTES },
    secret,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

/** The vault identity encrypted under a passkey's key: 12-byte IV followed by AES-GCM ciphertext. */
export async function wrapIdentity(identityString, wrappingKey) {
  if (typeof identityString !== 'string' || !identityString.startsWith('AGE-SECRET-KEY-1')) {
    throw new VaultCryptoError('malformed');
  }
  const iv = crypto.getRandomValues(new Uint8Array(IV_LENGTH));
  const ciphertext = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: WRAP_INFO_BYTES },
    wrappingKey,
    new TextEncoder().encode(identityString),
  );
  const out = new Uint8Array(IV_LENGTH + ciphertext.byteLength);
  out.set(iv);
  out.set(new Uint8Array(ciphertext), IV_LENGTH);
  return out;
}

/** The vault identity string back from wrapIdentity's bytes; 'wrong-key' if this passkey's key is not the one. */
export async function unwrapIdentity(bytes, wrappingKey) {
  if (!(bytes instanceof Uint8Array) || bytes.length < IV_LENGTH + GCM_TAG_LENGTH) {
    throw new VaultCryptoError('malformed');
  }
  let plaintext;
  try {
    plaintext = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.subarray(0, IV_LENGTH), additionalData: WRAP_INFO_BYTES },
      wrappingKey,
      bytes.subarray(IV_LENGTH),
    );
  } catch (cause) {
    // AES-GCM cannot tell a wrong key from altered bytes; for a citizen the remedy is
    // the same (another passkey, or the recovery code).
    throw new VaultCryptoError('wrong-key', { cause });
  }
  const identity = new TextDecoder().decode(plaintext);
  if (!identity.startsWith('AGE-SECRET-KEY-1')) throw new VaultCryptoError('malformed');
  return identity;
}

function requireBytes(value, length, what) {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new VaultCryptoError('malformed', { cause: new Error(`${what} must be ${length} bytes`) });
  }
  return value;
}
