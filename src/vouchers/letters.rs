//! Print-ready voucher letters: one A4 page per household, with its code as a large QR
//! code and in print, its address placed for a window envelope; and the mail-merge file
//! a postal operator takes instead. Renders the data it is given and reads no database.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::num::NonZeroUsize;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Chunk, Content, Filter, Finish, Name, Rect, Ref, Settings, Str, TextStr};
use qrcode::{Color, EcLevel, QrCode, Version};
use subsetter::GlyphRemapper;
use unicode_normalization::UnicodeNormalization;

use super::VoucherCode;
use crate::spreadsheet::neutralise_formula;

/// A4 in PostScript points.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;

const fn mm(length: f32) -> f32 {
    length * 72.0 / 25.4
}

const MARGIN: f32 = mm(20.0);
const TEXT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
/// The address block sits inside the window of a DL envelope (window roughly 110–200 mm
/// from the left edge and 45–90 mm from the top once the letter is folded in three).
const ADDRESS_LEFT: f32 = mm(115.0);
const ADDRESS_WIDTH: f32 = mm(80.0);
const REFERENCE_BASELINE: f32 = mm(50.0);
const ADDRESS_BASELINE: f32 = mm(56.0);
/// NF Z10-011 allows six lines in a French postal address (seven abroad, with the country).
pub const MAX_ADDRESS_LINES: usize = 6;
/// The body starts below the first fold, under the window.
const BODY_TOP: f32 = mm(100.0);
/// The voucher block ends here; the footer goes below it.
const VOUCHER_BOTTOM: f32 = mm(274.0);
const FOOTER_BASELINE: f32 = mm(281.0);
/// The QR symbol without its quiet zone: large enough for any phone or hand scanner.
const QR_SIDE: f32 = mm(40.0);
const QR_QUIET_MODULES: f32 = 4.0;
/// Q (25 % recovery) survives a folded, creased or stamped letter, and 24 characters
/// still fit in a version 2 symbol (25 modules).
const QR_EC_LEVEL: EcLevel = EcLevel::Q;
/// Fixed, so that every page has the same layout whatever the code's characters.
const QR_VERSION: Version = Version::Normal(2);

const REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// Why letters could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error("writing the letters failed: {0}")]
    Io(#[from] io::Error),
    #[error("writing the mail-merge file failed: {0}")]
    Csv(#[from] csv::Error),
    #[error("letter {letter}: {reason}")]
    InvalidLetter {
        /// The letter's position in the run, from 1: errors reach logs, and a
        /// household reference is the commune's own and may say who lives there.
        letter: usize,
        reason: &'static str,
    },
    #[error("there are no letters to write")]
    NoLetters,
    #[error("the campaign's texts do not fit on one page, even in small print")]
    CampaignTooLong,
    #[error("the embedded font could not be prepared: {0}")]
    Font(String),
    #[error("the QR code could not be made: {0}")]
    Qr(#[from] qrcode::types::QrError),
}

/// Every sentence of a letter that is not the campaign's or the household's own data,
/// in one language. Plain data, so it can be filled from translations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterTexts {
    /// BCP 47 tag of these texts (the PDF's `/Lang`, read by screen readers).
    pub language: String,
    /// Opens the letter ("Madame, Monsieur,").
    pub greeting: String,
    /// Ends by introducing the household's allotment, printed on the next line.
    pub introduction: String,
    /// Heads the dates and the distribution sites.
    pub sites_heading: String,
    /// Heads the framed block with the QR code and the code.
    pub voucher_heading: String,
    /// One bullet each, beside the QR code.
    pub instructions: Vec<String>,
    /// Printed above the code.
    pub code_label: String,
    /// Printed before the household reference.
    pub reference_label: String,
    /// Small print at the bottom of the page.
    pub footer: String,
}

impl LetterTexts {
    /// Default French wording.
    pub fn french() -> Self {
        Self {
            language: "fr".into(),
            greeting: "Madame, Monsieur,".into(),
            introduction: "Votre commune organise une distribution gratuite. Sur présentation \
                de ce courrier ou de son code, votre foyer peut retirer\u{a0}:"
                .into(),
            sites_heading: "Où et quand retirer votre dotation".into(),
            voucher_heading: "Bon de retrait — valable une seule fois".into(),
            instructions: vec![
                "Présentez ce courrier au point de retrait, ou montrez simplement le code \
                 ci-dessous (sur papier ou sur votre téléphone)."
                    .into(),
                "Le code ne sert qu’une seule fois\u{a0}: une fois la dotation remise, il \
                 n’est plus valable."
                    .into(),
                "Courrier perdu\u{a0}? Adressez-vous à l’accueil de la mairie.".into(),
                "Aucune pièce d’identité n’est scannée ni conservée lors du retrait.".into(),
            ],
            code_label: "Votre code de retrait".into(),
            reference_label: "Réf.".into(),
            footer: "Ce courrier tient lieu de bon de retrait\u{a0}: conservez-le jusqu’à \
                la distribution. Ne le confiez qu’à une personne de confiance."
                .into(),
        }
    }

    /// Default English wording.
    pub fn english() -> Self {
        Self {
            language: "en".into(),
            greeting: "Dear resident,".into(),
            introduction: "Your town is organising a free distribution. On presenting this \
                letter or its code, your household may collect:"
                .into(),
            sites_heading: "Where and when to collect".into(),
            voucher_heading: "Collection voucher — valid once".into(),
            instructions: vec![
                "Bring this letter to a distribution point, or simply show the code below \
                 (on paper or on your phone)."
                    .into(),
                "The code works once: after the items are handed over, it is no longer valid."
                    .into(),
                "Lost this letter? Please contact the town hall.".into(),
                "No identity document is scanned or stored when you collect.".into(),
            ],
            code_label: "Your collection code".into(),
            reference_label: "Ref.".into(),
            footer: "This letter is your collection voucher: keep it until the distribution, \
                and only hand it to someone you trust."
                .into(),
        }
    }
}

/// What a campaign hands out, where and when: the same on every letter of a run.
#[derive(Debug, Clone, Copy)]
pub struct LetterCampaign<'a> {
    /// The commune, as it signs its letters ("Commune de Saint-Amand").
    pub tenant_name: &'a str,
    /// The campaign's title ("Distribution de masques lavables — mai 2020").
    pub campaign_name: &'a str,
    /// What one unit of the allotment is, in the plural ("masques lavables").
    pub item: &'a str,
    /// When the distribution takes place, as one sentence.
    pub dates: &'a str,
    /// Where to collect, in the order printed.
    pub sites: &'a [DistributionSite<'a>],
}

/// One place where households collect their allotment.
#[derive(Debug, Clone, Copy)]
pub struct DistributionSite<'a> {
    /// Printed in bold ("Salle des fêtes").
    pub name: &'a str,
    /// Street address, one line.
    pub address: &'a str,
    /// Opening hours, one line.
    pub hours: &'a str,
}

