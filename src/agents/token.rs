//! API tokens: `egt_` followed by 64 hex digits (256 random bits).

use std::fmt;

const PREFIX: &str = "egt_";

/// A plain API token. Its `Debug` never shows the secret.
pub struct ApiToken(String);

/// Why a presented token was refused before any lookup.
#[derive(Debug, thiserror::Error)]
#[error("malformed API token")]
pub struct TokenError;

impl ApiToken {
    /// A new random token.
    pub fn generate() -> Self {
        let random: [u8; 32] = crate::crypto::random_bytes();
        Self(format!("{PREFIX}{}", hex::encode(random)))
    }

    /// Checks the shape of a presented token (no database access).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let digits = text.strip_prefix(PREFIX).ok_or(TokenError)?;
        if digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(TokenError)
        }
    }

    /// What the database stores.
    pub fn hash(&self) -> String {
        crate::crypto::sha256_hex(self.0.as_bytes())
    }

    /// The secret itself, to show once to whoever asked for it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_hide() {
        let token = ApiToken::generate();
        let parsed = ApiToken::parse(token.reveal()).unwrap();
        assert_eq!(parsed.hash(), token.hash());
        assert!(!format!("{token:?}").contains(&token.reveal()[4..]));
        for bad in ["", "egt_", "egt_xyz", "Bearer egt_00", &token.reveal()[1..]] {
            assert!(ApiToken::parse(bad).is_err(), "{bad}");
        }
    }
}
