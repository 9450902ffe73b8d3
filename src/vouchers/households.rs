//! The households file an agent imports to issue a campaign's codes: one line per
//! household with its reference, its allotment and the postal address printed on the
//! letter. The address is only carried to the letters; it is never stored.

use std::collections::HashMap;

use crate::bulk::manifest::{ManifestLimits, SpreadsheetCsv};

use super::campaigns::{MAX_ALLOTMENT, parse_allotment};

/// Lines of a French postal address (AFNOR NF Z10-011).
pub const ADDRESS_LINES: usize = 6;
const MAX_REFERENCE_CHARS: usize = 64;
const MAX_ADDRESS_LINE_CHARS: usize = 100;

/// A household ready to receive a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Household {
    /// Its line in the file (the header is line 1).
    pub line: usize,
    pub reference: String,
    pub allotment: i32,
    /// Non-empty address lines, in order.
    pub address: Vec<String>,
}

/// Why the whole file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HouseholdsError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the file has more than {limit} households")]
    TooManyLines { limit: usize },
    #[error("the header lacks the column(s): {0}")]
    MissingColumns(String),
    #[error("the header names the column {0:?} twice")]
    DuplicateColumn(String),
    #[error("the file is not readable CSV: {0}")]
    Malformed(String),
    /// Some lines are wrong: nothing is issued until the file is corrected.
    #[error("{} line(s) refused", .0.len())]
    Lines(Vec<HouseholdLineError>),
}

impl HouseholdsError {
    /// What to tell the agent: a locale key and its arguments.
    pub fn message(&self) -> (&'static str, Vec<(&'static str, String)>) {
        match self {
            Self::Empty => ("households-empty", vec![]),
            Self::TooLarge { limit } => {
                ("households-too-large", vec![("limit", limit.to_string())])
            }
            Self::TooManyLines { limit } => {
                ("households-too-many", vec![("limit", limit.to_string())])
            }
            Self::MissingColumns(columns) => (
                "households-missing-columns",
                vec![("columns", columns.clone())],
            ),
            Self::DuplicateColumn(column) => (
                "households-duplicate-column",
                vec![("column", column.clone())],
            ),
            Self::Malformed(detail) => ("households-malformed", vec![("detail", detail.clone())]),
            Self::Lines(lines) => ("households-lines", vec![("count", lines.len().to_string())]),
        }
    }
}

/// One refused line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdLineError {
    /// Its line in the file (the header is line 1).
    pub line: usize,
    pub problem: LineProblem,
}

/// What is wrong with a line, named by its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("reference: missing")]
    MissingReference,
    #[error("reference: at most {MAX_REFERENCE_CHARS} printable characters")]
    LongReference,
    #[error("reference: the same household is on line {first}")]
    SameHousehold { first: usize },
    #[error("allotment: a whole number from 1 to {MAX_ALLOTMENT}")]
    BadAllotment,
    #[error("address_1: missing (the letter could not be posted)")]
    MissingAddress,
    #[error("address_{line}: at most {MAX_ADDRESS_LINE_CHARS} printable characters")]
    LongAddress { line: usize },
    #[error("reference: this household already has a code (choose to replace)")]
    HasCode,
    #[error("reference: this household has already collected")]
    HasCollected,
}

