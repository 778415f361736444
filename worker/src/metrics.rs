//! The worker's `/metrics` (Prometheus text), built without IO.

use transcode_common::metrics::Exposition;

use crate::jobs::JobMetrics;
use crate::probe::{Outcome, ProbeReport};

pub fn render(jobs: &JobMetrics, max_jobs: u32, probe: &ProbeReport) -> String {
    let fps_ids: Vec<String> = jobs.fps.iter().map(|(id, _)| id.to_string()).collect();
    let fps_labels: Vec<[(&str, &str); 1]> =
        fps_ids.iter().map(|id| [("job_id", id.as_str())]).collect();
    let fps: Vec<(&[(&str, &str)], f64)> = fps_labels
        .iter()
        .zip(&jobs.fps)
        .map(|(l, (_, v))| (&l[..], *v))
        .collect();
    let result_labels: Vec<[(&str, &str); 1]> =
        jobs.results.iter().map(|(r, _)| [("result", *r)]).collect();
    let results: Vec<(&[(&str, &str)], f64)> = result_labels
        .iter()
        .zip(&jobs.results)
        .map(|(l, (_, n))| (&l[..], *n as f64))
        .collect();
    let probe_labels: Vec<[(&str, &str); 2]> = probe
        .results
        .iter()
        .map(|r| [("encoder", r.encoder), ("family", r.family.name())])
        .collect();
    let encoders: Vec<(&[(&str, &str)], f64)> = probe_labels
        .iter()
        .zip(&probe.results)
        .map(|(l, r)| {
            (
                &l[..],
                if r.outcome == Outcome::Works {
                    1.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    let mut e = Exposition::new();
    e.gauge(
        "transcode_worker_active_jobs",
        "Jobs this worker runs now.",
        &[(&[], jobs.active as f64)],
    )
    .gauge(
        "transcode_worker_max_jobs",
        "Jobs this worker runs at once at most (transcode.max_jobs).",
        &[(&[], max_jobs as f64)],
    )
    .gauge(
        "transcode_worker_encode_fps",
        "Frames per second FFmpeg encodes now, per running job.",
        &fps,
    )
    .counter(
        "transcode_worker_jobs_total",
        "Assignments since the worker started, by how they ended.",
        &results,
    )
    .gauge(
        "transcode_worker_encoder_works",
        "1 when the encoder passed the one-frame test encode at start, else 0.",
        &encoders,
    )
    .gauge(
        "transcode_worker_probe_duration_seconds",
        "How long the hardware probe took.",
        &[(&[], probe.elapsed.as_secs_f64())],
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Family, ProbeResult};
    use std::time::Duration;
    use uuid::Uuid;

    #[test]
    fn every_family_is_there() {
        let id = Uuid::nil();
        let jobs = JobMetrics {
            active: 1,
            fps: vec![(id, 48.5)],
            results: vec![
                ("completed", 3),
                ("failed", 1),
                ("cancelled", 0),
                ("refused", 2),
            ],
        };
        let probe = ProbeReport {
            results: vec![
                ProbeResult {
                    encoder: "h264_nvenc",
                    family: Family::Nvenc,
                    outcome: Outcome::Failed("no".into()),
                    elapsed: Duration::ZERO,
                },
                ProbeResult {
                    encoder: "libx264",
                    family: Family::Software,
                    outcome: Outcome::Works,
                    elapsed: Duration::ZERO,
                },
            ],
            ffmpeg_error: None,
            elapsed: Duration::from_millis(250),
        };
        let text = render(&jobs, 2, &probe);
        for line in [
            "transcode_worker_active_jobs 1",
            "transcode_worker_max_jobs 2",
            "transcode_worker_encode_fps{job_id=\"00000000-0000-0000-0000-000000000000\"} 48.5",
            "transcode_worker_jobs_total{result=\"completed\"} 3",
            "transcode_worker_jobs_total{result=\"refused\"} 2",
            "transcode_worker_encoder_works{encoder=\"h264_nvenc\",family=\"nvenc\"} 0",
            "transcode_worker_encoder_works{encoder=\"libx264\",family=\"software\"} 1",
            "transcode_worker_probe_duration_seconds 0.25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
