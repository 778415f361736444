//! Running jobs: take assignments from the job topic, run FFmpeg on each,
//! publish its status, and stop it on request.
//!
//! Every assignment ends in exactly one final status (`completed`, `failed`
//! or `cancelled`), or in a refusal (`failed` with `error_kind: busy`) when
//! every slot is taken. The same (job_id, attempt) delivered twice starts
//! one FFmpeg only.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::AsyncClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use transcode_common::topics::Topics;
use transcode_common::wire::{self, ErrorKind, JobAssignment, JobState, JobStatus};
use uuid::Uuid;

use crate::command::{self, EncodeSpec, RunWindow, PLAYLIST};
use crate::ffprobe::SourceInfo;
use crate::heartbeat::Activity;
use crate::media::{self, Source};
use crate::outputs::{Held, Outputs};
use crate::probe::Family;
use crate::progress::{self, ProgressParser};

/// How long FFmpeg has to stop after `q` before it is killed.
const CANCEL_GRACE: Duration = Duration::from_millis(1500);
/// How often FFmpeg's playlist is read for new segments.
const SEGMENT_POLL: Duration = Duration::from_millis(200);
/// How often FFmpeg's playlist is read until it lists the run's first
/// segment.
const FIRST_SEGMENT_POLL: Duration = Duration::from_millis(25);
/// Progress is published at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How many (job_id, attempt) pairs are remembered to drop redeliveries.
const REMEMBERED: usize = 4096;
/// Lines of FFmpeg's stderr kept to explain a failure.
const STDERR_TAIL: usize = 30;

/// What the job runner needs from the worker's configuration.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub worker_id: String,
    /// The worker's own media folder, when it has one.
    pub media_root: Option<PathBuf>,
    pub ffmpeg: String,
    pub ffprobe: String,
    pub max_jobs: u32,
    /// Threads one FFmpeg may use; 0: FFmpeg's choice.
    pub threads: u32,
    /// The segment length of a job whose first run happens here.
    pub segment_seconds: u32,
    pub probe_timeout: Duration,
    /// `http://host:port/hls/`: a job's stream is `{stream_base}{job_id}/index.m3u8`.
    pub stream_base: String,
    /// Encoders that passed the probe.
    pub encoders: Vec<String>,
}

/// Why a running job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// A person or the orchestrator cancelled it.
    Cancelled,
    /// The worker is shutting down.
    Shutdown,
    /// A newer attempt of the same job arrived here.
    Superseded,
}

struct Running {
    attempt: u32,
    stop: Option<oneshot::Sender<StopReason>>,
}

#[derive(Default)]
struct State {
    running: HashMap<Uuid, Running>,
    seen: VecDeque<(Uuid, u32)>,
    shutting_down: bool,
    /// Frames per second of each running job, for `/metrics`.
    fps: HashMap<Uuid, f64>,
    /// Assignments by how they ended, for `/metrics`.
    results: HashMap<&'static str, u64>,
    /// What the last runs found probing their sources (see `source`).
    probes: source::Probes,
    /// The last runs' final statuses, sent again after every connection.
    finals: statuses::Finals,
}

/// What `/metrics` reports about jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMetrics {
    pub active: usize,
    /// Frames per second of every running job together (a series per job
    /// would grow with every job the worker ever ran).
    pub encode_fps: f64,
    pub results: Vec<(&'static str, u64)>,
}

/// The job runner; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JobSettings,
    /// The job folders: what they hold, who watches them, when they go.
    outputs: Arc<Outputs>,
    /// Held while a folder's record is read or written and its report sent,
    /// so reports and inventories leave in the order of the records.
    reporting: tokio::sync::Mutex<()>,
    topics: Topics,
    client: AsyncClient,
    activity: watch::Sender<Activity>,
    state: Mutex<State>,
}

impl Jobs {
    pub fn new(
        settings: JobSettings,
        outputs: Arc<Outputs>,
        topics: Topics,
        client: AsyncClient,
        activity: watch::Sender<Activity>,
    ) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                settings,
                outputs,
                reporting: tokio::sync::Mutex::new(()),
                topics,
                client,
                activity,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker_id(&self) -> &str {
        &self.inner.settings.worker_id
    }

    fn count(&self, result: &'static str) {
        *self.state().results.entry(result).or_default() += 1;
    }

    pub fn metrics(&self) -> JobMetrics {
        let state = self.state();
        let results = ["completed", "failed", "cancelled", "refused"]
            .into_iter()
            .map(|r| (r, state.results.get(r).copied().unwrap_or(0)))
            .collect();
        JobMetrics {
            active: state.running.len(),
            encode_fps: state.fps.values().sum(),
            results,
        }
    }

