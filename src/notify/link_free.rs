//! The link-free rule, enforced: before any notice leaves, its texts are searched for
//! anything a mail client or phone would turn into a link (schemes, `www.`, domain
//! names — also disguised with look-alike or spaced dots —, email and IP addresses),
//! for remote content and attachments, and for the titles of its documents.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Why a notice was refused (the text itself is never reported: it may hold data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("a URL scheme")]
    Scheme,
    #[error("a domain name")]
    Domain,
    #[error("an email address")]
    EmailAddress,
    #[error("an IP address")]
    IpAddress,
    #[error("remote content or markup that loads it")]
    RemoteContent,
    #[error("an attachment")]
    Attachment,
    #[error("a document title")]
    Title,
}

/// What a notice is made of, as it would leave.
#[derive(Debug, Default)]
pub struct OutgoingTexts<'a> {
    pub parts: Vec<&'a str>,
    pub attachments: usize,
}

/// The check, with what it may allow (the sender's own address) and must refuse.
pub struct LinkFreeCheck<'a> {
    sender: Option<String>,
    titles: &'a [String],
}

impl<'a> LinkFreeCheck<'a> {
    /// `sender`: the configured From address, the one address allowed to appear.
    pub fn new(sender: Option<&str>, titles: &'a [String]) -> Self {
        Self {
            sender: sender.map(|address| address.trim().to_lowercase()),
            titles,
        }
    }

    /// Passes a notice, or says why it must not leave.
    pub fn check(&self, outgoing: &OutgoingTexts<'_>) -> Result<(), LinkRefusal> {
        if outgoing.attachments > 0 {
            return Err(LinkRefusal::Attachment);
        }
        for part in &outgoing.parts {
            self.check_text(part)?;
        }
        Ok(())
    }

    /// Checks one text.
    pub fn check_text(&self, text: &str) -> Result<(), LinkRefusal> {
        let mut normal = normalise(text);
        // The sender's own address may appear; its domain must not count as a link.
        if let Some(sender) = self.sender.as_deref().filter(|s| !s.is_empty()) {
            normal = normal.replace(sender, " ");
        }
        check_remote_content(&normal)?;
        check_schemes(&normal)?;
        check_addresses(&normal, self.sender.as_deref())?;
        check_ip_addresses(&normal)?;
        check_domains(&collapse_disguised_dots(&normal))?;
        self.check_titles(&normal)
    }

    fn check_titles(&self, normal: &str) -> Result<(), LinkRefusal> {
        let text = fold(normal);
        for title in self.titles {
            let title = fold(&normalise(title));
            // A one-word title ("Document", "Facture") says little, and the notice's
            // own wording may contain it; longer titles are what must never leak.
            if title.split_whitespace().count() < 2 {
                continue;
            }
            if contains_words(&text, &title) {
                return Err(LinkRefusal::Title);
            }
        }
        Ok(())
    }
}

/// Compatibility form (full-width letters become ASCII), lowercase, invisible
/// characters removed, look-alike dots and at signs replaced by the real ones.
fn normalise(text: &str) -> String {
    text.nfkc()
        .flat_map(char::to_lowercase)
        .filter(|c| {
            !matches!(
                c,
                '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
            )
        })
        .map(|c| match c {
            '\u{3002}' | '\u{FF61}' | '\u{FF0E}' | '\u{2024}' | '\u{FE52}' | '\u{0701}'
            | '\u{0702}' | '\u{2E3C}' | '\u{A4F8}' => '.',
            '\u{FF20}' | '\u{FE6B}' => '@',
            '\u{FF1A}' | '\u{FE55}' | '\u{A789}' | '\u{2236}' => ':',
            '\u{2044}' | '\u{2215}' | '\u{29F8}' | '\u{FF0F}' => '/',
            other => other,
        })
        .collect()
}

