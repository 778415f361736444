//! The worker's `/metrics` (Prometheus text), built without IO.

use transcode_common::metrics::{self as m, Registry};

use crate::jobs::JobMetrics;
use crate::probe::{Outcome, ProbeReport};

pub fn render(jobs: &JobMetrics, max_jobs: u32, probe: &ProbeReport) -> String {
    let mut r = Registry::default();
    m::gauge(
        &mut r,
        "transcode_worker_active_jobs",
        "Jobs this worker runs now.",
        jobs.active as u64,
    );
    m::gauge(
        &mut r,
        "transcode_worker_max_jobs",
        "Jobs this worker runs at once at most (transcode.max_jobs).",
        max_jobs,
    );
    m::gauge(
        &mut r,
        "transcode_worker_encode_fps",
        "Frames per second FFmpeg encodes now, all running jobs together.",
        jobs.encode_fps,
    );
    let results: Vec<([m::Label; 1], u64)> = jobs
        .results
        .iter()
        .map(|(result, n)| ([("result", *result)], *n))
        .collect();
    m::counters(
        &mut r,
        "transcode_worker_jobs_total",
        "Assignments since the worker started, by how they ended.",
        &results,
    );
    let encoders: Vec<([m::Label; 2], i64)> = probe
        .results
        .iter()
        .map(|p| {
            let works = i64::from(p.outcome == Outcome::Works);
            ([("encoder", p.encoder), ("family", p.family.name())], works)
        })
        .collect();
    m::counts(
        &mut r,
        "transcode_worker_encoder_works",
        "1 when the encoder passed the one-frame test encode at start, else 0.",
        &encoders,
    );
    m::gauge(
        &mut r,
        "transcode_worker_probe_duration_seconds",
        "How long the hardware probe took.",
        probe.elapsed.as_secs_f64(),
    );
    m::text(&r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Family, ProbeResult};
    use std::time::Duration;

    #[test]
    fn every_family_is_there() {
        let jobs = JobMetrics {
            active: 1,
            encode_fps: 48.5,
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
            "transcode_worker_encode_fps 48.5",
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
