//! The elected officials' dashboard: what went out and what was collected, never who.
//! Figures come from the database (`figures`), small counts are hidden by one rule
//! (`SmallCounts`), charts are drawn on the server (`charts`), and every table can be
//! downloaded as CSV (`pages`).

pub mod charts;
pub mod delays;
pub mod figures;
pub mod pages;
pub mod refill;
pub mod rollups;

use serde::Serialize;

/// The small-count rule: a count from 1 to `threshold - 1` is shown as "< threshold",
/// and nothing derived from it is shown, so that narrowing the filters cannot single
/// anyone out. Zero is shown: it tells nothing about a person.
#[derive(Debug, Clone, Copy)]
pub struct SmallCounts {
    pub threshold: i64,
}

/// A count as the page and the CSV show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The exact value when it may be shown.
    pub value: Option<i64>,
    /// What is printed: the number, or "< 5".
    pub text: String,
}

impl SmallCounts {
    pub fn show(self, count: i64) -> Shown {
        if self.hides(count) {
            Shown {
                value: None,
                text: format!("< {}", self.threshold),
            }
        } else {
            Shown {
                value: Some(count),
                text: count.to_string(),
            }
        }
    }

    pub fn hides(self, count: i64) -> bool {
        (1..self.threshold).contains(&count)
    }

    /// A figure derived from several counts (a share, a difference, a median) is shown
    /// only if none of them is hidden.
    pub fn allows(self, counts: &[i64]) -> bool {
        counts.iter().all(|count| !self.hides(*count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_one_to_the_threshold_are_hidden() {
        let rule = SmallCounts { threshold: 5 };
        assert_eq!(rule.show(0).text, "0");
        for count in 1..5 {
            assert_eq!(rule.show(count).text, "< 5");
            assert_eq!(rule.show(count).value, None);
        }
        assert_eq!(rule.show(5).value, Some(5));
        assert!(rule.allows(&[0, 5, 120]));
        assert!(!rule.allows(&[120, 3]));
    }
}
