//! The elected officials' dashboard: what went out and what was collected, never who.
//! Figures come from the database (`figures`), small counts are hidden and every other
//! count rounded by one rule (`SmallCounts`), charts are drawn on the server (`charts`),
//! and every table can be downloaded as CSV (`pages`).

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
///
/// Every other count, totals and their parts alike, is rounded to the nearest multiple
/// of `base`: otherwise a hidden count is the difference of two shown ones (everything
/// minus the other departments). Rounding leaves each shown figure `base / 2` either
/// way, so a difference of two of them no longer pins a small count down.
#[derive(Debug, Clone, Copy)]
pub struct SmallCounts {
    pub threshold: i64,
    /// 1 shows exact counts.
    pub base: i64,
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
            let rounded = self.round(count);
            Shown {
                value: Some(rounded),
                text: rounded.to_string(),
            }
        }
    }

    /// The nearest multiple of the base (halves up); a count shown is never rounded
    /// to zero, which would say "nobody".
    pub fn round(self, count: i64) -> i64 {
        let base = self.base.max(1);
        let rounded = (count + base / 2).div_euclid(base) * base;
        if count > 0 && rounded == 0 {
            base
        } else {
            rounded
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
        let rule = SmallCounts {
            threshold: 5,
            base: 1,
        };
        assert_eq!(rule.show(0).text, "0");
        for count in 1..5 {
            assert_eq!(rule.show(count).text, "< 5");
            assert_eq!(rule.show(count).value, None);
        }
        assert_eq!(rule.show(5).value, Some(5));
        assert!(rule.allows(&[0, 5, 120]));
        assert!(!rule.allows(&[120, 3]));
    }

    #[test]
    fn shown_counts_are_rounded_to_the_base() {
        let rule = SmallCounts {
            threshold: 5,
            base: 5,
        };
        let shown: Vec<String> = [0, 4, 5, 6, 7, 8, 12, 13, 122]
            .into_iter()
            .map(|count| rule.show(count).text)
            .collect();
        assert_eq!(shown, ["0", "< 5", "5", "5", "5", "10", "10", "15", "120"]);
        assert_eq!(rule.show(8).value, Some(10));
        // A base above the threshold never shows a count as zero.
        let coarse = SmallCounts {
            threshold: 3,
            base: 10,
        };
        assert_eq!(coarse.show(3).text, "10");
        assert_eq!(coarse.show(0).text, "0");
    }
}
