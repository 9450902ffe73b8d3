// The vault's security page: locking the vault with a passkey, the recovery code, and
// the passkeys of a locked vault.
export {};