/// Accents removed and whitespace collapsed, to compare titles.
fn fold(text: &str) -> String {
    let stripped: String = text.nfkd().filter(|c| !is_combining_mark(*c)).collect();
    stripped
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn contains_words(text: &str, words: &str) -> bool {
    let padded = format!(" {text} ");
    padded.contains(&format!(" {words} "))
}

fn check_remote_content(text: &str) -> Result<(), LinkRefusal> {
    const MARKERS: [&str; 15] = [
        "<img", "href", "<a ", "<a>", "<a\n", "<a\t", "<link", "<iframe", "<object", "<embed",
        "@import", "srcset", "<base", "<svg", "<video",
    ];
    // Attributes are also looked for with the spaces taken out (`src = x`).
    const SQUEEZED_MARKERS: [&str; 5] = ["src=", "url(", "href=", "background=", "poster="];
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if MARKERS.iter().any(|marker| text.contains(marker))
        || SQUEEZED_MARKERS
            .iter()
            .any(|marker| squeezed.contains(marker))
    {
        return Err(LinkRefusal::RemoteContent);
    }
    Ok(())
}

fn check_schemes(text: &str) -> Result<(), LinkRefusal> {
    const SCHEMES: [&str; 22] = [
        "http",
        "https",
        "hxxp",
        "hxxps",
        "ftp",
        "ftps",
        "sftp",
        "mailto",
        "tel",
        "sms",
        "smsto",
        "callto",
        "file",
        "data",
        "javascript",
        "ws",
        "wss",
        "news",
        "irc",
        "git",
        "ssh",
        "cid",
    ];
    if text.contains("://") || text.contains("hxxp") || text.contains(":\\\\") {
        return Err(LinkRefusal::Scheme);
    }
    for word in words_with_positions(text) {
        let rest = &text[word.1..];
        let name = word.0;
        let scheme_like =
            SCHEMES.contains(&name) || name.starts_with("http") || name.starts_with("xn--");
        // `http :` with a space is still typed as a link; `SMS :` in a sentence is not.
        let spaced = ["http", "https", "hxxp", "ftp", "mailto"].contains(&name);
        if scheme_like && (rest.starts_with(':') || (spaced && rest.starts_with(" :"))) {
            return Err(LinkRefusal::Scheme);
        }
        if name == "www" && (rest.starts_with('.') || rest.starts_with(" .")) {
            return Err(LinkRefusal::Scheme);
        }
    }
    Ok(())
}

/// ASCII-alphanumeric words (with `-`) and the byte offset just after each.
fn words_with_positions(text: &str) -> Vec<(&str, usize)> {
    let mut words = Vec::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        let in_word = c.is_ascii_alphanumeric() || c == '-' || c == '+';
        match (in_word, start) {
            (true, None) => {
                // A word glued to a letter (`hôtel:`) is not a scheme.
                let glued = text[..index]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric);
                start = (!glued).then_some(index).or(Some(usize::MAX));
            }
            (false, Some(begin)) => {
                if begin != usize::MAX {
                    words.push((&text[begin..index], index));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = start
        && begin != usize::MAX
    {
        words.push((&text[begin..], text.len()));
    }
    words
}

fn check_addresses(text: &str, sender: Option<&str>) -> Result<(), LinkRefusal> {
    for (index, _) in text.match_indices('@') {
        let before = text[..index]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace());
        let after = text[index + 1..]
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace());
        if !(before && after) {
            continue;
        }
        let is_token_char = |c: char| !c.is_whitespace() && !"<>()[]\"',;".contains(c);
        let start = text[..index]
            .char_indices()
            .rev()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = text[index..]
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(text.len(), |(i, _)| index + i);
        let address = text[start..end].trim_end_matches(['.', ':', '!', '?']);
        if sender != Some(address) {
            return Err(LinkRefusal::EmailAddress);
        }
    }
    Ok(())
}

fn check_ip_addresses(text: &str) -> Result<(), LinkRefusal> {
    for token in text.split(|c: char| c.is_whitespace() || "()[]<>,;\"'".contains(c)) {
        let token = token.trim_end_matches(['.', ':', '!', '?']);
        let host = token.split('/').next().unwrap_or(token);
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) && h.contains('.') {
                h
            } else {
                host
            }
        });
        if host.parse::<std::net::Ipv4Addr>().is_ok() || host.parse::<std::net::Ipv6Addr>().is_ok()
        {
            return Err(LinkRefusal::IpAddress);
        }
        // Dotted numbers that browsers still resolve (`10.1`, `127.1`) are left alone:
        // they read as decimals; four groups are an address.
        let groups: Vec<&str> = host.split('.').collect();
        if groups.len() == 4
            && groups
                .iter()
                .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(LinkRefusal::IpAddress);
        }
    }
    Ok(())
}