/// One household's letter. No `Debug`: it holds an address and a code.
#[derive(Clone, Copy)]
pub struct Letter<'a> {
    /// The commune's reference for the household, printed small for the postal
    /// operator and the agents.
    pub household_reference: &'a str,
    /// The postal address, one element per line, at most [`MAX_ADDRESS_LINES`].
    pub address: &'a [String],
    /// How many items the household may collect (at least one).
    pub allotment: u32,
    /// The household's single-use code: the QR code holds its canonical form.
    pub code: &'a VoucherCode,
}

impl Letter<'_> {
    /// Checks the `number`th letter of the run (from 1).
    fn check(&self, number: usize) -> Result<(), LetterError> {
        let reason = if self.address.len() > MAX_ADDRESS_LINES {
            "a postal address has at most six lines"
        } else if self.address.iter().all(|line| line.trim().is_empty()) {
            "the postal address is empty"
        } else if self.allotment == 0 {
            "the allotment is zero"
        } else {
            return Ok(());
        };
        Err(LetterError::InvalidLetter {
            letter: number,
            reason,
        })
    }
}

/// Writes one PDF with a page per letter to `out`, object by object (a whole town's
/// run never sits in memory; `out` is buffered here), and returns the number of pages.
/// The QR codes are computed on every core. On an error, what was written is unusable.
pub fn write_letters_pdf<'a, W: Write>(
    campaign: &LetterCampaign<'_>,
    texts: &LetterTexts,
    letters: impl IntoIterator<Item = Letter<'a>>,
    out: W,
) -> Result<usize, LetterError> {
    let mut fonts = Fonts::load()?;
    let qr_modules = usize::try_from(QR_VERSION.width()).unwrap_or(25);
    let layout = Layout::new(campaign, texts, &mut fonts, qr_modules)?;

    let mut pdf = PdfStream::start(out)?;
    let catalog = pdf.reserve();
    let info = pdf.reserve();
    let page_tree = pdf.reserve();
    let resources = pdf.reserve();
    let template = pdf.reserve();
    let font_refs = [FontRefs::reserve(&mut pdf), FontRefs::reserve(&mut pdf)];

    // The campaign's part of the page is drawn once, as a form XObject every page
    // reuses: 19,000 pages then cost a few kilobytes each.
    let template_content = deflate(&layout.template(&mut fonts))?;
    pdf.object(|chunk| {
        let mut form = chunk.form_xobject(template, &template_content);
        form.filter(Filter::FlateDecode);
        form.bbox(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        form.resources()
            .fonts()
            .pair(Name(Weight::Regular.resource()), font_refs[0].type0)
            .pair(Name(Weight::Bold.resource()), font_refs[1].type0);
    })?;

    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut letters = letters.into_iter();
    let mut checked = 0;
    let mut pages = Vec::new();
    let mut content = Vec::new();
    loop {
        let batch: Vec<Letter<'a>> = letters.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        for letter in &batch {
            checked += 1;
            letter.check(checked)?;
        }
        for (letter, qr) in batch.iter().zip(qr_codes(&batch, threads)?) {
            let page = pdf.reserve();
            let contents = pdf.reserve();
            layout.draw_letter(letter, &qr, campaign, texts, &mut fonts, &mut content);
            let compressed = deflate(&content)?;
            pdf.object(|chunk| {
                chunk
                    .stream(contents, &compressed)
                    .filter(Filter::FlateDecode);
            })?;
            pdf.object(|chunk| {
                let mut writer = chunk.page(page);
                writer
                    .parent(page_tree)
                    .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
                    .contents(contents);
                writer.pair(Name(b"Resources"), resources);
            })?;
            pages.push(page);
        }
    }
    if pages.is_empty() {
        return Err(LetterError::NoLetters);
    }

    pdf.object(|chunk| {
        let mut dict = chunk.indirect(resources).dict();
        let mut x_objects = dict.insert(Name(b"XObject")).dict();
        x_objects.pair(Name(b"Campaign"), template);
        x_objects.finish();
        let mut fonts_dict = dict.insert(Name(b"Font")).dict();
        fonts_dict.pair(Name(Weight::Regular.resource()), font_refs[0].type0);
        fonts_dict.pair(Name(Weight::Bold.resource()), font_refs[1].type0);
    })?;
    fonts.regular.write(&mut pdf, font_refs[0])?;
    fonts.bold.write(&mut pdf, font_refs[1])?;
    let count = pages.len();
    pdf.object(|chunk| {
        chunk
            .pages(page_tree)
            .kids(pages.iter().copied())
            .count(i32::try_from(count).unwrap_or(i32::MAX));
    })?;
    pdf.object(|chunk| {
        let mut writer = chunk
            .indirect(catalog)
            .start::<pdf_writer::writers::Catalog>();
        writer.pages(page_tree);
        writer.lang(TextStr(&texts.language));
    })?;
    let title = clean(campaign.campaign_name);
    pdf.object(|chunk| {
        chunk
            .indirect(info)
            .start::<pdf_writer::writers::DocumentInfo>()
            .title(TextStr(&title))
            .producer(TextStr("e-guichet"));
    })?;
    pdf.finish(catalog, info)?;
    Ok(count)
}

/// Letters are taken in batches whose QR codes are computed on every core first: the
/// qrcode crate's choice of mask is nearly all the work of a page (about half a
/// millisecond a code), the drawing that follows a small part.
const BATCH: usize = 256;

