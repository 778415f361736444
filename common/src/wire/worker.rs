//! What a worker says about itself: its retained heartbeat, the machine it
//! runs on, its status, and the runs it ended lately.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::JobState;
use crate::validate;

/// The operating system a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Windows,
    Linux,
    Macos,
    /// Anything else (a BSD, ...); still a usable worker.
    #[serde(other)]
    Other,
}

impl Os {
    /// The OS this binary was built for.
    pub fn current() -> Os {
        if cfg!(target_os = "windows") {
            Os::Windows
        } else if cfg!(target_os = "linux") {
            Os::Linux
        } else if cfg!(target_os = "macos") {
            Os::Macos
        } else {
            Os::Other
        }
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    /// Has a free slot (or several).
    Idle,
    /// Every slot is busy.
    Working,
    /// Shutting down: finishes or hands back its jobs, takes no new ones.
    Draining,
}

impl WorkerStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerStatus::Idle => "idle",
            WorkerStatus::Working => "working",
            WorkerStatus::Draining => "draining",
        }
    }
}

/// A worker's retained self-description on `.../workers/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker_id: String,
    /// Host the player reaches the worker's HLS server at.
    pub ip_address: String,
    /// Port of the worker's HLS server.
    pub port: u16,
    pub os: Os,
    /// Hardware acceleration families that passed a real test encode
    /// (`nvenc`, `cuda`, `qsv`, `vaapi`, ...); empty for software only.
    pub hw_accel: Vec<String>,
    pub status: WorkerStatus,
    /// Whole-machine CPU load, 0-100.
    pub cpu_usage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_mb: Option<u64>,
    /// How many jobs the worker runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// Ids of the jobs the worker runs now.
    #[serde(default)]
    pub active_jobs: Vec<Uuid>,
    /// Encoders that passed the probe (`libx264`, `h264_nvenc`, ...).
    #[serde(default)]
    pub encoders: Vec<String>,
    /// Routing weight set by the worker's owner (higher is preferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Seconds between two heartbeats, so watchers know when one is missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
    /// When this heartbeat was made, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Runs this worker ended lately (newest last): their final statuses
    /// travel on another topic and may arrive after this heartbeat, so a
    /// run listed here is not lost for being missing from `active_jobs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished_runs: Vec<FinishedRun>,
}

/// A run a worker ended, as its heartbeat recalls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedRun {
    pub job_id: Uuid,
    pub attempt: u32,
    /// Its final state: completed, failed or cancelled.
    pub state: JobState,
}

/// Most finished runs a heartbeat recalls.
pub const MAX_FINISHED_RUNS: usize = 16;

impl Heartbeat {
    /// Checks the values that serde's types do not already pin down.
    pub fn validate(&self) -> Result<(), String> {
        validate::worker_id(&self.worker_id).map_err(|e| format!("worker_id: {e}"))?;
        if self.ip_address.trim().is_empty() || self.ip_address.len() > 255 {
            return Err("ip_address: must be a host name or address".into());
        }
        if !(0.0..=100.0).contains(&self.cpu_usage) {
            return Err(format!(
                "cpu_usage: {} is not a percentage between 0 and 100",
                self.cpu_usage
            ));
        }
        if let Some(w) = self.weight {
            if !w.is_finite() || w <= 0.0 {
                return Err(format!("weight: {w} must be a positive number"));
            }
        }
        if self.hw_accel.len() > 32 || self.encoders.len() > 64 || self.active_jobs.len() > 1024 {
            return Err("hw_accel, encoders or active_jobs: too many entries".into());
        }
        if self.finished_runs.len() > MAX_FINISHED_RUNS {
            return Err(format!(
                "finished_runs: more than {MAX_FINISHED_RUNS} entries"
            ));
        }
        Ok(())
    }
}

/// What a worker's current-job topic (`.../workers/{id}/job`) holds while
/// it runs nothing; while it runs a job, the topic carries that job's
/// [`JobStatus`](super::JobStatus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleJob {
    pub state: Idle,
    /// Always 0: Home Assistant's job-progress sensor reads it.
    pub progress: u8,
    pub worker_id: String,
}

/// The one state of [`IdleJob`], written `"idle"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    Idle,
}

impl IdleJob {
    pub fn of(worker_id: &str) -> IdleJob {
        IdleJob {
            state: Idle::Idle,
            progress: 0,
            worker_id: worker_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_job_payload() {
        let cases = [
            ("w1", r#"{"state":"idle","progress":0,"worker_id":"w1"}"#),
            (
                "nas.local",
                r#"{"state":"idle","progress":0,"worker_id":"nas.local"}"#,
            ),
        ];
        for (worker, want) in cases {
            let bytes = crate::wire::encode(&IdleJob::of(worker));
            assert_eq!(String::from_utf8_lossy(&bytes), want);
            let back: IdleJob = crate::wire::decode(want.as_bytes()).unwrap();
            assert_eq!(back, IdleJob::of(worker));
        }
        let busy = br#"{"state":"processing","progress":3,"worker_id":"w1"}"#;
        assert!(crate::wire::decode::<IdleJob>(busy).is_err());
    }
    use crate::wire::decode;
    use crate::wire::seeds::{round_trip, SEED_HEARTBEAT};

    #[test]
    fn seed_heartbeat_round_trips() {
        let hb: Heartbeat = round_trip(SEED_HEARTBEAT);
        assert_eq!(hb.worker_id, "gaming-pc-room");
        assert_eq!(hb.os, Os::Windows);
        assert_eq!(hb.hw_accel, vec!["nvenc", "cuda", "d3d11va"]);
        assert_eq!(hb.status, WorkerStatus::Idle);
        assert_eq!(hb.cpu_usage, 5.0);
        assert!(hb.validate().is_ok());
    }

    #[test]
    fn heartbeat_values_are_checked() {
        let base: Heartbeat = decode(SEED_HEARTBEAT.as_bytes()).unwrap();
        let cases: Vec<(Heartbeat, &str)> = vec![
            (
                Heartbeat {
                    cpu_usage: 101.0,
                    ..base.clone()
                },
                "cpu_usage",
            ),
            (
                Heartbeat {
                    cpu_usage: -1.0,
                    ..base.clone()
                },
                "cpu_usage",
            ),
            (
                Heartbeat {
                    worker_id: "a/b".into(),
                    ..base.clone()
                },
                "worker_id",
            ),
            (
                Heartbeat {
                    ip_address: "".into(),
                    ..base.clone()
                },
                "ip_address",
            ),
            (
                Heartbeat {
                    weight: Some(0.0),
                    ..base.clone()
                },
                "weight",
            ),
        ];
        for (hb, needle) in cases {
            let err = hb.validate().expect_err(needle);
            assert!(err.starts_with(needle), "{err}");
        }
    }

    #[test]
    fn unknown_os_is_other() {
        let hb: Heartbeat = decode(
            SEED_HEARTBEAT
                .replace("\"windows\"", "\"freebsd\"")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(hb.os, Os::Other);
    }
}