/// `example . com`, `example[.]com`, `example (dot) com`, `example dot com` → `example.com`.
fn collapse_disguised_dots(text: &str) -> String {
    let mut collapsed = text.to_owned();
    for disguise in [
        "[.]", "(.)", "{.}", "[dot]", "(dot)", "{dot}", "[point]", "(point)", "<dot>",
    ] {
        collapsed = collapsed.replace(disguise, ".");
    }
    let words: Vec<&str> = collapsed.split(' ').collect();
    let mut out = String::with_capacity(collapsed.len());
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        let next_is_dot = words
            .get(index + 1)
            .is_some_and(|next| *next == "." || *next == "dot");
        let after = words.get(index + 2);
        if next_is_dot && !word.is_empty() && after.is_some_and(|after| !after.is_empty()) {
            out.push_str(word);
            out.push('.');
            index += 2;
            continue;
        }
        out.push_str(word);
        if index + 1 < words.len() {
            out.push(' ');
        }
        index += 1;
    }
    // `example .com` and `example. com`-style halves are not linkified by clients, but a
    // dot directly between two labels (after the above) is.
    out
}

/// Top-level domains a client would linkify or a reader would type; any two-letter
/// label counts too (country codes).
const KNOWN_TLDS: [&str; 48] = [
    "com",
    "net",
    "org",
    "info",
    "biz",
    "edu",
    "gov",
    "mil",
    "int",
    "eu",
    "io",
    "app",
    "dev",
    "xyz",
    "online",
    "site",
    "shop",
    "store",
    "web",
    "top",
    "club",
    "live",
    "link",
    "click",
    "email",
    "mobi",
    "name",
    "pro",
    "tech",
    "cloud",
    "page",
    "bzh",
    "paris",
    "alsace",
    "corsica",
    "brussels",
    "vlaanderen",
    "gent",
    "wien",
    "berlin",
    "museum",
    "travel",
    "asso",
    "gouv",
    "immo",
    "bank",
    "news",
    "blog",
];

