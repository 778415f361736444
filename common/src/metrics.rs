//! `/metrics` in Prometheus text (format 0.0.4), through `prometheus-client`.
//!
//! Each endpoint fills a [`Registry`] when it is scraped: gauges and
//! counters with the values of that moment, and the [`Histogram`]s it keeps.
//! Labels come from small fixed sets (a job state, an answer, an encoder),
//! never from a job id: a series per job would grow for as long as the
//! process runs.

use prometheus_client::encoding::{prometheus_text, EncodeGaugeValue};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// One label of a series: (name, value).
pub type Label = (&'static str, &'static str);

/// A gauge that reads a value of the moment: an `f64`, or a whole number
/// (`u64`, `i64`, ...), written without a decimal point.
pub fn gauge<N>(registry: &mut Registry, name: &str, help: &str, value: N)
where
    N: EncodeGaugeValue + Send + Sync + std::fmt::Debug + 'static,
{
    registry.register(name, sentence(help), ConstGauge::new(value));
}

/// A counter (`name` with or without its `_total`, which the text adds).
pub fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(bare(name), sentence(help), ConstCounter::new(value));
}

/// One gauge per label set, of whole numbers.
pub fn counts<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: &[([Label; N], i64)],
) {
    let family = Family::<[Label; N], Gauge>::default();
    for (labels, value) in series {
        family.get_or_create(labels).set(*value);
    }
    registry.register(name, sentence(help), family);
}

/// One counter per label set.
pub fn counters<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: &[([Label; N], u64)],
) {
    let family = Family::<[Label; N], Counter>::default();
    for (labels, value) in series {
        family.get_or_create(labels).inc_by(*value);
    }
    registry.register(bare(name), sentence(help), family);
}

/// A histogram with fixed upper bounds.
pub fn histogram(bounds: &[f64]) -> Histogram {
    Histogram::new(bounds.iter().copied())
}

/// Registers a histogram the caller keeps observing into.
pub fn observed(registry: &mut Registry, name: &str, help: &str, histogram: &Histogram) {
    registry.register(name, sentence(help), histogram.clone());
}

/// The registry's text.
pub fn text(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_text::encode(&mut out, registry) {
        // Writing to a String does not fail; a metric that cannot be
        // written leaves the rest as it is.
        tracing::warn!("metrics text incomplete: {e}");
    }
    out
}

/// The help text without its full stop: the text writer adds one.
fn sentence(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

fn bare(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = histogram(&[0.1, 1.0]);
        let mut r = Registry::default();
        observed(&mut r, "t_seconds", "Latency.", &h);
        for v in [0.05, 0.5, 0.5, 3.0] {
            h.observe(v);
        }
        // Observed after registering: the registry reads the same histogram.
        let t = text(&r);
        for line in [
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{le=\"0.1\"} 1",
            "t_seconds_bucket{le=\"1\"} 3",
            "t_seconds_bucket{le=\"+Inf\"} 4",
            "t_seconds_count 4",
            "# HELP t_seconds Latency.",
            "t_seconds_sum 4.05",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in:\n{t}");
        }
    }

    #[test]
    fn samples_and_labels() {
        let mut r = Registry::default();
        gauge(&mut r, "g", "A gauge.", 2.5);
        gauge(&mut r, "n", "A whole number.", 3u64);
        counts(&mut r, "by", "Whole, by state.", &[([("state", "x")], 2)]);
        counter(&mut r, "c_total", "A counter.", 7);
        counts(&mut r, "s", "By state.", &[([("state", "a\"b")], 1)]);
        counters(&mut r, "k", "By answer.", &[([("answer", "ok")], 3)]);
        let t = text(&r);
        // (label, expected line) rows
        let cases = [
            ("plain gauge", "g 2.5"),
            ("whole gauge", "n 3"),
            ("whole labelled gauge", "by{state=\"x\"} 2"),
            ("counter keeps one _total", "c_total 7"),
            ("escaped label", "s{state=\"a\\\"b\"} 1"),
            ("labelled counter", "k_total{answer=\"ok\"} 3"),
            ("counter type", "# TYPE c_total counter"),
            ("help", "# HELP g A gauge."),
        ];
        for (what, line) in cases {
            assert!(
                t.lines().any(|l| l == line),
                "{what}: {line} missing in:\n{t}"
            );
        }
        assert!(!t.contains("# EOF"), "Prometheus text has no EOF marker");
    }
}
