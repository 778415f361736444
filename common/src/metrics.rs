//! Prometheus text exposition (format 0.0.4), written by hand: a few gauges,
//! counters and histograms need no registry.

use std::fmt::Write;

/// A histogram with fixed upper bounds (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Builds one exposition. Each metric family is written once with its HELP
/// and TYPE, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A gauge family with one sample per label set.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) -> &mut Self {
        self.header(name, "gauge", help);
        for (l, v) in samples {
            let _ = writeln!(self.text, "{name}{} {}", labels(l), number(*v));
        }
        self
    }

    /// A counter family (`name` should end in `_total`).
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) -> &mut Self {
        self.header(name, "counter", help);
        for (l, v) in samples {
            let _ = writeln!(self.text, "{name}{} {}", labels(l), number(*v));
        }
        self
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        self.header(name, "histogram", help);
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            let le = number(*bound);
            let _ = writeln!(self.text, "{name}_bucket{} {count}", labels(&[("le", &le)]));
        }
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.text, "{name}_sum {}", number(h.sum));
        let _ = writeln!(self.text, "{name}_count {}", h.count);
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 2.0, 7.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let mut e = Exposition::new();
        e.histogram("x_seconds", "x", &h);
        let text = e.finish();
        for line in [
            "x_seconds_bucket{le=\"1\"} 1",
            "x_seconds_bucket{le=\"5\"} 2",
            "x_seconds_bucket{le=\"+Inf\"} 3",
            "x_seconds_sum 9.5",
            "x_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn samples_and_labels() {
        let mut e = Exposition::new();
        e.gauge("g", "a gauge", &[(&[("state", "queued")], 2.0), (&[], 1.5)])
            .counter("c_total", "a counter", &[(&[("v", "a\"b\\c\nd")], 3.0)]);
        let text = e.finish();
        assert!(text.contains("# TYPE g gauge\n"));
        assert!(text.contains("g{state=\"queued\"} 2\n"));
        assert!(text.contains("g 1.5\n"));
        assert!(
            text.contains("c_total{v=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{text}"
        );
    }
}
