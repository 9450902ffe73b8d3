//! The page scripts that hold vault keys (the locked vault's, the agent's delivery
//! page's), served from here with the Subresource Integrity
//! hashes their pages name them by: a script altered on the way (or in a cache) is
//! refused by the browser instead of running beside the citizen's vault key.

use std::sync::LazyLock;

use base64::Engine;
use sha2::{Digest, Sha384};

/// The age and passkey crypto bundle (`web-crypto/`, built by esbuild).
pub const VAULT_CRYPTO_JS: &str = include_str!("../../static/vault-crypto.js");
/// The Security page: locking, passkeys, recovery code.
pub const VAULT_SECURITY_JS: &str = include_str!("../../static/vault-security.js");
/// The list of a locked vault: opening it, titles and downloads decrypted in the page.
pub const VAULT_LOCKED_JS: &str = include_str!("../../static/vault-locked.js");

/// The agent's delivery page: encrypts the file for the vault's key before sending.
pub const AGENT_DELIVER_JS: &str = include_str!("../../static/agent-deliver.js");

/// The `integrity` attribute of each vault script.
pub struct VaultScripts {
    crypto: String,
    security: String,
    locked: String,
    agent_deliver: String,
}

impl VaultScripts {
    /// Adds `vault_crypto_integrity`, `vault_security_integrity`,
    /// `vault_locked_integrity` and `agent_deliver_integrity` to a page's context.
    pub fn insert_into(&self, context: &mut tera::Context) {
        context.insert("vault_crypto_integrity", &self.crypto);
        context.insert("vault_security_integrity", &self.security);
        context.insert("vault_locked_integrity", &self.locked);
        context.insert("agent_deliver_integrity", &self.agent_deliver);
    }
}

/// The hashes, computed once.
pub fn vault_script_integrity() -> &'static VaultScripts {
    static SCRIPTS: LazyLock<VaultScripts> = LazyLock::new(|| VaultScripts {
        crypto: integrity(VAULT_CRYPTO_JS),
        security: integrity(VAULT_SECURITY_JS),
        locked: integrity(VAULT_LOCKED_JS),
        agent_deliver: integrity(AGENT_DELIVER_JS),
    });
    &SCRIPTS
}

/// `sha384-<base64>`, as Subresource Integrity writes it.
fn integrity(body: &str) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(body.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_the_sri_form_of_sha384() {
        // `printf 'alert(1)' | openssl dgst -sha384 -binary | base64`
        assert_eq!(
            integrity("alert(1)"),
            "sha384-HT2E9NfWiuQ/w1PRai+hTyqW16NIoCGA/m8VQDUopfAtcz6YQjtsMmQd5uRbVDpW"
        );
    }
}
