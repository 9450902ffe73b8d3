// A locked vault in the citizen's page: opening it with a passkey or the recovery code,
// the /vault list decrypted in the page, and adding a passkey. Filled in below.
export {};
