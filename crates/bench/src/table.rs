//! The printed table, and the arithmetic its figures share: medians of
//! rounds taking turns, percentiles of latencies.

/// One line of the table.
pub struct Row {
    pub name: String,
    pub value: String,
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, value: impl Into<String>, note: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            value: value.into(),
            note: note.into(),
        }
    }
}

pub fn print(rows: &[Row]) {
    println!();
    println!("| measure | result | notes |");
    println!("| --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.name, r.value, r.note);
    }
}

/// The middle value (the upper one of an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `p` quantile (0 to 1) of values sorted ascending, by rank
/// `floor(len * p)` (so p99 of 100 values or fewer is the largest); NaN
/// for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// p50, p99 and max of unsorted values.
pub fn summary(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(values, 0.50),
        percentile(values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

/// A count with its thousands grouped, as the rows' names write them:
/// 1000 is "1,000".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1), "1");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_000), "-1,000");
    }

    #[test]
    fn median_takes_the_middle_whatever_the_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentile_by_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 51.0);
        assert_eq!(percentile(&v, 0.99), 100.0);
        assert_eq!(percentile(&v[..10], 0.99), 10.0);
        assert_eq!(percentile(&v[..1], 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_sorts_first() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(summary(&mut v), (3.0, 5.0, 5.0));
    }
}
