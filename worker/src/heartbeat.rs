//! What the worker says about itself, built from its parts without any IO.

use transcode_common::wire::{FinishedRun, Heartbeat, Os, WorkerStatus, MAX_FINISHED_RUNS};
use uuid::Uuid;

use crate::stats::Sample;

/// What does not change while the worker runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub worker_id: String,
    /// Host put in stream URLs.
    pub advertise_host: String,
    pub port: u16,
    pub hostname: String,
    pub cpu_cores: u32,
    pub max_jobs: u32,
    pub weight: f64,
    pub interval_s: u64,
    pub hw_accel: Vec<String>,
    pub encoders: Vec<String>,
}

/// How long a heartbeat recalls a run that ended.
pub const RECALL_FINISHED_MS: u64 = 10 * 60 * 1000;

/// What the worker is doing now; every change is published at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub active_jobs: Vec<Uuid>,
    pub draining: bool,
    /// Runs that ended lately, with when (unix ms), newest last.
    pub finished: Vec<(FinishedRun, u64)>,
}

impl Activity {
    /// A run ended with its final status.
    pub fn finished(&mut self, run: FinishedRun, at_ms: u64) {
        self.finished
            .retain(|(r, _)| (r.job_id, r.attempt) != (run.job_id, run.attempt));
        self.finished.push((run, at_ms));
        let excess = self.finished.len().saturating_sub(MAX_FINISHED_RUNS);
        self.finished.drain(..excess);
    }

    pub fn status(&self) -> WorkerStatus {
        if self.draining {
            WorkerStatus::Draining
        } else if self.active_jobs.is_empty() {
            WorkerStatus::Idle
        } else {
            WorkerStatus::Working
        }
    }
}

pub fn build(identity: &Identity, activity: &Activity, sample: &Sample, now_ms: u64) -> Heartbeat {
    Heartbeat {
        worker_id: identity.worker_id.clone(),
        ip_address: identity.advertise_host.clone(),
        port: identity.port,
        os: Os::current(),
        hw_accel: identity.hw_accel.clone(),
        status: activity.status(),
        cpu_usage: sample.cpu_usage,
        hostname: Some(identity.hostname.clone()),
        version: Some(transcode_common::VERSION.to_string()),
        cpu_cores: Some(identity.cpu_cores),
        memory_total_mb: Some(sample.memory_total_mb),
        memory_available_mb: Some(sample.memory_available_mb),
        max_jobs: Some(identity.max_jobs),
        active_jobs: activity.active_jobs.clone(),
        encoders: identity.encoders.clone(),
        weight: Some(identity.weight),
        interval_s: Some(identity.interval_s),
        timestamp: Some(now_ms),
        finished_runs: activity
            .finished
            .iter()
            .filter(|(_, at)| now_ms.saturating_sub(*at) <= RECALL_FINISHED_MS)
            .map(|(r, _)| *r)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_activity() {
        let job = Uuid::new_v4();
        let cases = [
            (Activity::default(), WorkerStatus::Idle),
            (
                Activity {
                    active_jobs: vec![job],
                    draining: false,
                    ..Activity::default()
                },
                WorkerStatus::Working,
            ),
            (
                Activity {
                    active_jobs: vec![job],
                    draining: true,
                    ..Activity::default()
                },
                WorkerStatus::Draining,
            ),
            (
                Activity {
                    active_jobs: vec![],
                    draining: true,
                    ..Activity::default()
                },
                WorkerStatus::Draining,
            ),
        ];
        for (activity, want) in cases {
            assert_eq!(activity.status(), want, "{activity:?}");
        }
    }

    #[test]
    fn a_heartbeat_recalls_the_runs_that_ended_lately() {
        let mut a = Activity::default();
        let run = |attempt| FinishedRun {
            job_id: Uuid::nil(),
            attempt,
            state: transcode_common::wire::JobState::Completed,
        };
        for attempt in 1..=20 {
            a.finished(run(attempt), 1_000 * attempt as u64);
        }
        a.finished(run(20), 50_000);
        assert_eq!(a.finished.len(), MAX_FINISHED_RUNS);
        let identity = Identity {
            worker_id: "w1".into(),
            advertise_host: "10.0.0.2".into(),
            port: 8080,
            hostname: "box".into(),
            cpu_cores: 8,
            max_jobs: 2,
            weight: 1.0,
            interval_s: 15,
            hw_accel: vec![],
            encoders: vec![],
        };
        let sample = Sample {
            cpu_usage: 1.0,
            memory_total_mb: 1,
            memory_available_mb: 1,
        };
        // Ten minutes after the 12th ended, only those since are recalled.
        let hb = build(&identity, &a, &sample, 12_000 + RECALL_FINISHED_MS);
        let recalled: Vec<u32> = hb.finished_runs.iter().map(|r| r.attempt).collect();
        assert_eq!(recalled, [12, 13, 14, 15, 16, 17, 18, 19, 20]);
        assert!(hb.validate().is_ok());
    }

    #[test]
    fn heartbeat_is_valid_and_complete() {
        let identity = Identity {
            worker_id: "w1".into(),
            advertise_host: "10.0.0.2".into(),
            port: 8080,
            hostname: "box".into(),
            cpu_cores: 8,
            max_jobs: 2,
            weight: 1.5,
            interval_s: 15,
            hw_accel: vec![],
            encoders: vec!["libx264".into()],
        };
        let sample = Sample {
            cpu_usage: 12.5,
            memory_total_mb: 16000,
            memory_available_mb: 9000,
        };
        let hb = build(&identity, &Activity::default(), &sample, 1234);
        assert!(hb.validate().is_ok());
        let json = serde_json::to_value(&hb).unwrap();
        for key in [
            "worker_id",
            "ip_address",
            "port",
            "os",
            "hw_accel",
            "status",
            "cpu_usage",
            "hostname",
            "version",
            "cpu_cores",
            "memory_total_mb",
            "memory_available_mb",
            "max_jobs",
            "active_jobs",
            "encoders",
            "interval_s",
            "timestamp",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(json["status"], "idle");
        assert_eq!(json["timestamp"], 1234);
    }
}
