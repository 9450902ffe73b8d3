//! What every CSV file the portal writes does to its cells so that a spreadsheet
//! opening it never runs one as a formula (CSV injection): the mail-merge file for the
//! postal operator and the dashboard's tables alike.

use std::borrow::Cow;

/// A spreadsheet runs a cell that starts with one of these as a formula (or, for tab
/// and carriage return, hides what follows them in front of one).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The cell as text a spreadsheet shows and never evaluates: a leading apostrophe
/// makes it text.
pub fn neutralise_formula(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_that_would_run_is_made_text() {
        for cell in ["=1+1", "+33 1 23", "-2", "@SUM(A1)", "\tTab", "\rReturn"] {
            assert_eq!(neutralise_formula(cell), format!("'{cell}"));
        }
        for cell in ["Mairie", "a = b", "12", "", "< 5", "'quoted"] {
            assert_eq!(neutralise_formula(cell), cell);
        }
    }
}
