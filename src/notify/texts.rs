//! The words of a notice: Tera templates (`templates/notices/`) filled from the Fluent
//! locales with the tenant's name. SMS texts are fitted to one GSM-7 segment.

use std::sync::LazyLock;

use tera::{Context, Tera};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::NoticeKind;
use crate::web::page::Lang;

/// Characters in one single-part SMS written in the GSM 7-bit alphabet.
pub const SMS_MAX_CHARS: usize = 160;

const TEMPLATES: [(&str, &str); 4] = [
    (
        "email_subject.txt",
        include_str!("../../templates/notices/email_subject.txt"),
    ),
    (
        "email.txt",
        include_str!("../../templates/notices/email.txt"),
    ),
    (
        "email.html",
        include_str!("../../templates/notices/email.html"),
    ),
    ("sms.txt", include_str!("../../templates/notices/sms.txt")),
];

static NOTICES: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(TEMPLATES)
        .map_err(|error| format!("{error:?}"))?;
    tera.autoescape_on(vec![".html"]);
    crate::web::page::register_fluent(&mut tera);
    Ok(tera)
});

/// A template failed (a bug, caught by the tests and at start).
#[derive(Debug, thiserror::Error)]
#[error("notice template: {0}")]
pub struct TextError(String);

/// Fails at start if a notice template does not parse.
pub fn check_templates() -> Result<(), String> {
    NOTICES.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The three parts of an email notice.
#[derive(Debug, Clone)]
pub struct EmailTexts {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn render(template: &str, context: &Context) -> Result<String, TextError> {
    let tera = NOTICES.as_ref().map_err(|error| TextError(error.clone()))?;
    tera.render(template, context)
        .map_err(|error| TextError(format!("{error:?}")))
}

fn context(kind: NoticeKind, tenant: &str, lang: Lang) -> Context {
    let mut context = Context::new();
    context.insert("kind", kind.as_str());
    context.insert("tenant", tenant);
    context.insert("lang", lang.code());
    context
}

/// Subject, plain text and HTML of an email notice.
pub fn email_texts(kind: NoticeKind, tenant: &str, lang: Lang) -> Result<EmailTexts, TextError> {
    let mut context = context(kind, tenant, lang);
    let subject = render("email_subject.txt", &context)?
        .trim()
        .replace(['\r', '\n'], " ");
    context.insert("subject", &subject);
    Ok(EmailTexts {
        text: render("email.txt", &context)?.trim().to_owned() + "\n",
        html: render("email.html", &context)?,
        subject,
    })
}

/// The SMS notice, in the GSM 7-bit basic alphabet and at most 160 characters: a
/// tenant name too long for the budget is shortened.
pub fn sms_text(kind: NoticeKind, tenant: &str, lang: Lang) -> Result<String, TextError> {
    let tenant = to_gsm7(tenant.trim());
    let full = to_gsm7(render("sms.txt", &context(kind, &tenant, lang))?.trim());
    let length = full.chars().count();
    if length <= SMS_MAX_CHARS {
        return Ok(full);
    }
    let keep = tenant
        .chars()
        .count()
        .saturating_sub(length - SMS_MAX_CHARS + 1);
    let short: String = tenant.chars().take(keep).collect();
    let short = format!("{}.", short.trim_end_matches([' ', '-', '\'', '.']));
    let text = to_gsm7(render("sms.txt", &context(kind, &short, lang))?.trim());
    Ok(text.chars().take(SMS_MAX_CHARS).collect())
}

/// Whether `c` is one character of the GSM 03.38 basic set (extension characters such
/// as `€` take two and are left out on purpose).
pub fn is_gsm7_basic(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || " !\"#%&'()*+,-./:;<=>?@_\n\r".contains(c)
        || "£$¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà".contains(c)
}

/// Rewrites text into the GSM basic set: accents the set lacks are dropped (`ê` → `e`),
/// typographic marks become their plain forms, anything else becomes a space.
pub fn to_gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_gsm7_basic(c) {
            out.push(c);
            continue;
        }
        match c {
            '’' | '‘' | '`' | 'ʼ' => out.push('\''),
            '«' | '»' | '“' | '”' => out.push('"'),
            '–' | '—' | '‐' | '‑' => out.push('-'),
            'œ' => out.push_str("oe"),
            'Œ' => out.push_str("OE"),
            'ç' => out.push('c'),
            '…' => out.push_str("..."),
            _ => {
                let base: String = c.nfd().filter(|c| !is_combining_mark(*c)).collect();
                if !base.is_empty() && base.chars().all(is_gsm7_basic) {
                    out.push_str(&base);
                } else {
                    out.push(' ');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_TENANT: &str = "Communauté d'agglomération Plaine Commune – Île-de-France, \
                               Établissement public territorial";

    #[test]
    fn french_sms_fits_one_gsm7_segment() {
        for kind in [NoticeKind::Document, NoticeKind::Reminder] {
            for tenant in ["Mairie de Saint-Denis.", "St. Gilles", "Œuvre", LONG_TENANT] {
                let text = sms_text(kind, tenant, Lang::Fr).unwrap();
                assert!(text.chars().count() <= SMS_MAX_CHARS, "{text}");
                assert!(text.chars().all(is_gsm7_basic), "{text}");
                assert!(text.contains("FranceConnect"), "{text}");
            }
        }
        let text = sms_text(NoticeKind::Document, "Mairie de Saint-Denis", Lang::Fr).unwrap();
        assert!(
            text.starts_with("Mairie de Saint-Denis : un document"),
            "{text}"
        );
        let long = sms_text(NoticeKind::Document, LONG_TENANT, Lang::Fr).unwrap();
        assert!(long.starts_with("Communauté d'agglom"), "{long}");
    }

    #[test]
    fn email_texts_name_the_tenant_and_pass_the_link_free_check() {
        for lang in [Lang::Fr, Lang::En] {
            for kind in [NoticeKind::Document, NoticeKind::Reminder] {
                let texts = email_texts(kind, "Mairie d'Arles & <Camargue>", lang).unwrap();
                assert!(texts.subject.contains("Mairie d'Arles"), "{texts:?}");
                assert!(
                    texts.text.contains("Mairie d'Arles & <Camargue>"),
                    "{texts:?}"
                );
                assert!(texts.html.contains("&amp; &lt;Camargue&gt;"), "{texts:?}");
                let check = super::super::link_free::LinkFreeCheck::new(None, &[]);
                for part in [&texts.subject, &texts.text, &texts.html] {
                    assert_eq!(check.check_text(part), Ok(()), "{part}");
                }
                let sms = sms_text(kind, "Mairie d'Arles", lang).unwrap();
                assert_eq!(check.check_text(&sms), Ok(()), "{sms}");
            }
        }
    }

    #[test]
    fn gsm7_rewrites_what_the_alphabet_lacks() {
        assert_eq!(to_gsm7("Île-de-France"), "Ile-de-France");
        assert_eq!(to_gsm7("L’Haÿ-les-Roses"), "L'Hay-les-Roses");
        assert_eq!(to_gsm7("été à Noël"), "été à Noel");
    }
}
