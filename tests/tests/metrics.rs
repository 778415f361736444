//! `/metrics` on the orchestrator and the worker: Prometheus text that a
//! real parser reads, with counters that move when jobs run.

use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use transcode_tests::{make_media, wait_until, System};

fn scrape(url: &str) -> Scrape {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.body_mut().read_to_string().expect("body");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// The value of a gauge/counter sample with these labels, or the count of
/// a histogram.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Sample::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_parse_and_move_when_jobs_run() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/clip.mkv"), 640, 360, 4, true);
    let _o = sys.start_orchestrator();
    let _w = sys.start_worker("m1", &[]);
    sys.wait_online("m1", true, Duration::from_secs(30));
    let worker_port = sys.worker("m1").expect("listed")["heartbeat"]["port"]
        .as_u64()
        .expect("port");
    let orchestrator = sys.api("/metrics");
    let worker = format!("http://127.0.0.1:{worker_port}/metrics");

    let before = scrape(&orchestrator);
    assert_eq!(value(&before, "transcode_workers_online", &[]), Some(1.0));
    assert_eq!(
        value(&before, "transcode_jobs_submitted_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&before, "transcode_jobs", &[("state", "completed")]),
        Some(0.0)
    );
    let w = scrape(&worker);
    assert_eq!(value(&w, "transcode_worker_active_jobs", &[]), Some(0.0));
    assert_eq!(
        value(
            &w,
            "transcode_worker_encoder_works",
            &[("encoder", "libx264")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &w,
            "transcode_worker_encoder_works",
            &[("encoder", "h264_nvenc")]
        ),
        Some(0.0)
    );
    assert!(value(&w, "transcode_worker_probe_duration_seconds", &[]).is_some_and(|s| s > 0.0));

    let id = sys.submit(
        &serde_json::json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "500k"}),
    );
    sys.wait_job(&id, "completed", Duration::from_secs(120));

    let after = scrape(&orchestrator);
    assert_eq!(
        value(&after, "transcode_jobs_submitted_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "transcode_jobs_finished_total",
            &[("state", "completed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "transcode_jobs", &[("state", "completed")]),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "transcode_job_requeues_total", &[]),
        Some(0.0)
    );
    assert!(after
        .samples
        .iter()
        .any(|x| x.metric == "transcode_dispatch_latency_seconds"));
    assert!(after
        .samples
        .iter()
        .any(|x| x.metric == "transcode_job_duration_seconds"));
    wait_until(Duration::from_secs(5), "the worker's counter", || {
        (value(
            &scrape(&worker),
            "transcode_worker_jobs_total",
            &[("result", "completed")],
        ) == Some(1.0))
        .then_some(())
    });
}
