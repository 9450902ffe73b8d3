//! Bar charts drawn on the server by plotters as inline SVG: no script, nothing
//! fetched, printable. Each carries a title and a description for screen readers, and
//! the page shows the same figures as a table beside it.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;
/// The DejaVu Sans the letters embed also measures the charts' labels.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// Marianne blue, as the rest of the pages.
const BAR: RGBColor = RGBColor(0, 0, 145);

static FONT_REGISTERED: Once = Once::new();

fn register_chart_font() {
    FONT_REGISTERED.call_once(|| {
        // The bytes are a valid font (the same file the letters embed).
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One bar: its label, and its value unless the small-count rule hides it.
pub struct Bar {
    pub label: String,
    pub value: Option<i64>,
}

/// A vertical bar chart as an SVG element. `id` names its title and description for
/// `aria-labelledby`; a hidden value is drawn as no bar (the table says "< N").
pub fn bar_chart(id: &str, title: &str, description: &str, bars: &[Bar]) -> Result<String, String> {
    register_chart_font();
    let max = bars
        .iter()
        .filter_map(|bar| bar.value)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let count = bars.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d((0..count).into_segmented(), 0..(max + max / 10 + 1))
            .map_err(|error| error.to_string())?;
        // At most about twelve labels, so dates stay legible.
        let step = count.div_ceil(12);
        let max_chars = label_chars(count.div_ceil(step));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("")
            .x_labels(count.min(12))
            .x_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(index) if index % step == 0 => bars
                    .get(*index)
                    .map(|bar| short_label(&bar.label, max_chars).0)
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|error| error.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BAR.filled())
                    .margin(3)
                    .data(
                        bars.iter()
                            .enumerate()
                            .filter_map(|(index, bar)| bar.value.map(|value| (index, value))),
                    ),
            )
            .map_err(|error| error.to_string())?;
        root.present().map_err(|error| error.to_string())?;
    }
    let step = bars.len().max(1).div_ceil(12);
    let max_chars = label_chars(bars.len().max(1).div_ceil(step));
    for (index, bar) in bars.iter().enumerate() {
        let (shown, cut) = short_label(&bar.label, max_chars);
        if cut && index % step == 0 {
            svg = with_full_label(&svg, &shown, &bar.label);
        }
    }
    Ok(accessible(&svg, id, title, description))
}

/// Roughly how many characters of 13-pixel text fit under each of `labels` labels.
fn label_chars(labels: usize) -> usize {
    const PLOT_WIDTH: usize = WIDTH as usize - 56 - 24;
    const CHAR_WIDTH: usize = 7;
    (PLOT_WIDTH / labels.max(1) / CHAR_WIDTH).clamp(6, 24)
}

/// A date `YYYY-MM-DD` as `DD/MM`, a month `YYYY-MM` as `MM/YYYY`; any other label
/// (a site's name, hyphens and all) as it is, cut to `max_chars` with an ellipsis.
/// Also says whether it was cut.
fn short_label(label: &str, max_chars: usize) -> (String, bool) {
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = label.split('-').collect();
    match parts.as_slice() {
        [year, month, day] if digits(year, 4) && digits(month, 2) && digits(day, 2) => {
            (format!("{day}/{month}"), false)
        }
        [year, month] if digits(year, 4) && digits(month, 2) => (format!("{month}/{year}"), false),
        _ if label.chars().count() <= max_chars => (label.to_owned(), false),
        _ => {
            let kept: String = label.chars().take(max_chars.saturating_sub(1)).collect();
            (format!("{}…", kept.trim_end()), true)
        }
    }
}

/// Text as plotters writes it into the SVG.
fn svg_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Gives a cut label its full text: a `<title>` (the tooltip, read by screen readers)
/// around the drawn `<text>`.
fn with_full_label(svg: &str, shown: &str, full: &str) -> String {
    // plotters writes the text on a line of its own.
    let text = svg_text(shown);
    let Some(end) = [format!(">\n{text}\n</text>"), format!(">{text}</text>")]
        .iter()
        .find_map(|drawn| svg.find(drawn.as_str()).map(|at| at + drawn.len()))
    else {
        return svg.to_owned();
    };
    let Some(start) = svg[..end].rfind("<text") else {
        return svg.to_owned();
    };
    format!(
        "{}<g><title>{}</title>{}</g>{}",
        &svg[..start],
        svg_text(full),
        &svg[start..end],
        &svg[end..]
    )
}