fn qr_codes(batch: &[Letter<'_>], threads: usize) -> Result<Vec<QrCode>, LetterError> {
    let encode = |letters: &[Letter<'_>]| {
        letters
            .iter()
            .map(|letter| QrCode::with_version(letter.code.as_str(), QR_VERSION, QR_EC_LEVEL))
            .collect::<Result<Vec<_>, _>>()
    };
    if threads < 2 || batch.len() < 2 * threads {
        return Ok(encode(batch)?);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = batch
            .chunks(batch.len().div_ceil(threads))
            .map(|share| scope.spawn(move || encode(share)))
            .collect();
        let mut codes = Vec::with_capacity(batch.len());
        for worker in workers {
            match worker.join() {
                Ok(share) => codes.extend(share?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(codes)
    })
}

/// Columns of the mail-merge file, in order.
const MAIL_MERGE_HEADER: [&str; 10] = [
    "household_reference",
    "address_1",
    "address_2",
    "address_3",
    "address_4",
    "address_5",
    "address_6",
    "allotment",
    "code",
    "code_qr",
];

/// Writes the mail-merge file for a postal operator printing the letters itself: UTF-8
/// with a BOM and `;` as separator, as French Excel expects. Returns the number of rows.
pub fn write_mail_merge_csv<'a, W: Write>(
    letters: impl IntoIterator<Item = Letter<'a>>,
    mut out: W,
) -> Result<usize, LetterError> {
    // Without the BOM, Excel reads the file as Windows-1252 and mangles the accents.
    out.write_all("\u{feff}".as_bytes())?;
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    writer.write_record(MAIL_MERGE_HEADER)?;
    let mut rows = 0;
    for letter in letters {
        letter.check(rows + 1)?;
        let allotment = letter.allotment.to_string();
        let grouped = letter.code.grouped();
        let mut record: Vec<Cow<'_, str>> = Vec::with_capacity(MAIL_MERGE_HEADER.len());
        record.push(neutralise_formula(letter.household_reference));
        for line in 0..MAX_ADDRESS_LINES {
            let text = letter.address.get(line).map_or("", String::as_str);
            record.push(neutralise_formula(text));
        }
        // The code starts with a letter or a digit: nothing to neutralise.
        record.push(Cow::Borrowed(&allotment));
        record.push(Cow::Borrowed(&grouped));
        record.push(Cow::Borrowed(letter.code.as_str()));
        writer.write_record(record.iter().map(|field| field.as_bytes()))?;
        rows += 1;
    }
    writer.flush()?;
    Ok(rows)
}

/// Text as drawn: composed (a decomposed "é" would need two glyphs), control characters
/// turned into spaces.
fn clean(text: &str) -> Cow<'_, str> {
    if unicode_normalization::is_nfc(text) && !text.chars().any(char::is_control) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.nfc()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

fn deflate(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

/// Writes a PDF object by object, keeping only their offsets for the cross-reference
/// table (pdf-writer's own `Pdf` builds the whole file in one buffer).
struct PdfStream<W: Write> {
    out: BufWriter<W>,
    position: u64,
    /// By object number minus one; `None` from `reserve` until written.
    offsets: Vec<Option<u64>>,
}

impl<W: Write> PdfStream<W> {
    fn start(out: W) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(256 * 1024, out);
        // The binary comment tells transfer programs the file is not text.
        let header = b"%PDF-1.7\n%\x80\x80\x80\x80\n";
        out.write_all(header)?;
        Ok(Self {
            out,
            position: header.len() as u64,
            offsets: Vec::new(),
        })
    }

    fn reserve(&mut self) -> Ref {
        self.offsets.push(None);
        Ref::new(i32::try_from(self.offsets.len()).unwrap_or(i32::MAX))
    }

    /// Writes the objects `write` puts into a fresh chunk. Each chunk holds one object,
    /// so its offset is where the chunk starts.
    fn object(&mut self, write: impl FnOnce(&mut Chunk)) -> io::Result<()> {
        let mut chunk = Chunk::with_settings(Settings { pretty: false });
        write(&mut chunk);
        let mut refs = chunk.refs();
        let (Some(id), None) = (refs.next(), refs.next()) else {
            return Err(io::Error::other("a PDF chunk must hold exactly one object"));
        };
        let slot = usize::try_from(id.get() - 1)
            .ok()
            .and_then(|index| self.offsets.get_mut(index))
            .ok_or_else(|| {
                io::Error::other("a PDF object was written without a reserved number")
            })?;
        *slot = Some(self.position);
        self.out.write_all(chunk.as_bytes())?;
        self.position += chunk.len() as u64;
        Ok(())
    }

    fn finish(mut self, catalog: Ref, info: Ref) -> io::Result<W> {
        if self.offsets.iter().any(Option::is_none) {
            return Err(io::Error::other("a reserved PDF object was never written"));
        }
        let mut table = String::with_capacity(64 + 20 * self.offsets.len());
        table.push_str(&format!(
            "xref\n0 {}\n0000000000 65535 f\r\n",
            self.offsets.len() + 1
        ));
        for offset in self.offsets.iter().flatten() {
            table.push_str(&format!("{offset:010} 00000 n\r\n"));
        }
        table.push_str(&format!(
            "trailer\n<< /Size {} /Root {} 0 R /Info {} 0 R >>\nstartxref\n{}\n%%EOF\n",
            self.offsets.len() + 1,
            catalog.get(),
            info.get(),
            self.position
        ));
        self.out.write_all(table.as_bytes())?;
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    Regular,
    Bold,
}

impl Weight {
    fn resource(self) -> &'static [u8] {
        match self {
            Self::Regular => b"R",
            Self::Bold => b"B",
        }
    }
}

/// The objects of one embedded font.
#[derive(Clone, Copy)]
struct FontRefs {
    type0: Ref,
    cid: Ref,
    descriptor: Ref,
    file: Ref,
    to_unicode: Ref,
}

impl FontRefs {
    fn reserve<W: Write>(pdf: &mut PdfStream<W>) -> Self {
        Self {
            type0: pdf.reserve(),
            cid: pdf.reserve(),
            descriptor: pdf.reserve(),
            file: pdf.reserve(),
            to_unicode: pdf.reserve(),
        }
    }
}

struct Fonts {
    regular: EmbeddedFont,
    bold: EmbeddedFont,
}

impl Fonts {
    fn load() -> Result<Self, LetterError> {
        Ok(Self {
            regular: EmbeddedFont::load(REGULAR_TTF, "DejaVuSans", Weight::Regular)?,
            bold: EmbeddedFont::load(BOLD_TTF, "DejaVuSans-Bold", Weight::Bold)?,
        })
    }

    fn get(&mut self, weight: Weight) -> &mut EmbeddedFont {
        match weight {
            Weight::Regular => &mut self.regular,
            Weight::Bold => &mut self.bold,
        }
    }
}

#[derive(Clone, Copy)]
struct Glyph {
    id: u16,
    /// In thousandths of the font size, the unit of PDF font widths.
    advance: f32,
    /// The character the glyph shows: `?` stands in for one the font lacks.
    shows: char,
}

/// One font as used by a document: glyph lookups are cached once per character, and
/// each glyph drawn gets a number in the subset embedded at the end (glyph ids are
/// written in that numbering, Identity-H, two bytes each).
struct EmbeddedFont {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    postscript_name: &'static str,
    weight: Weight,
    scale: f32,
    glyphs: HashMap<char, Glyph>,
    remapper: GlyphRemapper,
    /// By subset glyph id: its width and the character it shows (for ToUnicode).
    used: Vec<(f32, Option<char>)>,
}

impl EmbeddedFont {
    fn load(
        data: &'static [u8],
        postscript_name: &'static str,
        weight: Weight,
    ) -> Result<Self, LetterError> {
        let face = ttf_parser::Face::parse(data, 0)
            .map_err(|error| LetterError::Font(format!("{postscript_name}: {error}")))?;
        let scale = 1000.0 / f32::from(face.units_per_em());
        let notdef = face
            .glyph_hor_advance(ttf_parser::GlyphId(0))
            .map_or(0.0, |advance| f32::from(advance) * scale);
        Ok(Self {
            data,
            face,
            postscript_name,
            weight,
            scale,
            glyphs: HashMap::with_capacity(256),
            remapper: GlyphRemapper::new(),
            used: vec![(notdef, None)],
        })
    }

    fn glyph(&mut self, c: char) -> Glyph {
        if let Some(glyph) = self.glyphs.get(&c) {
            return *glyph;
        }
        // A character the font lacks shows as "?" rather than as an empty box.
        let (id, shows) = match self.face.glyph_index(c) {
            Some(id) => (id, c),
            None => (
                self.face.glyph_index('?').unwrap_or(ttf_parser::GlyphId(0)),
                '?',
            ),
        };
        let advance = self
            .face
            .glyph_hor_advance(id)
            .map_or(0.0, |advance| f32::from(advance) * self.scale);
        let glyph = Glyph {
            id: id.0,
            advance,
            shows,
        };
        self.glyphs.insert(c, glyph);
        glyph
    }

    /// Width of `text` at `size`, in points.
    fn width(&mut self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.glyph(c).advance).sum::<f32>() * size / 1000.0
    }

    /// Appends `text` as two-byte subset glyph ids.
    fn encode(&mut self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            let glyph = self.glyph(c);
            let cid = self.remapper.remap(glyph.id);
            if usize::from(cid) == self.used.len() {
                self.used.push((glyph.advance, Some(glyph.shows)));
            }
            out.extend_from_slice(&cid.to_be_bytes());
        }
    }

    /// A tag naming this subset (PDF requires six capital letters before the name).
    fn subset_tag(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for id in self.remapper.remapped_gids() {
            for byte in id.to_be_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        (0..6)
            .map(|_| {
                let letter = b'A' + (hash % 26) as u8;
                hash /= 26;
                char::from(letter)
            })
            .collect()
    }

    /// Writes the font once, as a subset of the glyphs the document used.
    fn write<W: Write>(&self, pdf: &mut PdfStream<W>, refs: FontRefs) -> Result<(), LetterError> {
        let subset = subsetter::subset(self.data, 0, &self.remapper)
            .map_err(|error| LetterError::Font(format!("{}: {error}", self.postscript_name)))?;
        let font_file = deflate(&subset)?;
        let name = format!("{}+{}", self.subset_tag(), self.postscript_name);
        let system_info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };

        pdf.object(|chunk| {
            chunk
                .type0_font(refs.type0)
                .base_font(Name(name.as_bytes()))
                .encoding_predefined(Name(b"Identity-H"))
                .descendant_font(refs.cid)
                .to_unicode(refs.to_unicode);
        })?;
        pdf.object(|chunk| {
            let mut cid_font = chunk.cid_font(refs.cid);
            cid_font
                .subtype(CidFontType::Type2)
                .base_font(Name(name.as_bytes()))
                .system_info(system_info)
                .font_descriptor(refs.descriptor)
                .cid_to_gid_map_predefined(Name(b"Identity"));
            cid_font
                .widths()
                .consecutive(0, self.used.iter().map(|(width, _)| *width));
        })?;
        let bbox = self.face.global_bounding_box();
        let scaled = |value: i16| f32::from(value) * self.scale;
        pdf.object(|chunk| {
            chunk
                .font_descriptor(refs.descriptor)
                .name(Name(name.as_bytes()))
                .flags(FontFlags::SYMBOLIC)
                .bbox(Rect::new(
                    scaled(bbox.x_min),
                    scaled(bbox.y_min),
                    scaled(bbox.x_max),
                    scaled(bbox.y_max),
                ))
                .italic_angle(self.face.italic_angle())
                .ascent(scaled(self.face.ascender()))
                .descent(scaled(self.face.descender()))
                .cap_height(scaled(
                    self.face.capital_height().unwrap_or(self.face.ascender()),
                ))
                .stem_v(match self.weight {
                    Weight::Regular => 80.0,
                    Weight::Bold => 140.0,
                })
                .font_file2(refs.file);
        })?;
        pdf.object(|chunk| {
            chunk
                .stream(refs.file, &font_file)
                .filter(Filter::FlateDecode)
                .pair(
                    Name(b"Length1"),
                    i32::try_from(subset.len()).unwrap_or(i32::MAX),
                );
        })?;
        // ToUnicode makes the text searchable and copyable, accents included.
        let mut cmap = UnicodeCmap::new(Name(b"Custom"), system_info);
        for (cid, (_, character)) in self.used.iter().enumerate() {
            if let (Ok(cid), Some(character)) = (u16::try_from(cid), character) {
                cmap.pair(cid, *character);
            }
        }
        let cmap = deflate(&cmap.finish())?;
        pdf.object(|chunk| {
            chunk
                .cmap(refs.to_unicode, &cmap)
                .filter(Filter::FlateDecode);
        })?;
        Ok(())
    }
}

