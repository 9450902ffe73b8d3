//! How much a login proves: whether the level a provider asserts (`acr`) is at least
//! the one asked for, and whether the login guarantees the identity it asserts, which
//! alone lets it open the documents addressed to that identity.

use crate::citizens::AssertedIdentity;
use crate::config::{ProviderConfig, ProviderKind};

/// Prefix of the Belgian FAS levels, `urn:be:fedict:iam:fas:Level100` … `Level500`.
const FAS_LEVEL_PREFIX: &str = "urn:be:fedict:iam:fas:Level";

/// A level on one of the scales that order their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// `eidas1` < `eidas2` < `eidas3` (FranceConnect, FranceConnect+).
    Eidas(u8),
    /// FAS levels, ordered by their number (`Level450` is itsme or the eID card,
    /// `Level500` the eID card alone).
    Fas(u16),
}

impl Level {
    fn parse(acr: &str) -> Option<Self> {
        match acr {
            "eidas1" => Some(Self::Eidas(1)),
            "eidas2" => Some(Self::Eidas(2)),
            "eidas3" => Some(Self::Eidas(3)),
            _ => {
                let number = acr.strip_prefix(FAS_LEVEL_PREFIX)?;
                if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                number.parse().ok().map(Self::Fas)
            }
        }
    }

    /// Whether `self` is at least `wanted`; levels of different scales never compare.
    fn at_least(self, wanted: Self) -> bool {
        match (self, wanted) {
            (Self::Eidas(got), Self::Eidas(wanted)) => got >= wanted,
            (Self::Fas(got), Self::Fas(wanted)) => got >= wanted,
            _ => false,
        }
    }
}

/// Whether the level the provider asserts is at least one of those asked for
/// (`acr_values` lists acceptable values). Values on an ordered scale (eIDAS, FAS)
/// accept any stronger level of the same scale; any other value must match exactly.
pub fn acr_satisfies(requested: Option<&str>, asserted: Option<&str>) -> bool {
    let Some(requested) = requested else {
        return true;
    };
    let Some(asserted) = asserted else {
        return false;
    };
    let got = Level::parse(asserted);
    requested.split_whitespace().any(|wanted| {
        wanted == asserted
            || matches!((got, Level::parse(wanted)), (Some(got), Some(wanted)) if got.at_least(wanted))
    })
}

/// Whether a provider, by its kind or by its operator's statement, is one whose logins
/// can guarantee identity. Used for logins recorded before each login's own assurance
/// was kept.
pub fn provider_vouches_for_identity(config: &ProviderConfig) -> bool {
    config.identity_verified
        || matches!(config.kind, ProviderKind::Franceconnect | ProviderKind::Fas)
}

/// Whether this login guarantees the identity it asserts: FranceConnect at `eidas1` or
/// above (what FranceConnect checks against the civil registers), the FAS with a
/// national register number, or a provider its operator declared `identity_verified`.
/// Anything else (a generic provider's self-declared names) proves nothing about who
/// the person is, and must never open documents addressed to someone's identity.
pub fn login_guarantees_identity(
    config: &ProviderConfig,
    asserted_acr: Option<&str>,
    identity: &AssertedIdentity,
) -> bool {
    if matches!(identity, AssertedIdentity::Unmatched) {
        return false;
    }
    if config.identity_verified {
        return true;
    }
    match (config.kind, identity) {
        (ProviderKind::Franceconnect, AssertedIdentity::Pivot(_)) => {
            acr_satisfies(Some("eidas1"), asserted_acr)
        }
        (ProviderKind::Fas, AssertedIdentity::NationalRegisterNumber(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eidas_levels_are_ordered() {
        assert!(acr_satisfies(Some("eidas1"), Some("eidas1")));
        assert!(acr_satisfies(Some("eidas1"), Some("eidas2")));
        assert!(!acr_satisfies(Some("eidas2"), Some("eidas1")));
        assert!(!acr_satisfies(Some("eidas1"), None));
        assert!(acr_satisfies(None, None));
        assert!(acr_satisfies(Some("custom"), Some("custom")));
        assert!(!acr_satisfies(Some("custom"), Some("other")));
    }

    #[test]
    fn fas_levels_are_ordered_by_their_number() {
        let fas = |n: &str| format!("{FAS_LEVEL_PREFIX}{n}");
        assert!(acr_satisfies(Some(&fas("450")), Some(&fas("500"))));
        assert!(acr_satisfies(Some(&fas("450")), Some(&fas("450"))));
        assert!(!acr_satisfies(Some(&fas("450")), Some(&fas("400"))));
        assert!(!acr_satisfies(Some(&fas("500")), Some(&fas("450"))));
        assert!(acr_satisfies(Some(&fas("100")), Some(&fas("500"))));
        // Scales never compare with each other, and a malformed level is not a level.
        assert!(!acr_satisfies(Some(&fas("100")), Some("eidas3")));
        assert!(!acr_satisfies(Some("eidas1"), Some(&fas("500"))));
        assert!(!acr_satisfies(Some(&fas("450")), Some(&fas("500x"))));
        assert!(!acr_satisfies(Some(&fas("450")), Some(&fas(""))));
        // Any one of several acceptable values is enough.
        assert!(acr_satisfies(
            Some(&format!("{} {}", fas("500"), fas("450"))),
            Some(&fas("450"))
        ));
    }
}