fn check_domains(text: &str) -> Result<(), LinkRefusal> {
    for token in text.split(|c: char| c.is_whitespace() || "()[]{}<>,;\"'«»“”!?".contains(c))
    {
        let token = token.trim_matches(|c: char| !c.is_alphanumeric());
        let token = token.split(['/', ':']).next().unwrap_or(token);
        if !token.contains('.') {
            continue;
        }
        let labels: Vec<&str> = token.split('.').collect();
        let well_formed = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                    && !label.starts_with('-')
            });
        if !well_formed {
            continue;
        }
        let tld = labels.last().copied().unwrap_or_default();
        let plausible = tld.starts_with("xn--")
            || KNOWN_TLDS.contains(&tld)
            || (tld.chars().count() == 2 && tld.chars().all(|c| c.is_alphabetic()));
        if plausible {
            return Err(LinkRefusal::Domain);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), LinkRefusal> {
        LinkFreeCheck::new(Some("ne-pas-repondre@mairie.example"), &[]).check_text(text)
    }

    #[test]
    fn plain_notices_pass() {
        for text in [
            "Mairie de Saint-Denis : un document vous attend dans votre espace sécurisé.",
            "St. Gilles : un document vous attend.",
            "Mairie de Saint-Denis. Un document vous attend.",
            "Commune de St. Gilles-lez-Bruxelles. Connectez-vous avec FranceConnect.",
            "Ville de Ste. Marie",
            "Hôtel de ville : un document vous attend.",
            "Connectez-vous au portail de votre commune avec FranceConnect.",
            "Mairie de L'Haÿ-les-Roses",
            "Le 12.05 à 10 h, montant 1.234,56 €",
            "Version 2.0 du formulaire",
            "Un point important : rien à payer.",
            "<!DOCTYPE html><html lang=\"fr\"><meta charset=\"utf-8\"><p>Bonjour</p></html>",
            "Écrire à ne-pas-repondre@mairie.example ne sert à rien.",
        ] {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn schemes_are_refused() {
        for text in [
            "voir http://x",
            "voir HTTPS://x",
            "hxxp://mairie",
            "hXXps[:]//x",
            "ftp://files",
            "mailto:maire",
            "Appelez tel:+33612345678",
            "sms:+33612345678",
            "javascript:alert(1)",
            "data:text/html;base64,xx",
            "www.mairie",
            "WWW . mairie",
            "ｈｔｔｐｓ：／／x",
            "file:///etc/passwd",
            "x://y",
        ] {
            assert!(check(text).is_err(), "{text}");
        }
    }

    #[test]
    fn domains_are_refused_even_disguised() {
        for text in [
            "allez sur mairie.fr",
            "allez sur Mairie.FR",
            "service-public.gouv.fr",
            "example.com/chemin",
            "example . com",
            "example dot com",
            "example[.]com",
            "example(dot)com",
            "example。com",
            "example．com",
            "example․com",
            "example｡com",
            "ｅｘａｍｐｌｅ．ｃｏｍ",
            "exam\u{200B}ple.com",
            "portail.ville.be",
            "guichet.paris",
            "xn--mairie-9ua.fr",
            "mairie.xn--p1ai",
            "(mairie.bzh)",
            "«mairie.eu»",
            "mairie.de.",
        ] {
            assert_eq!(check(text), Err(LinkRefusal::Domain), "{text}");
        }
    }

    #[test]
    fn addresses_and_ips_are_refused() {
        for text in [
            "écrivez à maire@mairie.example",
            "maire＠mairie.example",
            "contact@x",
        ] {
            assert_eq!(check(text), Err(LinkRefusal::EmailAddress), "{text}");
        }
        for text in [
            "192.168.1.10",
            "connect 10.0.0.1:8080",
            "[::1]",
            "2001:db8::1",
            "1.2.3.4/x",
        ] {
            assert_eq!(check(text), Err(LinkRefusal::IpAddress), "{text}");
        }
    }

    #[test]
    fn remote_content_and_attachments_are_refused() {
        for text in [
            "<img alt=\"\">",
            "<IMG SRC=x>",
            "<p style=\"background: url(x)\">",
            "<a href=\"#\">x</a>",
            "<p src = x>",
            "<link rel=stylesheet>",
            "<style>@import x</style>",
        ] {
            assert_eq!(check(text), Err(LinkRefusal::RemoteContent), "{text}");
        }
        let outgoing = OutgoingTexts {
            parts: vec!["Bonjour"],
            attachments: 1,
        };
        assert_eq!(
            LinkFreeCheck::new(None, &[]).check(&outgoing),
            Err(LinkRefusal::Attachment)
        );
    }

    #[test]
    fn titles_are_refused() {
        let titles = vec![
            "Avis de taxe foncière 2026".to_owned(),
            "Document".to_owned(),
        ];
        let check = LinkFreeCheck::new(None, &titles);
        assert_eq!(
            check.check_text("Votre AVIS DE TAXE FONCIERE 2026 vous attend"),
            Err(LinkRefusal::Title)
        );
        assert_eq!(
            check.check_text("Votre avis  de taxe\nfoncière 2026"),
            Err(LinkRefusal::Title)
        );
        assert_eq!(
            check.check_text("Un document vous attend dans votre espace sécurisé."),
            Ok(())
        );
    }

    #[test]
    fn the_sender_address_is_the_only_one_allowed() {
        let check = LinkFreeCheck::new(Some("Ne-Pas-Repondre@Mairie.Example"), &[]);
        assert_eq!(
            check.check_text("De : ne-pas-repondre@mairie.example"),
            Ok(())
        );
        assert_eq!(
            check.check_text("De : autre@mairie.example"),
            Err(LinkRefusal::EmailAddress)
        );
    }
}