/// Greedy line breaking at spaces, measured with the font's advance widths. A word wider
/// than the line is cut between characters, so nothing runs off the page.
fn wrap(font: &mut EmbeddedFont, text: &str, size: f32, width: f32) -> Vec<String> {
    let space = font.width(" ", size);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0.0;
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        let word_width = font.width(word, size);
        if !line.is_empty() && line_width + space + word_width <= width {
            line.push(' ');
            line.push_str(word);
            line_width += space + word_width;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if word_width <= width {
            line.push_str(word);
            line_width = word_width;
            continue;
        }
        line_width = 0.0;
        for c in word.chars() {
            let c_width = font.glyph(c).advance * size / 1000.0;
            if !line.is_empty() && line_width + c_width > width {
                lines.push(std::mem::take(&mut line));
                line_width = 0.0;
            }
            line.push(c);
            line_width += c_width;
        }
    }
    lines.push(line);
    lines
}

/// The largest size from `size` down to `min_size` (half-point steps) at which `text`
/// takes at most `max_lines` lines; at `min_size`, as many lines as it takes.
fn fit(
    font: &mut EmbeddedFont,
    text: &str,
    mut size: f32,
    min_size: f32,
    width: f32,
    max_lines: usize,
) -> (f32, Vec<String>) {
    loop {
        let lines = wrap(font, text, size, width);
        if lines.len() <= max_lines || size <= min_size {
            return (size, lines);
        }
        size = (size - 0.5).max(min_size);
    }
}

/// A line of text: `y` is its baseline, counted from the top edge of the page.
struct Run {
    weight: Weight,
    size: f32,
    x: f32,
    y: f32,
    text: String,
    gray: bool,
}

impl Run {
    fn draw(&self, content: &mut Content, fonts: &mut Fonts, scratch: &mut Vec<u8>) {
        scratch.clear();
        fonts.get(self.weight).encode(&self.text, scratch);
        if self.gray {
            content.set_fill_gray(0.35);
        }
        content
            .begin_text()
            .set_font(Name(self.weight.resource()), self.size)
            .next_line(self.x, PAGE_HEIGHT - self.y)
            .show(Str(scratch))
            .end_text();
        if self.gray {
            content.set_fill_gray(0.0);
        }
    }
}

/// Lays out lines from the top down.
struct Flow {
    runs: Vec<Run>,
    /// Top of the next line.
    y: f32,
}

impl Flow {
    fn lines(
        &mut self,
        weight: Weight,
        size: f32,
        leading: f32,
        x: f32,
        lines: Vec<String>,
        gray: bool,
    ) {
        for text in lines {
            self.runs.push(Run {
                weight,
                size,
                x,
                y: self.y + size * 0.8,
                text,
                gray,
            });
            self.y += size * leading;
        }
    }
}

