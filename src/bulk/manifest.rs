//! The CSV manifest of a bulk delivery: one line per document, parsed into the same
//! types the single-document API uses, or into a line error that names the column
//! and never repeats the personal value it found there.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::vault::metadata::safe_file_name;
use crate::vault::{DeliveryMetadata, MetadataError};

/// Largest manifest accepted by default, in bytes.
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 32 * 1024 * 1024;
/// Most lines accepted in one manifest by default.
pub const DEFAULT_MAX_LINES: usize = 50_000;
const MAX_PATH_CHARS: usize = 400;

/// Why a whole manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is empty")]
    Empty,
    #[error("the manifest is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the manifest has more than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("the manifest lacks the column(s): {0}")]
    MissingColumns(String),
    #[error("the header names the column {0:?} twice")]
    DuplicateColumn(String),
    #[error("the manifest is not readable CSV: {0}")]
    Malformed(String),
}

/// A refused line: its number in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// A path inside the folder or ZIP: relative, `/`-separated, no `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestPath(String);

impl ManifestPath {
    /// Accepts `a/b.pdf` (and `a\b.pdf`); refuses absolute paths, `..`, drive letters.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().replace('\\', "/");
        if text.is_empty()
            || text.chars().count() > MAX_PATH_CHARS
            || text.starts_with('/')
            || text.chars().any(char::is_control)
            || text.contains(':')
        {
            return None;
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => continue,
                ".." => return None,
                part => parts.push(part),
            }
        }
        (!parts.is_empty()).then(|| Self(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name the citizen sees: the last component, cleaned.
    pub fn file_name(&self) -> String {
        safe_file_name(Some(&self.0))
    }

    /// The media type guessed from the extension (the same on every path in).
    pub fn content_type(&self) -> &'static str {
        let extension = self
            .0
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "pdf" => "application/pdf",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "txt" => "text/plain",
            "csv" => "text/csv",
            "xml" => "application/xml",
            "odt" => "application/vnd.oasis.opendocument.text",
            "ods" => "application/vnd.oasis.opendocument.spreadsheet",
            "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            _ => "application/octet-stream",
        }
    }
}

/// One valid line: what to deliver, to whom, from which file.
#[derive(Debug, Clone)]
pub struct ManifestLine {
    pub line: usize,
    pub file: ManifestPath,
    pub metadata: DeliveryMetadata,
    /// The `metadata` JSON sent for this line, byte for byte the same on every run.
    pub raw_metadata: Vec<u8>,
}

impl ManifestLine {
    /// The line's idempotency key: a hash of its normalised content (file path,
    /// metadata) and of the file's SHA-256. The CLI and the server's bulk jobs derive
    /// the same key, so a rerun by either path replays instead of delivering twice.
    /// The file's hash keeps the key from being a guessable digest of a person.
    /// The key's form marks it as a manifest line's, unique in the whole commune
    /// rather than per agent: two agents running the same manifest deliver it once.
    pub fn idempotency_key(&self, content_sha256: &[u8]) -> String {
        let mut hash = Sha256::new();
        for part in [
            b"eguichet bulk line v1".as_slice(),
            self.file.as_str().as_bytes(),
            &self.raw_metadata,
            content_sha256,
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        format!(
            "{}{}",
            crate::vault::MANIFEST_LINE_KEY_PREFIX,
            hex::encode(hash.finalize())
        )
    }
}

/// A parsed manifest: the valid lines and the refused ones, in file order.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub lines: Vec<ManifestLine>,
    pub refused: Vec<LineError>,
}

/// Bounds on what a manifest may hold.
#[derive(Debug, Clone, Copy)]
pub struct ManifestLimits {
    pub max_bytes: usize,
    pub max_lines: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_lines: DEFAULT_MAX_LINES,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Column {
    File,
    Title,
    Category,
    Department,
    Nrn,
    FamilyName,
    GivenNames,
    Birthdate,
    Birthplace,
    CitizenId,
    Email,
    Phone,
}

impl Column {
    const ALL: [Column; 12] = [
        Self::File,
        Self::Title,
        Self::Category,
        Self::Department,
        Self::Nrn,
        Self::FamilyName,
        Self::GivenNames,
        Self::Birthdate,
        Self::Birthplace,
        Self::CitizenId,
        Self::Email,
        Self::Phone,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Title => "title",
            Self::Category => "category",
            Self::Department => "department",
            Self::Nrn => "nrn",
            Self::FamilyName => "family_name",
            Self::GivenNames => "given_names",
            Self::Birthdate => "birthdate",
            Self::Birthplace => "birthplace",
            Self::CitizenId => "citizen_id",
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }

