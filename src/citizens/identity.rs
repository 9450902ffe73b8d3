//! The ways an agent can name a citizen before that citizen ever logs in: the French
//! pivot identity (names, birth date, birth place) or the Belgian national register
//! number. Both are normalised so that the agent's spelling and the identity
//! provider's spelling give the same keyed hash.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Why an identity was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} is too long")]
    TooLong(&'static str),
    #[error("birthdate must be a date written YYYY-MM-DD")]
    BirthDate,
    #[error(
        "birthplace must be a 5-character INSEE code (e.g. 75056, 2A004) or empty for a birth abroad"
    )]
    BirthPlace,
    #[error("not a valid national register number (11 digits with a valid check number)")]
    NationalRegisterNumber,
}

/// A pivot identity as an agent or a business application sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PivotInput {
    pub family_name: String,
    /// All given names, separated by spaces, as on the birth certificate.
    pub given_names: String,
    /// `YYYY-MM-DD`; a presumed date is written `YYYY-01-01`.
    pub birthdate: String,
    /// INSEE code of the birth commune; empty for a birth abroad.
    #[serde(default)]
    pub birthplace: String,
}

/// A normalised pivot identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PivotIdentity {
    family_name: String,
    given_names: String,
    birthdate: NaiveDate,
    birthplace: String,
}

const MAX_NAME_CHARS: usize = 200;

impl PivotIdentity {
    /// Normalises names (accents, case, hyphens, apostrophes, spaces) and checks the rest.
    pub fn normalise(input: &PivotInput) -> Result<Self, IdentityError> {
        let family_name = normalise_name(&input.family_name, "family_name")?;
        let given_names = normalise_name(&input.given_names, "given_names")?;
        let birthdate = NaiveDate::parse_from_str(input.birthdate.trim(), "%Y-%m-%d")
            .map_err(|_| IdentityError::BirthDate)?;
        let birthplace = input.birthplace.trim().to_uppercase();
        if !birthplace.is_empty() && !is_insee_commune_code(&birthplace) {
            return Err(IdentityError::BirthPlace);
        }
        Ok(Self {
            family_name,
            given_names,
            birthdate,
            birthplace,
        })
    }

    /// The canonical text that is hashed and sealed.
    pub fn canonical(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.family_name, self.given_names, self.birthdate, self.birthplace
        )
    }
}

/// Upper-case ASCII letters and single spaces: "Jean-Éric  d'Ornée" → "JEAN ERIC D ORNEE".
fn normalise_name(text: &str, field: &'static str) -> Result<String, IdentityError> {
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(IdentityError::TooLong(field));
    }
    let folded: String = text
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .map(|c| match c {
            'ß' => 's',
            'œ' | 'Œ' => 'o',
            'æ' | 'Æ' => 'a',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .flat_map(char::to_uppercase)
        .collect();
    let normalised = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if normalised.is_empty() {
        return Err(IdentityError::Missing(field));
    }
    Ok(normalised)
}

/// Five characters: two digits (or 2A/2B for Corsica) then three digits.
fn is_insee_commune_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 5
        && (bytes[..2].iter().all(u8::is_ascii_digit) || matches!(&bytes[..2], b"2A" | b"2B"))
        && bytes[2..].iter().all(u8::is_ascii_digit)
}

/// A Belgian national register number (rijksregisternummer), digits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NationalRegisterNumber(String);

impl NationalRegisterNumber {
    /// Accepts the usual written forms (`85.07.30-033.28`, spaces) and checks the
    /// check number, which is computed with a leading `2` for births from 2000.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let digits: String = text
            .chars()
            .filter(|c| !matches!(c, '.' | '-' | ' '))
            .collect();
        if digits.len() != 11 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentityError::NationalRegisterNumber);
        }
        let (body, check) = digits.split_at(9);
        let body: u64 = body
            .parse()
            .map_err(|_| IdentityError::NationalRegisterNumber)?;
        let check: u64 = check
            .parse()
            .map_err(|_| IdentityError::NationalRegisterNumber)?;
        let valid = |n: u64| 97 - n % 97 == check;
        if valid(body) || valid(2_000_000_000 + body) {
            Ok(Self(digits))
        } else {
            Err(IdentityError::NationalRegisterNumber)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pivot(family: &str, given: &str, date: &str, place: &str) -> PivotInput {
        PivotInput {
            family_name: family.to_owned(),
            given_names: given.to_owned(),
            birthdate: date.to_owned(),
            birthplace: place.to_owned(),
        }
    }

    #[test]
    fn spellings_of_one_person_normalise_alike() {
        let agent = PivotIdentity::normalise(&pivot(
            "  D'Ornée-Lefèvre ",
            "Jean-Éric  Marie",
            "1980-07-30",
            "2a004",
        ))
        .unwrap();
        let provider = PivotIdentity::normalise(&pivot(
            "D ORNEE LEFEVRE",
            "jean eric marie",
            "1980-07-30",
            "2A004",
        ))
        .unwrap();
        assert_eq!(agent, provider);
        assert_eq!(
            agent.canonical(),
            "D ORNEE LEFEVRE|JEAN ERIC MARIE|1980-07-30|2A004"
        );
    }

    #[test]
    fn born_abroad_and_presumed_dates_are_valid() {
        assert!(PivotIdentity::normalise(&pivot("Diallo", "Awa", "1975-01-01", "")).is_ok());
    }

    #[test]
    fn bad_pivots_are_refused_with_the_field_named() {
        let cases = [
            (
                pivot("", "Awa", "1975-01-01", ""),
                IdentityError::Missing("family_name"),
            ),
            (
                pivot("Diallo", " - ", "1975-01-01", ""),
                IdentityError::Missing("given_names"),
            ),
            (
                pivot("Diallo", "Awa", "01/01/1975", ""),
                IdentityError::BirthDate,
            ),
            (
                pivot("Diallo", "Awa", "1975-02-30", ""),
                IdentityError::BirthDate,
            ),
            (
                pivot("Diallo", "Awa", "1975-01-01", "Paris"),
                IdentityError::BirthPlace,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(PivotIdentity::normalise(&input).unwrap_err(), expected);
        }
    }

    #[test]
    fn national_register_numbers_check_their_check_number() {
        // Born 1985: 97 - (850730033 mod 97) = 28.
        assert!(NationalRegisterNumber::parse("85.07.30-033.28").is_ok());
        // Born 2001: the check number is computed over 2 followed by the digits.
        let body = 10_203_004u64; // 01.02.03-004
        let check = 97 - (2_000_000_000 + body) % 97;
        let nrn = format!("{body:09}{check:02}");
        assert!(NationalRegisterNumber::parse(&nrn).is_ok());
        for bad in ["85.07.30-033.29", "8507300332", "85073003328x", ""] {
            assert!(NationalRegisterNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