/// Where a line that differs from letter to letter goes.
#[derive(Clone, Copy)]
struct Slot {
    x: f32,
    y: f32,
    width: f32,
    size: f32,
}

/// The page, computed once per run: every letter shares it, and only the household's
/// parts (reference, address, allotment, QR code, code) are drawn per page.
struct Layout {
    /// The campaign's lines, drawn once into the shared template.
    campaign_runs: Vec<Run>,
    letterhead_rule: f32,
    voucher_top: f32,
    allotment: Slot,
    /// Bottom-left corner of the QR symbol (PDF coordinates).
    qr_left: f32,
    qr_bottom: f32,
    /// The code is centred on `x` and shrunk to `width`.
    code: Slot,
}

impl Layout {
    fn new(
        campaign: &LetterCampaign<'_>,
        texts: &LetterTexts,
        fonts: &mut Fonts,
        qr_modules: usize,
    ) -> Result<Self, LetterError> {
        let mut flow = Flow {
            runs: Vec::new(),
            y: mm(15.0),
        };
        // The band above the envelope window is free: a long name takes its width.
        let (size, lines) = fit(
            &mut fonts.bold,
            &clean(campaign.tenant_name),
            15.0,
            10.0,
            TEXT_WIDTH,
            2,
        );
        flow.lines(Weight::Bold, size, 1.2, MARGIN, lines, false);
        let letterhead_rule = flow.y + mm(1.0);

        let voucher = Voucher::new(texts, fonts, qr_modules);
        let body = [10.5, 10.0, 9.5, 9.0, 8.5, 8.0]
            .into_iter()
            .map(|size| Body::new(campaign, texts, fonts, size))
            .find(|body| body.bottom + mm(5.0) <= voucher.top)
            .ok_or(LetterError::CampaignTooLong)?;
        flow.runs.extend(body.runs);
        flow.runs.extend(voucher.runs);
        let (footer_size, footer) = fit(
            &mut fonts.regular,
            &clean(&texts.footer),
            7.5,
            6.0,
            TEXT_WIDTH,
            2,
        );
        flow.y = FOOTER_BASELINE - footer_size * 0.8;
        flow.lines(Weight::Regular, footer_size, 1.25, MARGIN, footer, true);

        Ok(Self {
            campaign_runs: flow.runs,
            letterhead_rule,
            voucher_top: voucher.top,
            allotment: body.allotment,
            qr_left: voucher.qr_left,
            qr_bottom: PAGE_HEIGHT - voucher.qr_top - QR_SIDE,
            code: voucher.code,
        })
    }

    /// The content stream of the campaign's part of the page.
    fn template(&self, fonts: &mut Fonts) -> Vec<u8> {
        let mut content = Content::new();
        let mut scratch = Vec::new();
        // A short rule under the letterhead and a frame round the voucher.
        content
            .set_line_width(0.6)
            .move_to(MARGIN, PAGE_HEIGHT - self.letterhead_rule)
            .line_to(MARGIN + mm(30.0), PAGE_HEIGHT - self.letterhead_rule)
            .stroke();
        content
            .set_line_width(0.8)
            .rect(
                MARGIN,
                PAGE_HEIGHT - VOUCHER_BOTTOM,
                TEXT_WIDTH,
                VOUCHER_BOTTOM - self.voucher_top,
            )
            .stroke();
        for run in &self.campaign_runs {
            run.draw(&mut content, fonts, &mut scratch);
        }
        content.finish().into_vec()
    }

    /// Writes one letter's content stream into `content` (cleared first): the campaign's
    /// part, then the household's.
    fn draw_letter(
        &self,
        letter: &Letter<'_>,
        qr: &QrCode,
        campaign: &LetterCampaign<'_>,
        texts: &LetterTexts,
        fonts: &mut Fonts,
        content: &mut Vec<u8>,
    ) {
        let mut page = Content::new();
        page.save_state()
            .x_object(Name(b"Campaign"))
            .restore_state();
        let mut scratch = Vec::with_capacity(128);
        for run in self.letter_runs(letter, campaign, texts, fonts) {
            run.draw(&mut page, fonts, &mut scratch);
        }
        draw_qr(&mut page, qr, self.qr_left, self.qr_bottom, QR_SIDE);
        content.clear();
        content.extend_from_slice(&page.finish());
    }

    /// The household's lines: reference, address, allotment and code.
    fn letter_runs(
        &self,
        letter: &Letter<'_>,
        campaign: &LetterCampaign<'_>,
        texts: &LetterTexts,
        fonts: &mut Fonts,
    ) -> Vec<Run> {
        let mut runs = Vec::with_capacity(12);

        runs.push(Run {
            weight: Weight::Regular,
            size: 7.0,
            x: ADDRESS_LEFT,
            y: REFERENCE_BASELINE,
            text: format!(
                "{} {}",
                clean(&texts.reference_label),
                clean(letter.household_reference)
            ),
            gray: true,
        });
        let address: Vec<Cow<'_, str>> = letter.address.iter().map(|line| clean(line)).collect();
        // One size for the whole block, shrunk until the longest line fits the window;
        // below 8 points a line wraps instead.
        let widest = address
            .iter()
            .map(|line| fonts.regular.width(line, 10.0))
            .fold(0.0, f32::max);
        let size = if widest > ADDRESS_WIDTH {
            (10.0 * ADDRESS_WIDTH / widest).max(8.0)
        } else {
            10.0
        };
        let mut flow = Flow {
            runs,
            y: ADDRESS_BASELINE - size * 0.8,
        };
        for line in &address {
            let lines = wrap(&mut fonts.regular, line, size, ADDRESS_WIDTH);
            flow.lines(Weight::Regular, size, 1.2, ADDRESS_LEFT, lines, false);
        }
        let mut runs = flow.runs;

        let allotment = format!("{} × {}", letter.allotment, clean(campaign.item));
        let size = shrink_to_width(&mut fonts.bold, &allotment, self.allotment);
        runs.push(Run {
            weight: Weight::Bold,
            size,
            x: self.allotment.x,
            y: self.allotment.y,
            text: allotment,
            gray: false,
        });

        let grouped = letter.code.grouped();
        let size = shrink_to_width(&mut fonts.bold, &grouped, self.code);
        let width = fonts.bold.width(&grouped, size);
        runs.push(Run {
            weight: Weight::Bold,
            size,
            x: self.code.x - width / 2.0,
            y: self.code.y,
            text: grouped,
            gray: false,
        });
        runs
    }
}

/// The size at which `text` fits `slot.width` on one line, at most `slot.size`.
fn shrink_to_width(font: &mut EmbeddedFont, text: &str, slot: Slot) -> f32 {
    let width = font.width(text, slot.size);
    if width > slot.width {
        slot.size * slot.width / width
    } else {
        slot.size
    }
}