    fn from_header(text: &str) -> Option<Self> {
        let name = text.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Self::ALL.into_iter().find(|column| column.name() == name)
    }
}

/// Decodes the manifest: UTF-8 (a BOM is dropped), or Windows-1252 when the bytes are
/// not valid UTF-8 (what French spreadsheets save as "CSV").
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

/// A CSV file as spreadsheets save it: UTF-8 or Windows-1252, separated by `;` or `,`
/// (the header line says which).
pub struct SpreadsheetCsv {
    text: String,
    delimiter: u8,
}

impl SpreadsheetCsv {
    /// `None` when the file has no header line.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = decode(bytes);
        let header_line = text.lines().next().unwrap_or_default();
        if header_line.trim().is_empty() {
            return None;
        }
        let delimiter = if header_line.matches(';').count() > header_line.matches(',').count() {
            b';'
        } else {
            b','
        };
        Some(Self { text, delimiter })
    }

    /// A reader whose lines may have fewer or more fields than the header.
    pub fn reader(&self) -> csv::Reader<&[u8]> {
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .flexible(true)
            .from_reader(self.text.as_bytes())
    }
}

impl Manifest {
    /// Parses a manifest; whole-file problems are an error, line problems are listed.
    pub fn parse(bytes: &[u8], limits: ManifestLimits) -> Result<Self, ManifestError> {
        if bytes.len() > limits.max_bytes {
            return Err(ManifestError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let csv = SpreadsheetCsv::decode(bytes).ok_or(ManifestError::Empty)?;
        let mut reader = csv.reader();
        let headers = reader
            .headers()
            .map_err(|error| ManifestError::Malformed(error.to_string()))?
            .clone();
        let mut columns: HashMap<Column, usize> = HashMap::new();
        for (index, header) in headers.iter().enumerate() {
            if let Some(column) = Column::from_header(header)
                && columns.insert(column, index).is_some()
            {
                return Err(ManifestError::DuplicateColumn(column.name().to_owned()));
            }
        }
        let mut missing: Vec<&str> = [Column::File, Column::Title, Column::Category]
            .into_iter()
            .filter(|column| !columns.contains_key(column))
            .map(Column::name)
            .collect();
        let pivot = [
            Column::FamilyName,
            Column::GivenNames,
            Column::Birthdate,
            Column::Birthplace,
        ];
        let has_pivot = pivot.iter().any(|column| columns.contains_key(column));
        if has_pivot {
            missing.extend(
                pivot
                    .iter()
                    .filter(|column| !columns.contains_key(column))
                    .map(|column| column.name()),
            );
        } else if !columns.contains_key(&Column::Nrn) && !columns.contains_key(&Column::CitizenId) {
            missing.push(
                "a recipient (nrn, citizen_id or family_name+given_names+birthdate+birthplace)",
            );
        }
        if !missing.is_empty() {
            return Err(ManifestError::MissingColumns(missing.join(", ")));
        }

        let mut manifest = Manifest::default();
        let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
        let mut count = 0;
        for record in reader.records() {
            let record = record.map_err(|error| ManifestError::Malformed(error.to_string()))?;
            let line = record
                .position()
                .map(|position| position.line() as usize)
                .unwrap_or_default();
            if record.iter().all(|cell| cell.trim().is_empty()) {
                continue;
            }
            count += 1;
            if count > limits.max_lines {
                return Err(ManifestError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            let cell = |column: Column| {
                columns
                    .get(&column)
                    .and_then(|index| record.get(*index))
                    .map(str::trim)
                    .unwrap_or_default()
            };
            match parse_line(line, &cell) {
                Ok(parsed) => {
                    let identity = (
                        parsed.file.as_str().to_owned(),
                        recipient_identity(&parsed.metadata),
                        parsed.metadata.title.clone(),
                    );
                    if let Some(first) = seen.get(&identity) {
                        manifest.refused.push(LineError {
                            line,
                            reason: format!("duplicate of line {first}"),
                        });
                    } else {
                        seen.insert(identity, line);
                        manifest.lines.push(parsed);
                    }
                }
                Err(reason) => manifest.refused.push(LineError { line, reason }),
            }
        }
        if manifest.lines.is_empty() && manifest.refused.is_empty() {
            return Err(ManifestError::Empty);
        }
        Ok(manifest)
    }

    /// Refuses the lines whose file is not there; `exists` answers for one path.
    pub fn check_files(&mut self, mut exists: impl FnMut(&ManifestPath) -> bool) {
        let (present, missing): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lines)
            .into_iter()
            .partition(|line| exists(&line.file));
        self.lines = present;
        self.refuse(missing.into_iter().map(|line| LineError {
            line: line.line,
            reason: "file: not found in the folder or archive".to_owned(),
        }));
    }

    /// Adds refusals and keeps the list in line order.
    pub fn refuse(&mut self, errors: impl IntoIterator<Item = LineError>) {
        self.refused.extend(errors);
        self.refused.sort_by_key(|error| error.line);
    }
}

fn recipient_identity(metadata: &DeliveryMetadata) -> String {
    use crate::vault::metadata::Recipient;
    match &metadata.recipient {
        Recipient::Pivot(pivot) => format!("pivot:{}", pivot.canonical()),
        Recipient::NationalRegisterNumber(nrn) => format!("nrn:{}", nrn.as_str()),
        Recipient::CitizenId(id) => format!("citizen:{id}"),
    }
}

fn parse_line<'a>(line: usize, cell: &dyn Fn(Column) -> &'a str) -> Result<ManifestLine, String> {
    let file = ManifestPath::parse(cell(Column::File)).ok_or_else(|| {
        "file: must be a relative path inside the folder or archive (no \"..\", not absolute)"
            .to_owned()
    })?;
    let nrn = cell(Column::Nrn);
    let citizen_id = cell(Column::CitizenId);
    let pivot_given = [
        Column::FamilyName,
        Column::GivenNames,
        Column::Birthdate,
        Column::Birthplace,
    ]
    .iter()
    .any(|column| !cell(*column).is_empty());
    let forms = usize::from(!nrn.is_empty())
        + usize::from(!citizen_id.is_empty())
        + usize::from(pivot_given);
    let recipient = match forms {
        0 => {
            return Err(
                "recipient: give nrn, citizen_id, or family_name, given_names and birthdate"
                    .to_owned(),
            );
        }
        2.. => {
            return Err(
                "recipient: give only one of nrn, citizen_id or the pivot identity".to_owned(),
            );
        }
        _ if !nrn.is_empty() => serde_json::json!({ "nrn": nrn }),
        _ if !citizen_id.is_empty() => serde_json::json!({ "citizen_id": citizen_id }),
        _ => serde_json::json!({ "pivot": {
            "family_name": cell(Column::FamilyName),
            "given_names": cell(Column::GivenNames),
            "birthdate": iso_date(cell(Column::Birthdate))?,
            "birthplace": cell(Column::Birthplace),
        }}),
    };
    let mut metadata = serde_json::json!({
        "recipient": recipient,
        "title": cell(Column::Title),
        "category": cell(Column::Category),
    });
    let (email, phone) = (cell(Column::Email), cell(Column::Phone));
    if !email.is_empty() || !phone.is_empty() {
        let mut contact = serde_json::Map::new();
        if !email.is_empty() {
            contact.insert("email".to_owned(), email.into());
        }
        if !phone.is_empty() {
            contact.insert("phone".to_owned(), phone.into());
        }
        metadata["contact"] = contact.into();
    }
    let department = cell(Column::Department);
    if !department.is_empty() {
        metadata["department"] = department.into();
    }
    let raw_metadata = metadata.to_string().into_bytes();
    let parsed = DeliveryMetadata::parse(&raw_metadata).map_err(column_message)?;
    Ok(ManifestLine {
        line,
        file,
        metadata: parsed,
        raw_metadata,
    })
}

/// `YYYY-MM-DD` as is; `DD/MM/YYYY` (a French spreadsheet's) rewritten.
fn iso_date(text: &str) -> Result<String, String> {
    let refused = || "birthdate: must be a date written YYYY-MM-DD or DD/MM/YYYY".to_owned();
    if text.is_empty() {
        return Err("birthdate: is required with a pivot identity".to_owned());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(text, "%d/%m/%Y"))
        .map_err(|_| refused())?;
    Ok(date.format("%Y-%m-%d").to_string())
}

/// The API's messages speak of JSON fields; a manifest's author thinks in columns.
fn column_message(error: MetadataError) -> String {
    let message = match error {
        MetadataError::Recipient(message) => message,
        MetadataError::Field(message) => message,
        MetadataError::Malformed(_) => "the line could not be read as a delivery".to_owned(),
    };
    let message = message
        .replace("contact.email", "email")
        .replace("contact.phone", "phone");
    let named = Column::ALL
        .iter()
        .any(|column| message.starts_with(column.name()));
    if named {
        message
    } else if message.starts_with("citizen_id") || message.contains("register number") {
        format!("recipient: {message}")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Manifest {
        Manifest::parse(text, ManifestLimits::default()).unwrap()
    }

    const HEADER: &str =
        "file,title,category,family_name,given_names,birthdate,birthplace,email,phone";

    #[test]
    fn a_comma_manifest_parses_into_api_types() {
        let manifest = parse(
            format!("{HEADER}\na.pdf,Avis,impots,Dupont,Marie,30/07/1980,75056,m@example.org,06 12 34 56 78\n")
                .as_bytes(),
        );
        assert!(manifest.refused.is_empty(), "{:?}", manifest.refused);
        let line = &manifest.lines[0];
        assert_eq!(line.line, 2);
        assert_eq!(line.file.as_str(), "a.pdf");
        assert!(String::from_utf8_lossy(&line.raw_metadata).contains("1980-07-30"));
        let contact = line.metadata.contact.clone().unwrap();
        assert_eq!(contact.phone.as_deref(), Some("+33612345678"));
    }

    #[test]
    fn semicolons_latin1_and_bom_give_the_same_keys() {
        let utf8 = "FILE;Title;category;nrn\ndoc/é.pdf;Relevé;impots;85.07.30-033.28\n";
        let latin1: Vec<u8> = encoding_rs::WINDOWS_1252.encode(utf8).0.into_owned();
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(utf8.replace(';', ",").as_bytes());
        let keys: Vec<_> = [utf8.as_bytes().to_vec(), latin1, bom]
            .iter()
            .map(|bytes| {
                let manifest = parse(bytes);
                assert!(manifest.refused.is_empty(), "{:?}", manifest.refused);
                assert_eq!(manifest.lines[0].metadata.title, "Relevé");
                manifest.lines[0].idempotency_key(b"x")
            })
            .collect();
        assert_eq!(keys[0], keys[1]);
        assert_eq!(keys[0], keys[2]);
    }

    #[test]
    fn missing_columns_are_named() {
        let error = Manifest::parse(b"file,title\na,b\n", ManifestLimits::default()).unwrap_err();
        assert!(error.to_string().contains("category"), "{error}");
        assert!(error.to_string().contains("recipient"), "{error}");
    }

    #[test]
    fn bad_lines_name_the_column_and_not_the_value() {
        let manifest = parse(
            format!(
                "{HEADER},nrn\n\
                 a.pdf,Avis,impots,Dupont,Marie,1980-13-45,75056,,,\n\
                 b.pdf,Avis,impots,Dupont,Marie,1980-07-30,75056,pas-un-courriel,,\n\
                 c.pdf,Avis,impots,Dupont,Marie,1980-07-30,75056,,12345,\n\
                 d.pdf,Avis,impots,,,,,,,\n\
                 e.pdf,Avis,impots,Dupont,Marie,1980-07-30,75056,,,85073003328\n\
                 ../f.pdf,Avis,impots,Dupont,Marie,1980-07-30,75056,,,\n\
                 g.pdf,Avis,impots,Dupont,Marie,1980-07-30,75056,,,\n\
                 g.pdf,Avis,impots,DUPONT,marie,30/07/1980,75056,,,\n"
            )
            .as_bytes(),
        );
        let reasons: Vec<(usize, String)> = manifest
            .refused
            .iter()
            .map(|error| (error.line, error.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons[0].1.starts_with("birthdate"), "{reasons:?}");
        assert!(reasons[1].1.starts_with("email"), "{reasons:?}");
        assert!(reasons[2].1.starts_with("phone"), "{reasons:?}");
        assert!(reasons[3].1.starts_with("recipient"), "{reasons:?}");
        assert!(reasons[4].1.starts_with("recipient"), "{reasons:?}");
        assert!(reasons[5].1.starts_with("file"), "{reasons:?}");
        assert_eq!(reasons[6], (9, "duplicate of line 8".to_owned()));
        for (_, reason) in &reasons {
            assert!(!reason.contains("Dupont") && !reason.contains("pas-un-courriel"));
            assert!(!reason.contains("12345") && !reason.contains("1980"));
        }
        assert_eq!(manifest.lines.len(), 1);
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(ManifestPath::parse("a\\b.pdf").unwrap().as_str(), "a/b.pdf");
        assert_eq!(
            ManifestPath::parse("./a//b.pdf").unwrap().as_str(),
            "a/b.pdf"
        );
        for bad in ["/etc/passwd", "a/../../b", "C:\\x", "", "..", "a\u{0}b"] {
            assert!(ManifestPath::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let text = format!(
            "{HEADER}\n{}",
            "a.pdf,A,impots,D,M,1980-07-30,,,\n".repeat(3)
        );
        let limits = ManifestLimits {
            max_bytes: 10_000,
            max_lines: 2,
        };
        assert_eq!(
            Manifest::parse(text.as_bytes(), limits).unwrap_err(),
            ManifestError::TooManyLines { limit: 2 }
        );
    }
}
