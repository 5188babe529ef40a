//! How wide the time partitions of the delivery log are, given the
//! retention: narrow enough that a retired partition is a small part of
//! what is kept (an attempt lives at most one width past the retention),
//! wide enough that there are few of them to plan over.

use std::time::Duration;

/// The narrowest partition.
pub const MIN_WIDTH: Duration = Duration::from_secs(10);
/// The widest partition.
pub const MAX_WIDTH: Duration = Duration::from_secs(24 * 60 * 60);

/// A quarter of the retention, between `MIN_WIDTH` and `MAX_WIDTH`.
pub fn width(retention: Duration) -> Duration {
    (retention / 4).clamp(MIN_WIDTH, MAX_WIDTH)
}

/// How far ahead partitions exist: three widths, and at least two rounds
/// of the keeper that creates them, so a keeper late by a round still
/// finds the next partition made.
pub fn ahead(retention: Duration, every: Duration) -> Duration {
    (3 * width(retention)).max(2 * every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_retention_within_bounds() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let s = Duration::from_secs;
        for (retention, want) in [
            (s(20), s(10)),
            (s(120), s(30)),
            (h(4), h(1)),
            (h(7 * 24), h(24)),
            (h(90 * 24), h(24)),
        ] {
            assert_eq!(width(retention), want, "{retention:?}");
        }
        assert_eq!(ahead(s(120), s(60)), s(120));
        assert_eq!(ahead(h(7 * 24), s(60)), h(72));
    }
}