/// The QR symbol as filled rectangles in module units: one rectangle per horizontal run
/// of dark modules, all in one path filled once (no seams between rows when rendered).
fn draw_qr(content: &mut Content, qr: &QrCode, left: f32, bottom: f32, side: f32) {
    let modules = qr.width();
    let module = side / modules as f32;
    let colors = qr.to_colors();
    content
        .save_state()
        .transform([module, 0.0, 0.0, module, left, bottom]);
    for (row, cells) in colors.chunks(modules).enumerate() {
        let y = (modules - 1 - row) as f32;
        let mut column = 0;
        while column < modules {
            if cells[column] == Color::Light {
                column += 1;
                continue;
            }
            let start = column;
            while column < modules && cells[column] == Color::Dark {
                column += 1;
            }
            content.rect(start as f32, y, (column - start) as f32, 1.0);
        }
    }
    content.fill_nonzero().restore_state();
}

/// The campaign's text between the window and the voucher, at one body size.
struct Body {
    runs: Vec<Run>,
    allotment: Slot,
    bottom: f32,
}

impl Body {
    fn new(
        campaign: &LetterCampaign<'_>,
        texts: &LetterTexts,
        fonts: &mut Fonts,
        size: f32,
    ) -> Self {
        let leading = 1.35;
        let mut flow = Flow {
            runs: Vec::new(),
            y: BODY_TOP,
        };
        let (title_size, title) = fit(
            &mut fonts.bold,
            &clean(campaign.campaign_name),
            size + 5.0,
            size + 1.0,
            TEXT_WIDTH,
            2,
        );
        flow.lines(Weight::Bold, title_size, 1.2, MARGIN, title, false);
        flow.y += mm(3.0);
        let greeting = wrap(
            &mut fonts.regular,
            &clean(&texts.greeting),
            size,
            TEXT_WIDTH,
        );
        flow.lines(Weight::Regular, size, leading, MARGIN, greeting, false);
        flow.y += size * 0.4;
        let introduction = wrap(
            &mut fonts.regular,
            &clean(&texts.introduction),
            size,
            TEXT_WIDTH,
        );
        flow.lines(Weight::Regular, size, leading, MARGIN, introduction, false);

        let allotment_size = size + 4.0;
        flow.y += mm(1.5);
        let allotment = Slot {
            x: MARGIN + mm(8.0),
            y: flow.y + allotment_size * 0.8,
            width: TEXT_WIDTH - mm(8.0),
            size: allotment_size,
        };
        flow.y += allotment_size * 1.3 + mm(3.0);

        let heading_size = size + 1.5;
        let heading = wrap(
            &mut fonts.bold,
            &clean(&texts.sites_heading),
            heading_size,
            TEXT_WIDTH,
        );
        flow.lines(Weight::Bold, heading_size, 1.3, MARGIN, heading, false);
        let dates = wrap(&mut fonts.regular, &clean(campaign.dates), size, TEXT_WIDTH);
        flow.lines(Weight::Regular, size, leading, MARGIN, dates, false);
        let indent = mm(5.0);
        for site in campaign.sites {
            flow.y += size * 0.4;
            flow.runs.push(Run {
                weight: Weight::Bold,
                size,
                x: MARGIN + mm(1.0),
                y: flow.y + size * 0.8,
                text: "•".into(),
                gray: false,
            });
            let name = wrap(
                &mut fonts.bold,
                &clean(site.name),
                size,
                TEXT_WIDTH - indent,
            );
            flow.lines(Weight::Bold, size, leading, MARGIN + indent, name, false);
            for detail in [site.address, site.hours] {
                if detail.trim().is_empty() {
                    continue;
                }
                let lines = wrap(
                    &mut fonts.regular,
                    &clean(detail),
                    size,
                    TEXT_WIDTH - indent,
                );
                flow.lines(
                    Weight::Regular,
                    size,
                    leading,
                    MARGIN + indent,
                    lines,
                    false,
                );
            }
        }
        Self {
            runs: flow.runs,
            allotment,
            bottom: flow.y,
        }
    }
}

/// The framed block at the bottom: heading, QR code with the instructions beside it,
/// then the code. Its height depends on the instructions, so it is laid out from its
/// top and moved down until it ends at `VOUCHER_BOTTOM`.
struct Voucher {
    runs: Vec<Run>,
    top: f32,
    qr_left: f32,
    qr_top: f32,
    code: Slot,
}

impl Voucher {
    fn new(texts: &LetterTexts, fonts: &mut Fonts, qr_modules: usize) -> Self {
        let padding = mm(4.0);
        let inner_width = TEXT_WIDTH - 2.0 * padding;
        let quiet = QR_SIDE / qr_modules as f32 * QR_QUIET_MODULES;
        let mut flow = Flow {
            runs: Vec::new(),
            y: padding,
        };
        let (heading_size, heading) = fit(
            &mut fonts.bold,
            &clean(&texts.voucher_heading),
            11.0,
            9.0,
            inner_width,
            2,
        );
        flow.lines(
            Weight::Bold,
            heading_size,
            1.25,
            MARGIN + padding,
            heading,
            false,
        );

        // Nothing may be drawn in the quiet zone round the symbol.
        let qr_top = flow.y + quiet;
        let qr_left = MARGIN + quiet.max(padding);
        let instructions_left = qr_left + QR_SIDE + quiet;
        let instructions_width = MARGIN + TEXT_WIDTH - padding - instructions_left;
        let size = 9.5;
        let bullet_indent = mm(4.0);
        flow.y = qr_top;
        for instruction in &texts.instructions {
            flow.runs.push(Run {
                weight: Weight::Regular,
                size,
                x: instructions_left,
                y: flow.y + size * 0.8,
                text: "•".into(),
                gray: false,
            });
            let lines = wrap(
                &mut fonts.regular,
                &clean(instruction),
                size,
                instructions_width - bullet_indent,
            );
            flow.lines(
                Weight::Regular,
                size,
                1.3,
                instructions_left + bullet_indent,
                lines,
                false,
            );
            flow.y += mm(1.5);
        }
        flow.y = flow.y.max(qr_top + QR_SIDE + quiet);

        let label_size = 9.0;
        let label = clean(&texts.code_label).into_owned();
        let label_width = fonts.regular.width(&label, label_size);
        let centre = MARGIN + TEXT_WIDTH / 2.0;
        flow.runs.push(Run {
            weight: Weight::Regular,
            size: label_size,
            x: centre - label_width.min(inner_width) / 2.0,
            y: flow.y + label_size * 0.8,
            text: label,
            gray: true,
        });
        flow.y += label_size * 1.3;
        let code_size = 20.0;
        let code = Slot {
            x: centre,
            y: flow.y + code_size * 0.8,
            width: inner_width,
            size: code_size,
        };
        let height = flow.y + code_size * 1.1 + padding;

        let top = VOUCHER_BOTTOM - height;
        for run in &mut flow.runs {
            run.y += top;
        }
        Self {
            runs: flow.runs,
            top,
            qr_left,
            qr_top: qr_top + top,
            code: Slot {
                y: code.y + top,
                ..code
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITES: [DistributionSite<'static>; 2] = [
        DistributionSite {
            name: "Salle des fêtes",
            address: "Place du Marché, 59230 Saint-Amand-les-Eaux",
            hours: "de 9 h à 12 h et de 14 h à 18 h",
        },
        DistributionSite {
            name: "Mairie annexe du Moulin des Loups",
            address: "3 rue de l’Œuvre, 59230 Saint-Amand-les-Eaux",
            hours: "de 10 h à 16 h",
        },
    ];

    fn campaign() -> LetterCampaign<'static> {
        LetterCampaign {
            tenant_name: "Commune de Saint-Amand-les-Eaux",
            campaign_name: "Distribution de masques lavables — mai 2020",
            item: "masques lavables",
            dates: "Du lundi 11 au samedi 16 mai 2020",
            sites: &SITES,
        }
    }

    struct Household {
        reference: String,
        address: Vec<String>,
        allotment: u32,
        code: VoucherCode,
    }

    fn households(count: usize) -> Vec<Household> {
        (0..count)
            .map(|n| Household {
                reference: format!("F-{n:05}"),
                address: vec![
                    format!("Mme Éloïse Lefèvre-Dupré {n}"),
                    "Bâtiment B, appartement 3".into(),
                    format!("{} rue de l’Église", n + 1),
                    "59230 SAINT-AMAND-LES-EAUX".into(),
                ],
                allotment: 1 + (n % 4) as u32,
                code: VoucherCode::generate(),
            })
            .collect()
    }

    fn letters(households: &[Household]) -> impl Iterator<Item = Letter<'_>> {
        households.iter().map(|household| Letter {
            household_reference: &household.reference,
            address: &household.address,
            allotment: household.allotment,
            code: &household.code,
        })
    }

    fn pdf(households: &[Household]) -> Vec<u8> {
        let mut out = Vec::new();
        let pages = write_letters_pdf(
            &campaign(),
            &LetterTexts::french(),
            letters(households),
            &mut out,
        )
        .unwrap();
        assert_eq!(pages, households.len());
        out
    }

    fn font_files(document: &lopdf::Document) -> usize {
        document
            .objects
            .values()
            .filter_map(|object| object.as_dict().ok())
            .filter(|dict| dict.has(b"FontFile2"))
            .count()
    }

    #[test]
    fn one_a4_page_per_letter() {
        let households = households(7);
        let document = lopdf::Document::load_mem(&pdf(&households)).unwrap();
        let pages = document.get_pages();
        assert_eq!(pages.len(), 7);
        for page in pages.values() {
            let page = document.get_dictionary(*page).unwrap();
            let media_box: Vec<f32> = page
                .get(b"MediaBox")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_float().unwrap())
                .collect();
            assert_eq!(media_box, [0.0, 0.0, 595.28, 841.89]);
        }
    }

