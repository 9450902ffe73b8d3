//! Which scopes the provider accepts and which identity claims each one releases, after
//! FranceConnect v2's `fcp-low` scope table.

use std::collections::BTreeSet;

/// The scopes an authorization request may name; any other is refused.
pub(super) const SUPPORTED_SCOPES: [&str; 11] = [
    "openid",
    "given_name",
    "family_name",
    "birthdate",
    "birthplace",
    "birthcountry",
    "gender",
    "email",
    "preferred_username",
    "identite_pivot",
    "profile",
];

/// Identity claims, each also a scope that releases only itself.
pub(super) const IDENTITY_CLAIMS: [&str; 8] = [
    "given_name",
    "family_name",
    "birthdate",
    "birthplace",
    "birthcountry",
    "gender",
    "email",
    "preferred_username",
];

/// What `claims_supported` advertises: the identity claims and the authentication ones.
pub(super) const SUPPORTED_CLAIMS: [&str; 12] = [
    "sub",
    "given_name",
    "family_name",
    "birthdate",
    "birthplace",
    "birthcountry",
    "gender",
    "email",
    "preferred_username",
    "acr",
    "amr",
    "auth_time",
];

/// The identity claims a whole scope value releases.
pub(super) fn released_claims(scopes: &[String]) -> BTreeSet<&'static str> {
    scopes
        .iter()
        .flat_map(|scope| claims_of(scope).iter().copied())
        .collect()
}

fn claims_of(scope: &str) -> &'static [&'static str] {
    match scope {
        "identite_pivot" => &[
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "birthplace",
            "birthcountry",
        ],
        // v2 dropped preferred_username from identite_pivot but kept it in profile.
        "profile" => &[
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "preferred_username",
        ],
        single => IDENTITY_CLAIMS
            .iter()
            .find(|claim| **claim == single)
            .map_or(&[], std::slice::from_ref),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(value: &str) -> Vec<String> {
        value.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn identite_pivot_has_no_email_nor_usage_name() {
        let released = released_claims(&scopes("openid identite_pivot"));
        assert_eq!(
            released.into_iter().collect::<Vec<_>>(),
            [
                "birthcountry",
                "birthdate",
                "birthplace",
                "family_name",
                "gender",
                "given_name"
            ]
        );
    }

    #[test]
    fn single_claim_scopes_release_only_themselves() {
        let released = released_claims(&scopes("openid email family_name"));
        assert_eq!(
            released.into_iter().collect::<Vec<_>>(),
            ["email", "family_name"]
        );
        assert!(released_claims(&scopes("openid")).is_empty());
    }
}
