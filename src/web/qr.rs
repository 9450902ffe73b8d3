//! QR codes drawn as inline SVG for pages: the TOTP enrolment and the vouchers in a
//! citizen's vault.

use qrcode::QrCode;
use qrcode::render::svg;

/// The QR code of `text` as inline SVG (no script, no style: CSP-safe), with an
/// accessible label.
pub fn qr_svg(text: &str, label: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    let start = image.find("<svg")?;
    let label = tera::escape_html(label);
    Some(image[start..].replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" class=\"qr\" "),
        1,
    ))
}