    #[test]
    fn each_font_is_embedded_once_whatever_the_number_of_pages() {
        let few = lopdf::Document::load_mem(&pdf(&households(2))).unwrap();
        let many = lopdf::Document::load_mem(&pdf(&households(60))).unwrap();
        // Regular and bold, each once.
        assert_eq!(font_files(&few), 2);
        assert_eq!(font_files(&many), 2);
        for object in many.objects.values() {
            let Ok(font) = object.as_dict() else { continue };
            if font.get(b"Subtype").and_then(|s| s.as_name()).ok() == Some(b"Type0") {
                assert_eq!(
                    font.get(b"Encoding").unwrap().as_name().unwrap(),
                    b"Identity-H"
                );
                assert!(font.has(b"ToUnicode"));
                // A subset is named with a six-letter tag.
                let name = font.get(b"BaseFont").unwrap().as_name().unwrap();
                assert_eq!(name[6], b'+', "{}", String::from_utf8_lossy(name));
            }
        }
    }

    #[test]
    fn the_embedded_fonts_are_subsets() {
        let document = lopdf::Document::load_mem(&pdf(&households(3))).unwrap();
        for object in document.objects.values() {
            if let Ok(stream) = object.as_stream()
                && stream.dict.has(b"Length1")
            {
                let length = stream.dict.get(b"Length1").unwrap().as_i64().unwrap();
                assert!(length < 100_000, "font file of {length} bytes");
            }
        }
    }

    #[test]
    fn the_household_text_is_extractable_with_its_accents() {
        let households = households(3);
        let document = lopdf::Document::load_mem(&pdf(&households)).unwrap();
        for (number, household) in (1..).zip(&households) {
            let text = document.extract_text(&[number]).unwrap();
            assert!(text.contains(&household.code.grouped()), "{text}");
            for line in &household.address {
                assert!(text.contains(line.as_str()), "{line:?} not in {text}");
            }
            assert!(text.contains(&format!("{} × masques lavables", household.allotment)));
        }
    }

    #[test]
    fn pages_keep_the_order_of_the_letters_across_batches() {
        let households = households(BATCH + 20);
        let document = lopdf::Document::load_mem(&pdf(&households)).unwrap();
        for index in [0, BATCH - 1, BATCH, BATCH + 19] {
            let page = u32::try_from(index + 1).unwrap();
            let text = document.extract_text(&[page]).unwrap();
            assert!(
                text.contains(&households[index].code.grouped()),
                "page {page}"
            );
            assert!(text.contains(&households[index].reference), "page {page}");
        }
    }

    #[test]
    fn long_text_wraps_within_the_width() {
        let mut fonts = Fonts::load().unwrap();
        let text = LetterTexts::french().instructions.join(" ");
        let width = mm(60.0);
        let lines = wrap(&mut fonts.regular, &text, 10.0, width);
        assert!(lines.len() > 4, "{lines:?}");
        for line in &lines {
            assert!(fonts.regular.width(line, 10.0) <= width, "{line}");
            assert!(!line.starts_with(' ') && !line.ends_with(' '));
        }
        assert_eq!(lines.join(" "), text);
    }

    #[test]
    fn a_word_wider_than_the_line_is_cut() {
        let mut fonts = Fonts::load().unwrap();
        let word = "Saint-Rémy-en-Bouzemont-Saint-Genest-et-Isson".repeat(3);
        let lines = wrap(&mut fonts.bold, &word, 14.0, mm(40.0));
        assert!(lines.len() > 1);
        for line in &lines {
            assert!(fonts.bold.width(line, 14.0) <= mm(40.0), "{line}");
        }
        assert_eq!(lines.concat(), word);
    }

    #[test]
    fn text_is_composed_and_missing_characters_show_as_question_marks() {
        assert_eq!(clean("Le\u{301}ve\tre"), "Léve re");
        assert!(matches!(clean("Lévêque"), Cow::Borrowed(_)));
        let mut fonts = Fonts::load().unwrap();
        assert_eq!(fonts.regular.glyph('é').shows, 'é');
        assert_eq!(fonts.regular.glyph('漢').shows, '?');
        let mut encoded = Vec::new();
        fonts.regular.encode("漢?", &mut encoded);
        assert_eq!(encoded[..2], encoded[2..]);
    }

