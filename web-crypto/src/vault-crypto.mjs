// The crypto of a zero-access vault, as it runs in the citizen's (or agent's) page:
// locking with a passkey, the recovery code, the vault key kept in WebCrypto, and
// documents decrypted and encrypted in the page in the server's storage format.
// Bundled by build.mjs into static/vault-crypto.js; every export is listed here.

export { ERROR_KINDS, VaultCryptoError } from './errors.mjs';
export {
  WRAP_INFO,
  passkeyPrfSupport,
  newPasskeySalt,
  prfExtensionInput,
  prfOutputFrom,
  deriveWrappingKey,
  wrapIdentity,
  unwrapIdentity,
} from './passkey.mjs';
export {
  RECOVERY_GROUPS,
  RECOVERY_GROUP_LENGTH,
  newRecoveryCode,
  normalizeRecoveryCode,
  formatRecoveryCode,
  recoveryCodeChallenge,
  answersRecoveryChallenge,
  sealToRecoveryCode,
  openWithRecoveryCode,
} from './recovery.mjs';
export { generateVaultIdentity, importIdentity, recipientOf } from './identity.mjs';
export {
  sealText,
  openSealed,
  inspectHeader,
  headerRecipientCount,
  decryptDocument,
  encryptDocument,
} from './documents.mjs';