impl LineProblem {
    /// What to tell the agent: a locale key and its arguments.
    pub fn message(&self) -> (&'static str, Vec<(&'static str, String)>) {
        match self {
            Self::MissingReference => ("households-line-missing-reference", vec![]),
            Self::LongReference => (
                "households-line-long-reference",
                vec![("max", MAX_REFERENCE_CHARS.to_string())],
            ),
            Self::SameHousehold { first } => (
                "households-line-same-household",
                vec![("first", first.to_string())],
            ),
            Self::BadAllotment => (
                "households-line-bad-allotment",
                vec![("max", MAX_ALLOTMENT.to_string())],
            ),
            Self::MissingAddress => ("households-line-missing-address", vec![]),
            Self::LongAddress { line } => (
                "households-line-long-address",
                vec![
                    ("line", line.to_string()),
                    ("max", MAX_ADDRESS_LINE_CHARS.to_string()),
                ],
            ),
            Self::HasCode => ("households-line-has-code", vec![]),
            Self::HasCollected => ("households-line-has-collected", vec![]),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Column {
    Reference,
    Allotment,
    Address(usize),
}

impl Column {
    /// Header names, in English and French, as spreadsheets are written.
    fn from_header(text: &str) -> Option<Self> {
        let name = text.trim().to_lowercase().replace([' ', '-'], "_");
        match name.as_str() {
            "reference" | "référence" | "household" | "foyer" => Some(Self::Reference),
            "allotment" | "quantity" | "quantite" | "quantité" | "dotation" => {
                Some(Self::Allotment)
            }
            _ => {
                let number = name
                    .strip_prefix("address_")
                    .or_else(|| name.strip_prefix("adresse_"))?;
                let number: usize = number.parse().ok()?;
                (1..=ADDRESS_LINES)
                    .contains(&number)
                    .then_some(Self::Address(number - 1))
            }
        }
    }
}

/// Reads the households file. Every line is checked; if any is wrong the file is
/// refused with each wrong line and its reason (never its content), so that a
/// corrected file can be imported whole.
pub fn parse_households(
    bytes: &[u8],
    default_allotment: i32,
    limits: ManifestLimits,
) -> Result<Vec<Household>, HouseholdsError> {
    if bytes.len() > limits.max_bytes {
        return Err(HouseholdsError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let csv = SpreadsheetCsv::decode(bytes).ok_or(HouseholdsError::Empty)?;
    let mut reader = csv.reader();
    let headers = reader
        .headers()
        .map_err(|error| HouseholdsError::Malformed(error.to_string()))?
        .clone();
    let mut columns: Vec<Option<Column>> = Vec::with_capacity(headers.len());
    for header in headers.iter() {
        let column = Column::from_header(header);
        if column.is_some() && columns.contains(&column) {
            return Err(HouseholdsError::DuplicateColumn(header.trim().to_owned()));
        }
        columns.push(column);
    }
    let mut missing = Vec::new();
    if !columns.contains(&Some(Column::Reference)) {
        missing.push("reference");
    }
    if !columns.contains(&Some(Column::Address(0))) {
        missing.push("address_1");
    }
    if !missing.is_empty() {
        return Err(HouseholdsError::MissingColumns(missing.join(", ")));
    }

    let mut households = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        if households.len() + errors.len() >= limits.max_lines {
            return Err(HouseholdsError::TooManyLines {
                limit: limits.max_lines,
            });
        }
        let record = record.map_err(|error| HouseholdsError::Malformed(error.to_string()))?;
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        let mut reference = "";
        let mut allotment = "";
        let mut address = vec![String::new(); ADDRESS_LINES];
        for (column, value) in columns.iter().zip(record.iter()) {
            match column {
                Some(Column::Reference) => reference = value.trim(),
                Some(Column::Allotment) => allotment = value.trim(),
                Some(Column::Address(n)) => address[*n] = value.trim().to_owned(),
                None => {}
            }
        }
        match check_line(line, reference, allotment, address, default_allotment) {
            Ok(household) => {
                let key = household.reference.to_lowercase();
                if let Some(first) = seen.get(&key) {
                    errors.push(HouseholdLineError {
                        line,
                        problem: LineProblem::SameHousehold { first: *first },
                    });
                } else {
                    seen.insert(key, line);
                    households.push(household);
                }
            }
            Err(problem) => errors.push(HouseholdLineError { line, problem }),
        }
    }
    if !errors.is_empty() {
        return Err(HouseholdsError::Lines(errors));
    }
    if households.is_empty() {
        return Err(HouseholdsError::Empty);
    }
    Ok(households)
}

fn check_line(
    line: usize,
    reference: &str,
    allotment: &str,
    address: Vec<String>,
    default_allotment: i32,
) -> Result<Household, LineProblem> {
    if reference.is_empty() {
        return Err(LineProblem::MissingReference);
    }
    if reference.chars().count() > MAX_REFERENCE_CHARS || reference.chars().any(char::is_control) {
        return Err(LineProblem::LongReference);
    }
    let allotment = if allotment.is_empty() {
        default_allotment
    } else {
        parse_allotment(allotment).ok_or(LineProblem::BadAllotment)?
    };
    if address[0].is_empty() {
        return Err(LineProblem::MissingAddress);
    }
    for (n, text) in address.iter().enumerate() {
        if text.chars().count() > MAX_ADDRESS_LINE_CHARS || text.chars().any(char::is_control) {
            return Err(LineProblem::LongAddress { line: n + 1 });
        }
    }
    Ok(Household {
        line,
        reference: reference.to_owned(),
        allotment,
        address: address.into_iter().filter(|l| !l.is_empty()).collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Vec<Household>, HouseholdsError> {
        parse_households(text, 2, ManifestLimits::default())
    }

    #[test]
    fn reads_both_delimiters_latin1_and_defaults() {
        let utf8 = "\u{feff}reference,allotment,address_1,address_2\nF-1,3,M. Dupont,1 rue de la Paix\nF-2,,Mme Léa Martin,\n";
        let households = parse(utf8.as_bytes()).unwrap();
        assert_eq!(households.len(), 2);
        assert_eq!(households[0].allotment, 3);
        assert_eq!(households[1].allotment, 2);
        assert_eq!(households[1].address, vec!["Mme Léa Martin".to_owned()]);
        // Latin-1 with `;`, French headers.
        let latin1 = b"Foyer;Quantit\xe9;Adresse_1\nF-9;1;M. \xc9mile Zola\n";
        let households = parse(latin1).unwrap();
        assert_eq!(households[0].address[0], "M. Émile Zola");
        assert_eq!(households[0].line, 2);
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_passes() {
        let text = "reference;allotment;address_1\nF-1;2;A\nf-1;2;B\n;2;C\nF-3;0;D\nF-4;beaucoup;E\nF-5;2;\nF-6;2;F\n";
        let Err(HouseholdsError::Lines(errors)) = parse(text.as_bytes()) else {
            panic!("lines should be refused");
        };
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        assert_eq!(errors[0].problem, LineProblem::SameHousehold { first: 2 });
        assert_eq!(errors[1].problem, LineProblem::MissingReference);
        assert_eq!(errors[2].problem, LineProblem::BadAllotment);
        assert_eq!(errors[3].problem, LineProblem::BadAllotment);
        assert_eq!(errors[4].problem, LineProblem::MissingAddress);
    }

    #[test]
    fn whole_file_problems() {
        assert_eq!(parse(b""), Err(HouseholdsError::Empty));
        assert_eq!(parse(b"reference,address_1\n"), Err(HouseholdsError::Empty));
        assert_eq!(
            parse(b"name,city\nx,y\n"),
            Err(HouseholdsError::MissingColumns(
                "reference, address_1".into()
            ))
        );
        assert_eq!(
            parse(b"reference,foyer,address_1\n"),
            Err(HouseholdsError::DuplicateColumn("foyer".into()))
        );
        let limits = ManifestLimits {
            max_bytes: 1000,
            max_lines: 1,
        };
        assert_eq!(
            parse_households(b"reference,address_1\na,b\nc,d\n", 1, limits),
            Err(HouseholdsError::TooManyLines { limit: 1 })
        );
    }
}
