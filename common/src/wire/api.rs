//! What the orchestrator's HTTP API answers, as its clients (`transcodectl`)
//! read it.
//!
//! The orchestrator keeps a job as a larger record (`orchestrator::job::Job`,
//! the row of its store); [`JobView`] is the part of it a client shows.
//! Fields the orchestrator adds later are ignored, and optional fields it
//! leaves out fall back to their defaults, so a tool a little older or newer
//! than its orchestrator still reads it. A job without an id or a known
//! state is not a job: reading it fails, and the client says so.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ChunkStatus, Heartbeat, JobState};

/// A job as `GET /api/jobs` (a list of them), `GET /api/jobs/{id}`,
/// `POST /api/jobs` and `DELETE /api/jobs/{id}` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: Uuid,
    pub state: JobState,
    /// The source file, relative to the media root: what a person
    /// recognises the job by.
    #[serde(default)]
    pub source_path: String,
    /// Percent done, 0-100.
    #[serde(default)]
    pub progress: f64,
    /// Frames encoded per second; `None` when the job does not report it.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Encoding speed as a multiple of real time.
    #[serde(default)]
    pub speed: Option<f64>,
    /// Seconds until done at the current speed.
    #[serde(default)]
    pub eta_s: Option<f64>,
    /// The worker holding the job now (assigned or processing), or the last
    /// one that did.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Number of the current (or last) run; 0 before the first assignment.
    /// Above 1, the job moved or was tried again.
    #[serde(default)]
    pub attempt: u32,
    /// Why the job failed, as a sentence for a person.
    #[serde(default)]
    pub error: Option<String>,
    /// How many segments the orchestrator's playlist lists: above 0, a
    /// player can start.
    #[serde(default)]
    pub listed: u64,
    /// A split job's parts (empty for a plain job): who runs which.
    #[serde(default)]
    pub chunks: Vec<ChunkStatus>,
}

/// One worker as `GET /api/workers` shows it: what the orchestrator's
/// registry knows of it. The orchestrator serializes this very type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    pub worker_id: String,
    /// Its availability is not `offline` and its last heartbeat is on time:
    /// jobs may go to it.
    #[serde(default)]
    pub online: bool,
    /// Unix ms of the last heartbeat or availability message.
    #[serde(default)]
    pub last_seen: Option<u64>,
    /// Its latest self-description (encoders, load, address); `None` before
    /// the first heartbeat.
    #[serde(default)]
    pub heartbeat: Option<Heartbeat>,
    /// Ids of the jobs the worker holds.
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// The body of every answer of the API that is not a success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong, as a sentence a person can act on.
    pub error: String,
}
