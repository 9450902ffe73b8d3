//! Reads a PDF of voucher letters back as a distributor's scanner and a screen reader
//! would: each page rendered by pdfium, its QR codes decoded by zxing-cpp and its text
//! extracted (`tests/tools/decode_letters.py`). Needs `python3` with `pypdfium2` and
//! `zxing-cpp`; with `TEST_PDF_DECODE=1` their absence fails the test instead of
//! skipping it.

use std::path::Path;
use std::process::Command;

const DECODER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/decode_letters.py");

/// Whether the decoder can run; says so when a test is skipped for want of it.
pub fn decoder_available() -> bool {
    let required = std::env::var("TEST_PDF_DECODE").is_ok_and(|value| value == "1");
    let present = Command::new("python3")
        .args(["-c", "import pypdfium2, zxingcpp"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !present {
        assert!(
            !required,
            "TEST_PDF_DECODE=1 but python3 cannot import pypdfium2 and zxingcpp \
             (python3 -m pip install 'pypdfium2>=5,<6' 'zxing-cpp>=3,<4')"
        );
        println!(
            "skipped: python3 lacks pypdfium2 or zxing-cpp; set TEST_PDF_DECODE=1 to require them"
        );
    }
    present
}

/// What one page holds.
#[derive(serde::Deserialize)]
pub struct DecodedPage {
    pub codes: Vec<String>,
    pub text: String,
}

/// Every page of the PDF at `path`, rendered at 150 dpi.
pub fn decode_pdf(path: &Path) -> Vec<DecodedPage> {
    let output = Command::new("python3")
        .arg(DECODER)
        .arg(path)
        .args(["--dpi", "150"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