    /// Every line of the campaign and of the household stays inside the page margins.
    fn assert_on_page(runs: &[Run], fonts: &mut Fonts) {
        for run in runs {
            let right = run.x + fonts.get(run.weight).width(&run.text, run.size);
            assert!(
                run.x >= mm(10.0) && right <= PAGE_WIDTH - mm(10.0),
                "{}",
                run.text
            );
            assert!(
                run.y > mm(10.0) && run.y < PAGE_HEIGHT - mm(10.0),
                "{}",
                run.text
            );
        }
    }

    #[test]
    fn long_names_and_addresses_stay_on_the_page() {
        let mut fonts = Fonts::load().unwrap();
        let long_campaign = LetterCampaign {
            tenant_name: "Communauté d’agglomération de la Porte du Hainaut — Commune \
                          associée de Saint-Amand-les-Eaux et de ses hameaux réunis",
            campaign_name: "Distribution exceptionnelle de masques lavables en tissu \
                            réutilisables aux normes AFNOR pour tous les habitants, mai 2020",
            ..campaign()
        };
        let texts = LetterTexts::french();
        let layout = Layout::new(&long_campaign, &texts, &mut fonts, 25).unwrap();
        assert_on_page(&layout.campaign_runs, &mut fonts);

        let code = VoucherCode::generate();
        let address = vec![
            "Monsieur et Madame Jean-Christophe de La Rochefoucauld-Montmorency".to_owned(),
            "Résidence des Grands Chênes, bâtiment C, escalier 4, appartement 1207".into(),
            "Lieu-dit La Croix-Saint-Ouen-sur-le-Plateau-des-Mille-Étangs".into(),
            "BP 12345".into(),
            "59230 SAINT-AMAND-LES-EAUX CEDEX".into(),
        ];
        let letter = Letter {
            household_reference: "F-00001",
            address: &address,
            allotment: 12,
            code: &code,
        };
        let runs = layout.letter_runs(&letter, &long_campaign, &texts, &mut fonts);
        assert_on_page(&runs, &mut fonts);
        // The address stays in the envelope window.
        for run in runs.iter().filter(|run| run.x == ADDRESS_LEFT) {
            let right = run.x + fonts.regular.width(&run.text, run.size);
            assert!(right <= ADDRESS_LEFT + ADDRESS_WIDTH, "{}", run.text);
            assert!(run.y < mm(90.0), "{}", run.text);
        }
    }

    #[test]
    fn the_code_is_printed_large_and_the_reference_small() {
        let mut fonts = Fonts::load().unwrap();
        let (campaign, texts) = (campaign(), LetterTexts::english());
        let layout = Layout::new(&campaign, &texts, &mut fonts, 25).unwrap();
        let household = &households(1)[0];
        let letter = letters(std::slice::from_ref(household)).next().unwrap();
        let runs = layout.letter_runs(&letter, &campaign, &texts, &mut fonts);
        let size_of = |text: &str| {
            runs.iter()
                .find(|run| run.text.contains(text))
                .unwrap()
                .size
        };
        assert!(size_of(&household.code.grouped()) >= 16.0);
        assert!(size_of(&household.reference) <= 8.0);
    }

    #[test]
    fn the_qr_code_is_drawn_as_one_rectangle_per_run() {
        let code = VoucherCode::generate();
        let qr = QrCode::with_version(code.as_str(), QR_VERSION, QR_EC_LEVEL).unwrap();
        let colors = qr.to_colors();
        let dark = colors.iter().filter(|c| **c == Color::Dark).count();
        let runs = colors
            .chunks(qr.width())
            .map(|row| {
                row.iter()
                    .zip(std::iter::once(&Color::Light).chain(row))
                    .filter(|(this, before)| **this == Color::Dark && **before == Color::Light)
                    .count()
            })
            .sum::<usize>();
        let mut content = Content::new();
        draw_qr(&mut content, &qr, 0.0, 0.0, QR_SIDE);
        let content = content.finish();
        let rectangles = content
            .split(|byte| *byte == b'\n')
            .filter(|line| line.ends_with(b" re"))
            .count();
        assert_eq!(rectangles, runs);
        assert!(
            rectangles * 3 < dark * 2,
            "{rectangles} rectangles for {dark} modules"
        );
    }

    #[test]
    fn refuses_what_it_cannot_print() {
        let mut household = households(1).remove(0);
        household.address = (1..=7).map(|n| format!("ligne {n}")).collect();
        let result = write_letters_pdf(
            &campaign(),
            &LetterTexts::french(),
            letters(std::slice::from_ref(&household)),
            Vec::new(),
        );
        assert!(matches!(
            result,
            Err(LetterError::InvalidLetter { letter: 1, .. })
        ));

        let none = write_letters_pdf(&campaign(), &LetterTexts::french(), [], Vec::new());
        assert!(matches!(none, Err(LetterError::NoLetters)));

        let sites = vec![SITES[0]; 40];
        let crowded = LetterCampaign {
            sites: &sites,
            ..campaign()
        };
        let result = write_letters_pdf(
            &crowded,
            &LetterTexts::french(),
            letters(&households(1)),
            Vec::new(),
        );
        assert!(matches!(result, Err(LetterError::CampaignTooLong)));
    }

    #[test]
    fn mail_merge_is_excel_ready() {
        let households = households(3);
        let mut out = Vec::new();
        assert_eq!(
            write_mail_merge_csv(letters(&households), &mut out).unwrap(),
            3
        );
        let text = String::from_utf8(out).unwrap();
        let text = text.strip_prefix('\u{feff}').unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "household_reference;address_1;address_2;address_3;address_4;address_5;\
             address_6;allotment;code;code_qr"
        );
        let first = &households[0];
        assert_eq!(
            lines[1],
            format!(
                "F-00000;Mme Éloïse Lefèvre-Dupré 0;Bâtiment B, appartement 3;\
                 1 rue de l’Église;59230 SAINT-AMAND-LES-EAUX;;;1;{};{}",
                first.code.grouped(),
                first.code.as_str()
            )
        );
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4], "");
    }

    #[test]
    fn mail_merge_neutralises_formulas() {
        let mut household = households(1).remove(0);
        household.reference = "=HYPERLINK(\"http://x\")".into();
        household.address = vec![
            "+33 1 23".into(),
            "-2".into(),
            "@SUM(A1)".into(),
            "\tTab".into(),
            "a = b; c".into(),
        ];
        let mut out = Vec::new();
        write_mail_merge_csv(letters(std::slice::from_ref(&household)), &mut out).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b';')
            .from_reader(&out[3..]);
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "'=HYPERLINK(\"http://x\")");
        assert_eq!(&row[1], "'+33 1 23");
        assert_eq!(&row[2], "'-2");
        assert_eq!(&row[3], "'@SUM(A1)");
        assert_eq!(&row[4], "'\tTab");
        assert_eq!(&row[5], "a = b; c");
        assert_eq!(&row[6], "");
        assert_eq!(&row[8], household.code.grouped());
    }
}
