// The one error type the vault page sees. Its `kind` is a stable message key the page
// translates for the citizen; the underlying library message stays in `cause` for the
// console and never reaches the screen as is.

/** Every kind a function of this library may report. */
export const ERROR_KINDS = Object.freeze([
  'wrong-key', // the passkey's key does not open this wrapped identity
  'wrong-code', // the recovery code does not open this recovery file
  'malformed-code', // what was typed cannot be a recovery code (length, letters)
  'not-for-this-vault', // the file is sealed to someone else's vault
  'tampered', // a header or payload was altered or cut short
  'malformed', // bytes that are not what this library writes
  'no-webauthn', // the browser has no passkeys at all
  'no-prf', // the browser or passkey cannot derive keys (PRF extension)
  'no-x25519', // the browser cannot keep the vault key as a WebCrypto key
  'interrupted', // the download itself failed: trying again may work
]);

/** A failure the page can explain: `kind` is one of ERROR_KINDS. */
export class VaultCryptoError extends Error {
  constructor(kind, options) {
    super(`vault crypto: ${kind}`, options);
    this.name = 'VaultCryptoError';
    this.kind = kind;
  }
}

// age-encryption reports failures as plain Errors with English messages; these are
// the ones that mean "this key does not open this file" rather than "altered bytes".
export function isNoMatchingIdentity(error) {
  return error instanceof Error && /no identity matched/.test(error.message);
}