    /// A message on our job topic.
    pub async fn on_assignment(&self, payload: &[u8]) {
        let worker_id = self.worker_id().to_string();
        let assignment = match wire::decode::<JobAssignment>(payload)
            .map_err(|e| e.to_string())
            .and_then(|a| a.validate().map(|_| a))
        {
            Ok(a) => a,
            Err(e) => {
                self.count("failed");
                let reason = format!("worker {worker_id} refused an assignment: {e}");
                match wire::job_id_of(payload) {
                    Some(job_id) => {
                        tracing::warn!(worker_id, %job_id, "{reason}");
                        let mut s = JobStatus::new(job_id, JobState::Failed);
                        s.error = Some(reason);
                        s.error_kind = Some(ErrorKind::Input);
                        self.publish(s, None, false, true).await;
                    }
                    None => tracing::warn!(worker_id, "{reason} (no job id in it)"),
                }
                return;
            }
        };
        let job_id = assignment.job_id;
        let attempt = assignment.attempt;

        let superseded = {
            let mut state = self.state();
            if state.seen.contains(&(job_id, attempt)) {
                tracing::info!(worker_id, %job_id, attempt, "assignment delivered again; already taken");
                return;
            }
            if state.shutting_down {
                None
            } else {
                state.seen.push_back((job_id, attempt));
                if state.seen.len() > REMEMBERED {
                    state.seen.pop_front();
                }
                match state.running.get_mut(&job_id) {
                    Some(old) if old.attempt < attempt => old.stop.take(),
                    Some(_) => {
                        tracing::warn!(worker_id, %job_id, attempt, "an older attempt of a job we run arrived; ignored");
                        return;
                    }
                    None => None,
                }
            }
        };
        if let Some(stop) = superseded {
            tracing::info!(worker_id, %job_id, attempt, "a newer attempt replaces the one running here");
            let _ = stop.send(StopReason::Superseded);
            self.wait_gone(job_id, CANCEL_GRACE * 2).await;
        }

        let (stop_tx, stop_rx) = oneshot::channel();
        let refusal = {
            let mut state = self.state();
            let busy = state.running.len() as u32 >= self.inner.settings.max_jobs;
            if state.running.contains_key(&job_id) {
                Some((
                    format!("worker {worker_id} refused job {job_id}: an earlier run of it is still stopping here"),
                    ErrorKind::Busy,
                ))
            } else if state.shutting_down {
                Some((
                    format!("worker {worker_id} refused job {job_id}: it is shutting down"),
                    ErrorKind::Busy,
                ))
            } else if busy {
                Some((
                    format!(
                        "worker {worker_id} refused job {job_id}: all {} of its slots are busy",
                        self.inner.settings.max_jobs
                    ),
                    ErrorKind::Busy,
                ))
            } else {
                state.running.insert(
                    job_id,
                    Running {
                        attempt,
                        stop: Some(stop_tx),
                    },
                );
                None
            }
        };
        if let Some((reason, kind)) = refusal {
            self.count("refused");
            tracing::warn!(worker_id, %job_id, attempt, "{reason}");
            let mut s = JobStatus::new(job_id, JobState::Failed);
            s.error = Some(reason);
            s.error_kind = Some(kind);
            self.publish(s, Some(attempt), assignment.is_mesh_mode, true)
                .await;
            // A later redelivery of the same attempt may find a free slot.
            self.state().seen.retain(|p| *p != (job_id, attempt));
            return;
        }
        self.inner.activity.send_modify(|a| {
            if !a.active_jobs.contains(&job_id) {
                a.active_jobs.push(job_id);
            }
        });
        self.inner.outputs.set_running(job_id, true);
        let jobs = self.clone();
        let span = tracing::info_span!("job", job_id = %job_id, worker_id = %worker_id, attempt);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                jobs.run(assignment, stop_rx).await;
            },
            span,
        ));
    }

    /// A message on our cancel topic: `{"job_id": ...}`, or `CANCEL` for
    /// whatever runs now.
    pub async fn on_cancel(&self, payload: &[u8]) {
        let worker_id = self.worker_id().to_string();
        // `CANCEL` stops every run; an order names one job. The orchestrator
        // fences a job that moved to another worker: stop it without a
        // status, which would contradict the new holder's. A fence names the
        // stale attempt when it knows it: a newer run of the same job here is
        // the one the orchestrator wants, and stays.
        let (targets, fenced, fenced_attempt): (Vec<Uuid>, bool, Option<u32>) = if payload
            .trim_ascii()
            == b"CANCEL"
        {
            (self.state().running.keys().copied().collect(), false, None)
        } else {
            match wire::decode::<wire::CancelOrder>(payload) {
                Ok(order) => (vec![order.job_id], order.fenced, order.attempt),
                Err(e) => {
                    tracing::warn!(worker_id, "cancel request ignored: it is neither CANCEL nor {{\"job_id\": \"<uuid>\"}}: {e}");
                    return;
                }
            }
        };
        let reason = if fenced {
            StopReason::Superseded
        } else {
            StopReason::Cancelled
        };
        if targets.is_empty() {
            tracing::info!(worker_id, "cancel request: no job is running");
        }
        for job_id in targets {
            let stop = self
                .state()
                .running
                .get_mut(&job_id)
                .filter(|r| !fenced || fenced_attempt.is_none_or(|a| r.attempt <= a))
                .and_then(|r| r.stop.take());
            match stop {
                Some(stop) => {
                    if fenced {
                        tracing::warn!(worker_id, %job_id, "the orchestrator moved this job elsewhere; stopping our copy");
                    } else {
                        tracing::info!(worker_id, %job_id, "cancelling");
                    }
                    let _ = stop.send(reason);
                }
                None => {
                    tracing::info!(worker_id, %job_id, "cancel request for a job not running here")
                }
            }
        }
    }

    /// Stops every job (each reports that the worker shut down, so it can be
    /// run elsewhere) and waits for them, up to `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        let stops: Vec<oneshot::Sender<StopReason>> = {
            let mut state = self.state();
            state.shutting_down = true;
            state
                .running
                .values_mut()
                .filter_map(|r| r.stop.take())
                .collect()
        };
        for stop in stops {
            let _ = stop.send(StopReason::Shutdown);
        }
        let deadline = Instant::now() + timeout;
        while !self.state().running.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone(&self, job_id: Uuid, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.state().running.contains_key(&job_id) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

mod run;
mod segments;
mod source;
mod statuses;

use segments::SegmentReporter;
use source::Rate;
