//! Delays before a document is first opened, counted in bands rather than kept one by
//! one: the dashboard's rollups hold how many documents fell in each band, and the
//! median is estimated from those counts. Bands are narrow where delays are common and
//! the reader wants precision (5 minutes within the first hour) and wide where a few
//! hours more or less tell nothing (a month beyond three months).

/// A run of bands of equal width: the first starts at `from` seconds.
struct Segment {
    from: i64,
    width: i64,
    bands: i64,
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The bands, end to end from zero; after the last one comes one open-ended band.
const SEGMENTS: [Segment; 7] = [
    Segment {
        from: 0,
        width: 5 * MINUTE,
        bands: 12,
    },
    Segment {
        from: HOUR,
        width: 15 * MINUTE,
        bands: 12,
    },
    Segment {
        from: 4 * HOUR,
        width: HOUR,
        bands: 20,
    },
    Segment {
        from: DAY,
        width: 6 * HOUR,
        bands: 24,
    },
    Segment {
        from: 7 * DAY,
        width: DAY,
        bands: 23,
    },
    Segment {
        from: 30 * DAY,
        width: 10 * DAY,
        bands: 6,
    },
    Segment {
        from: 90 * DAY,
        width: 30 * DAY,
        bands: 10,
    },
];

/// Where the open-ended band starts (390 days).
const LAST_FROM: i64 = 90 * DAY + 10 * 30 * DAY;

/// The band of a delay in seconds; a negative delay (clocks disagreeing) counts as none.
pub fn band_of(seconds: i64) -> i32 {
    let seconds = seconds.max(0);
    let mut band = 0;
    for segment in &SEGMENTS {
        let end = segment.from + segment.width * segment.bands;
        if seconds < end {
            return (band + (seconds - segment.from) / segment.width) as i32;
        }
        band += segment.bands;
    }
    band as i32
}

/// Where a band starts and how wide it is, in seconds (`None` for the open-ended band).
fn bounds_of(band: i32) -> (i64, Option<i64>) {
    let mut first = 0;
    for segment in &SEGMENTS {
        let index = i64::from(band) - first;
        if index < segment.bands {
            return (segment.from + index * segment.width, Some(segment.width));
        }
        first += segment.bands;
    }
    (LAST_FROM, None)
}

/// The median delay estimated from counts per band (`(band, count)`, any order): the
/// band holding the middle document is found, and the documents in it are taken as
/// spread evenly across it. Within the open-ended band, its start is all that is known.
pub fn median_seconds(counts: &[(i32, i64)]) -> Option<f64> {
    let mut counts: Vec<(i32, i64)> = counts.iter().copied().filter(|(_, n)| *n > 0).collect();
    counts.sort_unstable();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let middle = total as f64 / 2.0;
    let mut before = 0;
    for (band, count) in counts {
        if (before + count) as f64 >= middle {
            let (from, width) = bounds_of(band);
            let Some(width) = width else {
                return Some(from as f64);
            };
            let into = (middle - before as f64) / count as f64;
            return Some(from as f64 + into * width as f64);
        }
        before += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_each_other_without_gaps() {
        let mut expected_from = 0;
        for band in 0..=band_of(LAST_FROM) {
            let (from, width) = bounds_of(band);
            assert_eq!(from, expected_from, "band {band}");
            assert_eq!(band_of(from), band);
            match width {
                Some(width) => {
                    assert_eq!(band_of(from + width - 1), band);
                    expected_from = from + width;
                }
                None => assert_eq!(band_of(from + 1000 * DAY), band),
            }
        }
        assert_eq!(band_of(-5), 0);
    }

    #[test]
    fn the_median_lies_in_the_middle_documents_band() {
        // Opened after 1, 2, 3, 4 and 10 hours: the third is in 3 h – 3 h 15, and half a
        // document's worth of that band lies below the middle.
        let counts: Vec<(i32, i64)> = [1, 2, 3, 4, 10]
            .iter()
            .map(|hours| (band_of(hours * HOUR), 1))
            .collect();
        assert_eq!(median_seconds(&counts), Some(3.0 * 3600.0 + 450.0));
        // Every document in one 5-minute band: its middle.
        assert_eq!(
            median_seconds(&[(band_of(10 * MINUTE), 40)]),
            Some(12.5 * 60.0)
        );
        assert_eq!(median_seconds(&[]), None);
        assert_eq!(median_seconds(&[(3, 0)]), None);
        assert_eq!(
            median_seconds(&[(band_of(2000 * DAY), 3)]),
            Some(LAST_FROM as f64)
        );
    }
}
