//! Reads a histogram out of the service's `/metrics` (Prometheus text).
//!
//! The harness sees a producer's whole wait; the service's own histogram of
//! ingest commits says how much of it was the store (waiting for the writer
//! included). Buckets bound a percentile from above only, so the report says
//! "at most".

use serde_json::{Value, json};

/// One histogram: cumulative counts per upper bound (seconds), in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

/// The histogram `name` in `text`, if the service exports it.
pub fn histogram(text: &str, name: &str) -> Option<Histogram> {
    let bucket_prefix = format!("{name}_bucket{{le=\"");
    let mut buckets = Vec::new();
    let mut count = None;
    let mut sum_secs = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&bucket_prefix) {
            let (bound, value) = rest.split_once("\"} ")?;
            if bound != "+Inf" {
                buckets.push((bound.parse().ok()?, value.trim().parse().ok()?));
            }
        } else if let Some(v) = line.strip_prefix(&format!("{name}_count ")) {
            count = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix(&format!("{name}_sum ")) {
            sum_secs = v.trim().parse().ok();
        }
    }
    Some(Histogram {
        buckets,
        count: count?,
        sum_secs: sum_secs?,
    })
}

impl Histogram {
    /// The smallest bucket bound (seconds) that holds the `q` quantile;
    /// `None` when it lies past the largest bound or nothing was observed.
    pub fn bound_of(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= rank)
            .map(|(bound, _)| *bound)
    }

    /// Count, mean and the bucket bounds of p50 and p99, in milliseconds.
    pub fn to_json_ms(&self) -> Value {
        let ms = |secs: Option<f64>| secs.map(|s| (s * 1e5).round() / 100.0);
        let mean = (self.count > 0).then(|| self.sum_secs / self.count as f64);
        json!({
            "count": self.count,
            "mean": ms(mean),
            "p50_at_most": ms(self.bound_of(0.50)),
            "p99_at_most": ms(self.bound_of(0.99)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP x_seconds Something.
# TYPE x_seconds histogram
x_seconds_bucket{le=\"0.0005\"} 50
x_seconds_bucket{le=\"0.001\"} 98
x_seconds_bucket{le=\"0.01\"} 99
x_seconds_bucket{le=\"+Inf\"} 100
x_seconds_sum 0.25
x_seconds_count 100
other_total 3
";

    #[test]
    fn reads_buckets_count_and_sum() {
        let h = histogram(TEXT, "x_seconds").unwrap();
        assert_eq!(h.buckets, vec![(0.0005, 50), (0.001, 98), (0.01, 99)]);
        assert_eq!(h.count, 100);
        assert_eq!(h.sum_secs, 0.25);
        assert_eq!(histogram(TEXT, "y_seconds"), None);
    }

    #[test]
    fn bounds_quantiles_from_above() {
        let h = histogram(TEXT, "x_seconds").unwrap();
        assert_eq!(h.bound_of(0.50), Some(0.0005));
        assert_eq!(h.bound_of(0.51), Some(0.001));
        assert_eq!(h.bound_of(0.99), Some(0.01));
        // Past the largest bound: unknown, not the largest bound.
        assert_eq!(h.bound_of(1.0), None);
        let json = h.to_json_ms();
        assert_eq!(json["mean"], 2.5);
        assert_eq!(json["p50_at_most"], 0.5);
        assert_eq!(json["p99_at_most"], 10.0);
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        let h = Histogram {
            buckets: vec![(0.001, 0)],
            count: 0,
            sum_secs: 0.0,
        };
        assert_eq!(h.bound_of(0.5), None);
        assert_eq!(h.to_json_ms()["mean"], Value::Null);
    }
}