/// Adds the role, title and description, and lets the chart scale to its box.
fn accessible(svg: &str, id: &str, title: &str, description: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let svg = &svg[start..];
    let (title, description) = (tera::escape_html(title), tera::escape_html(description));
    svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" class=\"chart\" aria-labelledby=\"{id}-title {id}-desc\" \
             preserveAspectRatio=\"xMinYMin meet\" "
        ),
        1,
    )
    .replacen(
        '>',
        &format!(
            "><title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{description}</desc>"
        ),
        1,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_labelled_svg_with_its_bars() {
        let bars = vec![
            Bar {
                label: "2026-11-02".into(),
                value: Some(12),
            },
            Bar {
                label: "2026-11-03".into(),
                value: None,
            },
            Bar {
                label: "2026-11-04".into(),
                value: Some(30),
            },
        ];
        let svg = bar_chart("docs", "Documents par jour", "12, moins de 5, 30", &bars).unwrap();
        assert!(svg.starts_with("<svg role=\"img\""));
        assert!(svg.contains("<title id=\"docs-title\">Documents par jour</title>"));
        assert!(svg.contains("aria-labelledby=\"docs-title docs-desc\""));
        assert!(svg.contains("02/11") && svg.contains("04/11"));
        assert!(!svg.contains("<script") && !svg.contains("style="));
        // Two bars drawn (the hidden value is not), in the chart colour.
        assert_eq!(svg.matches("fill=\"#000091\"").count(), 2, "{svg}");
    }

    #[test]
    fn site_names_are_drawn_whole_or_cut_with_an_ellipsis_and_their_full_name() {
        let bar = |label: &str| Bar {
            label: label.into(),
            value: Some(10),
        };
        let bars = vec![
            bar("Parc-des-Sports"),
            bar("Salle des fêtes de la Mairie annexe"),
            bar("Mairie"),
            bar("2026-Nord"),
            bar("École & Co"),
        ];
        let svg = bar_chart("sites", "Retraits par lieu", "…", &bars)
            .unwrap()
            .replace(">\n", ">")
            .replace("\n</text>", "</text>");
        // A hyphenated name is not taken for a date.
        assert!(svg.contains(">Parc-des-Sports</text>"), "{svg}");
        assert!(
            !svg.contains("Sports/des") && !svg.contains("Nord/2026"),
            "{svg}"
        );
        assert!(svg.contains(">2026-Nord</text>"), "{svg}");
        assert!(svg.contains(">Mairie</text>") && svg.contains(">École &amp; Co</text>"));
        // A long name is cut with an ellipsis, its full name in a title over it.
        let cut = svg
            .split("<title>Salle des fêtes de la Mairie annexe</title>")
            .nth(1)
            .unwrap_or_else(|| panic!("no full name: {svg}"));
        let drawn = &cut[cut.find('>').unwrap() + 1..cut.find("</text>").unwrap()];
        assert!(
            drawn.starts_with("Salle des f") && drawn.ends_with('…'),
            "{drawn}"
        );
        assert!(drawn.chars().count() < "Salle des fêtes de la Mairie annexe".len());
    }

    #[test]
    fn dates_and_months_read_day_first() {
        assert_eq!(short_label("2026-11-02", 10), ("02/11".to_owned(), false));
        assert_eq!(short_label("2026-11", 10), ("11/2026".to_owned(), false));
        assert_eq!(
            short_label("Parc-des-Sports", 20),
            ("Parc-des-Sports".to_owned(), false)
        );
        assert_eq!(
            short_label("Salle des fêtes", 10),
            ("Salle des…".to_owned(), true)
        );
    }
}
