//! URL-encoded parameters (query strings and forms) read strictly: a parameter given
//! twice is remembered as such rather than silently resolved to one of its values.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpMessage, HttpRequest};

/// The parameters of one request, by name.
pub(super) struct Params {
    values: BTreeMap<String, String>,
    repeated: BTreeSet<String>,
}

/// The body is not an `application/x-www-form-urlencoded` form.
pub(super) struct NotAForm;

impl Params {
    /// Reads a query string.
    pub(super) fn from_query(query: &str) -> Self {
        Self::from_encoded(query.as_bytes())
    }

    /// Reads a form body, refusing any other content type.
    pub(super) fn from_form(request: &HttpRequest, body: &[u8]) -> Result<Self, NotAForm> {
        if !request
            .content_type()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            return Err(NotAForm);
        }
        Ok(Self::from_encoded(body))
    }

    fn from_encoded(encoded: &[u8]) -> Self {
        let mut values = BTreeMap::new();
        let mut repeated = BTreeSet::new();
        for (name, value) in url::form_urlencoded::parse(encoded) {
            if values.contains_key(name.as_ref()) {
                repeated.insert(name.into_owned());
            } else {
                values.insert(name.into_owned(), value.into_owned());
            }
        }
        Self { values, repeated }
    }

    /// The value of a parameter given exactly once and not empty.
    pub(super) fn single(&self, name: &str) -> Option<&str> {
        if self.repeated.contains(name) {
            return None;
        }
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// Every parameter name, once each.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The first parameter given more than once, if any.
    pub(super) fn first_repeated(&self) -> Option<&str> {
        self.repeated.iter().next().map(String::as_str)
    }
}

/// A parameter name safe to quote back in an `error_description` (ASCII, short).
pub(super) fn quotable(name: &str) -> &str {
    let plain = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if plain { name } else { "(unprintable)" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_have_no_single_value() {
        let params = Params::from_query("state=a&state=b&nonce=n&scope=");
        assert_eq!(params.single("state"), None);
        assert_eq!(params.first_repeated(), Some("state"));
        assert_eq!(params.single("nonce"), Some("n"));
        assert_eq!(params.single("scope"), None);
        assert_eq!(
            params.names().collect::<Vec<_>>(),
            ["nonce", "scope", "state"]
        );
    }

    #[test]
    fn only_plain_names_are_quoted() {
        assert_eq!(quotable("foo_bar"), "foo_bar");
        assert_eq!(quotable("<script>"), "(unprintable)");
    }
}
