//! Voucher codes: 115 random bits written as 23 characters of Crockford's base 32,
//! plus a check character (Luhn mod 32) that catches any single mistyped character and
//! any swap of two neighbours but `0`/`Z`. Shown in groups of four; read back forgivingly (case,
//! spaces, dashes, and the letters people confuse with digits).

use rand::RngCore;

use crate::crypto::{HashDomain, KeyedHasher};

/// Crockford's base-32 alphabet: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of randomness (23 × 5 = 115 bits).
const PAYLOAD_CHARS: usize = 23;
/// Characters per group when shown.
const GROUP: usize = 4;

/// A well-formed voucher code (payload and a matching check character).
#[derive(Clone, PartialEq, Eq)]
pub struct VoucherCode(String);

/// Why a typed or scanned code was refused; safe to show to the distributor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CodeError {
    #[error("a code has {expected} characters; this one has {found}")]
    Length { expected: usize, found: usize },
    #[error("the character {0:?} cannot appear in a code")]
    Character(char),
    #[error("the code is mistyped (its check character does not match)")]
    Check,
}

impl VoucherCode {
    /// A new code from the operating system's random generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; PAYLOAD_CHARS];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let payload: Vec<u8> = bytes
            .iter()
            .map(|byte| ALPHABET[usize::from(byte & 31)])
            .collect();
        let check = check_character(&payload);
        let mut code = String::from_utf8_lossy(&payload).into_owned();
        code.push(char::from(check));
        Self(code)
    }

    /// Reads a code as typed or scanned: case, spaces and dashes do not matter, and
    /// I/L read as 1, O as 0. Refuses a wrong length, a foreign character or a code
    /// whose check character does not match.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let mut normalised = Vec::with_capacity(PAYLOAD_CHARS + 1);
        for c in text.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                other => other,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(CodeError::Character(c));
            }
            normalised.push(c as u8);
        }
        if normalised.len() != PAYLOAD_CHARS + 1 {
            return Err(CodeError::Length {
                expected: PAYLOAD_CHARS + 1,
                found: normalised.len(),
            });
        }
        let (payload, check) = normalised.split_at(PAYLOAD_CHARS);
        if check_character(payload) != check[0] {
            return Err(CodeError::Check);
        }
        Ok(Self(String::from_utf8_lossy(&normalised).into_owned()))
    }

    /// The code in groups of four, as printed and shown: `ABCD-EFGH-…`.
    pub fn grouped(&self) -> String {
        self.0
            .as_bytes()
            .chunks(GROUP)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The canonical form: 24 characters, no separators (what a QR code holds).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The keyed hash the database keeps instead of the code.
    pub fn keyed_hash(&self, hasher: &KeyedHasher) -> String {
        hasher.hash(HashDomain::VoucherCode, self.0.as_bytes())
    }
}

/// Codes never appear in logs or debug output.
impl std::fmt::Debug for VoucherCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VoucherCode(…)")
    }
}

fn value_of(c: u8) -> usize {
    ALPHABET.iter().position(|&a| a == c).unwrap_or(0)
}

/// Luhn mod N over base 32: every single substitution changes it, and every swap of
/// two different neighbouring characters except the pair worth 0 and 31 (`0`, `Z`).
fn check_character(payload: &[u8]) -> u8 {
    let n = ALPHABET.len();
    let mut sum = 0;
    let mut double = true;
    for &c in payload.iter().rev() {
        let mut addend = value_of(c);
        if double {
            addend *= 2;
            addend = addend / n + addend % n;
        }
        sum += addend;
        double = !double;
    }
    ALPHABET[(n - sum % n) % n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_read_back_in_any_presentation() {
        for _ in 0..200 {
            let code = VoucherCode::generate();
            assert_eq!(code.as_str().len(), 24);
            assert_eq!(VoucherCode::parse(code.as_str()).unwrap(), code);
            assert_eq!(VoucherCode::parse(&code.grouped()).unwrap(), code);
            let typed = code.grouped().to_lowercase().replace('-', " ");
            assert_eq!(VoucherCode::parse(&typed).unwrap(), code);
        }
    }

    #[test]
    fn look_alike_letters_read_as_digits() {
        let code = loop {
            let code = VoucherCode::generate();
            if code.as_str().contains('1') || code.as_str().contains('0') {
                break code;
            }
        };
        let typed = code.as_str().replace('1', "l").replace('0', "O");
        assert_eq!(VoucherCode::parse(&typed).unwrap(), code);
    }

    #[test]
    fn every_single_mistyped_character_is_caught() {
        let code = VoucherCode::generate();
        let original = code.as_str().as_bytes().to_vec();
        for position in 0..original.len() {
            for &replacement in ALPHABET {
                if replacement == original[position] {
                    continue;
                }
                let mut typo = original.clone();
                typo[position] = replacement;
                let typo = String::from_utf8(typo).unwrap();
                assert!(VoucherCode::parse(&typo).is_err(), "{position} {typo}");
            }
        }
    }

    #[test]
    fn swapped_neighbours_are_caught() {
        for _ in 0..50 {
            let code = VoucherCode::generate();
            let original = code.as_str().as_bytes().to_vec();
            for position in 0..original.len() - 1 {
                let pair = [original[position], original[position + 1]];
                if pair[0] == pair[1] || pair == *b"0Z" || pair == *b"Z0" {
                    continue;
                }
                let mut swapped = original.clone();
                swapped.swap(position, position + 1);
                let swapped = String::from_utf8(swapped).unwrap();
                assert_eq!(
                    VoucherCode::parse(&swapped),
                    Err(CodeError::Check),
                    "{position}"
                );
            }
        }
    }

    #[test]
    fn malformed_codes_get_a_clear_error() {
        let code = VoucherCode::generate();
        assert!(matches!(
            VoucherCode::parse(&code.as_str()[..20]),
            Err(CodeError::Length {
                expected: 24,
                found: 20
            })
        ));
        assert!(matches!(
            VoucherCode::parse(""),
            Err(CodeError::Length { .. })
        ));
        assert_eq!(
            VoucherCode::parse("ABCD-EFGH-JKMN-PQRS-TVWX-YZ0U"),
            Err(CodeError::Character('U'))
        );
        assert!(matches!(
            VoucherCode::parse("https://example.org/ABCD"),
            Err(CodeError::Character(_))
        ));
    }

    #[test]
    fn codes_stay_out_of_debug_output_and_hash_by_key() {
        let code = VoucherCode::generate();
        assert!(!format!("{code:?}").contains(code.as_str()));
        let (one, two) = (KeyedHasher::generate(), KeyedHasher::generate());
        assert_eq!(code.keyed_hash(&one), code.keyed_hash(&one));
        assert_ne!(code.keyed_hash(&one), code.keyed_hash(&two));
    }
}
