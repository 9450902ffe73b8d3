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
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("")
            .x_labels(count.min(12))
            .x_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(index) if index % step == 0 => bars
                    .get(*index)
                    .map(|bar| short_label(&bar.label))
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
    Ok(accessible(&svg, id, title, description))
}

/// A date `YYYY-MM-DD` as `DD/MM`, a month `YYYY-MM` as `MM/YYYY`; other labels as
/// they are, cut to 14 characters.
fn short_label(label: &str) -> String {
    let parts: Vec<&str> = label.split('-').collect();
    match parts.as_slice() {
        [year, month, day] if year.len() == 4 => format!("{day}/{month}"),
        [year, month] if year.len() == 4 && month.len() == 2 => format!("{month}/{year}"),
        _ => label.chars().take(14).collect(),
    }
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
}
