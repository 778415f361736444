//! The orchestrator's `/metrics`: what the core counts since the process
//! started (in [`Metrics`]) and the counts of the moment (jobs by state,
//! workers), in Prometheus text through `prometheus-client`.

use transcode_common::metrics::{self as m, Histogram, Registry};

use super::*;

/// What `/metrics` counts since this process started.
pub(super) struct Metrics {
    /// Seconds from entering the queue to being assigned.
    pub(super) dispatch_latency: Histogram,
    /// Seconds from the first `processing` to `completed`.
    job_duration: Histogram,
    pub(super) submitted: u64,
    pub(super) requeues: u64,
    finished: HashMap<JobState, u64>,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const DURATION_BOUNDS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// The states a job ends in.
const FINAL: [JobState; 3] = [JobState::Completed, JobState::Failed, JobState::Cancelled];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            dispatch_latency: m::histogram(LATENCY_BOUNDS),
            job_duration: m::histogram(DURATION_BOUNDS),
            submitted: 0,
            requeues: 0,
            finished: HashMap::new(),
        }
    }
}

impl Core {
    /// Counts a job that just reached a final state.
    pub(super) fn count_final(&mut self, job: &Job) {
        *self.metrics.finished.entry(job.state).or_default() += 1;
        if job.state == JobState::Completed {
            if let (Some(start), Some(end)) = (job.started_at, job.finished_at) {
                self.metrics
                    .job_duration
                    .observe(end.saturating_sub(start) as f64 / 1000.0);
            }
        }
    }

    /// The core's Prometheus text (what [`Core::register_metrics`] adds).
    pub fn metrics_text(&self) -> String {
        let mut r = Registry::default();
        self.register_metrics(&mut r);
        m::text(&r)
    }

    /// The core's figures, for `GET /metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let r = registry;
        m::gauge(
            r,
            "transcode_workers_online",
            "Workers online now.",
            self.online_count() as u64,
        );
        m::gauge(
            r,
            "transcode_workers_known",
            "Workers known, online or not.",
            self.registry.snapshot().len() as u64,
        );
        let jobs: Vec<([m::Label; 1], i64)> = self
            .job_counts()
            .into_iter()
            .map(|(s, n)| ([("state", s.as_str())], n as i64))
            .collect();
        m::counts(r, "transcode_jobs", "Jobs in the store, by state.", &jobs);
        m::counter(
            r,
            "transcode_jobs_submitted_total",
            "Jobs accepted since the orchestrator started.",
            self.metrics.submitted,
        );
        let finished: Vec<([m::Label; 1], u64)> = FINAL
            .iter()
            .map(|s| {
                let n = self.metrics.finished.get(s).copied().unwrap_or(0);
                ([("state", s.as_str())], n)
            })
            .collect();
        m::counters(
            r,
            "transcode_jobs_finished_total",
            "Jobs that reached a final state since the orchestrator started.",
            &finished,
        );
        m::counter(
            r,
            "transcode_job_requeues_total",
            "Runs sent back to the queue (worker lost, refused, stalled or failed).",
            self.metrics.requeues,
        );
        m::observed(
            r,
            "transcode_dispatch_latency_seconds",
            "Time from entering the queue to being assigned to a worker.",
            &self.metrics.dispatch_latency,
        );
        m::observed(
            r,
            "transcode_job_duration_seconds",
            "Time from the first processing status to completed.",
            &self.metrics.job_duration,
        );
    }
}
