//! A job as the orchestrator keeps it: the request, where it stands, who
//! holds it, and where it would resume. This is the record in the store and
//! the JSON of `GET /api/jobs/{id}`.

use serde::{Deserialize, Serialize};
use transcode_common::validate::{Bitrate, Resolution};
use transcode_common::wire::{
    ChunkStatus, ErrorKind, Grid, JobAssignment, JobRequest, JobState, JobStatus,
};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: Uuid,
    pub source_path: String,
    pub resolution: Resolution,
    pub bitrate: Bitrate,
    pub start_time: f64,
    pub is_mesh_mode: bool,
    pub state: JobState,
    /// The worker holding the job now (assigned or processing), or the last
    /// one that did.
    pub worker_id: Option<String>,
    pub progress: f64,
    pub fps: f64,
    pub speed: Option<f64>,
    pub eta_s: Option<f64>,
    pub stream_url: Option<String>,
    /// Number of the current (or last) run; 0 before the first assignment.
    pub attempt: u32,
    /// Runs that failed for a reason another worker may not have: counted
    /// against `scheduler.max_attempts`.
    pub failures: u32,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    /// Submission order: the queue is first in, first out.
    pub seq: u64,
    pub created_at: u64,
    pub updated_at: u64,
    /// When the job last entered the queue (submission or requeue).
    #[serde(default)]
    pub queued_at: u64,
    pub assigned_at: Option<u64>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Where the next run starts: the first segment not yet complete.
    pub resume_time: Option<f64>,
    pub segments_done: Option<u64>,
    /// The worker clock's time of the current run's first `processing`
    /// status: a later heartbeat from that worker must list the job.
    pub processing_since: Option<u64>,
    /// Every worker that ran the job, in order.
    pub workers: Vec<String>,
    /// A worker that refused the job for lack of a free slot: not asked
    /// again until it sends a new heartbeat.
    #[serde(default)]
    pub refused_by: Option<String>,
    /// Something a person should know about how the job runs.
    pub note: Option<String>,
    /// The frame grid every run cuts its segments on, from the first run
    /// that reported a segment.
    #[serde(default)]
    pub grid: Option<Grid>,
    /// The encodings the segments carry, in order of first use.
    #[serde(default)]
    pub encodings: Vec<String>,
    /// How many segments the playlist lists: it only grows.
    #[serde(default)]
    pub listed: u64,
    /// How many segments the whole job has, once a run reached the end of
    /// the source.
    #[serde(default)]
    pub total_segments: Option<u64>,
    /// The segment a player asked the orchestrator for last.
    #[serde(default)]
    pub requested: Option<u64>,
    /// The highest segment a worker says it served to a player.
    #[serde(default)]
    pub served: Option<u64>,
    /// The current (or last) run's first segment and, for a run that fills
    /// a hole, its end (exclusive).
    #[serde(default)]
    pub run_from: u64,
    #[serde(default)]
    pub run_to: Option<u64>,
    /// The segment the current run reports next.
    #[serde(default)]
    pub run_next: u64,
    /// When the current run said it completed while some of its segments'
    /// reports had not arrived yet (they travel on another topic).
    #[serde(default)]
    pub settling_since: Option<u64>,
    /// A split job's parts: those running or settling, then the last
    /// finished ones (see `core::mesh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Chunk>,
    /// The encoder every part of a split job uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// How many segments the job has by its first run's probe of the source
    /// (an estimate until a run reaches the end: `total_segments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_estimate: Option<u64>,
}

/// One part of a split job: segments `first_segment..end_segment` on one
/// worker, named by the attempt number of its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub attempt: u32,
    pub worker_id: String,
    pub first_segment: u64,
    /// Exclusive; `None`: to the end of the source.
    pub end_segment: Option<u64>,
    /// `assigned` and `processing` hold the worker; `completed` with
    /// `settling_since` waits for its last segment reports.
    pub state: JobState,
    /// The segment this run reports next.
    pub next_segment: u64,
    pub progress: f64,
    pub fps: f64,
    pub speed: Option<f64>,
    pub error: Option<String>,
    pub assigned_at: u64,
    /// When its worker last said something about it.
    pub updated_at: u64,
    /// The worker clock's time of its first `processing`.
    pub processing_since: Option<u64>,
    pub settling_since: Option<u64>,
}

impl Chunk {
    /// A chunk just given to `worker_id`: segments `first..end`.
    pub fn new(attempt: u32, worker_id: &str, first: u64, end: Option<u64>, now_ms: u64) -> Chunk {
        Chunk {
            attempt,
            worker_id: worker_id.to_string(),
            first_segment: first,
            end_segment: end,
            state: JobState::Assigned,
            next_segment: first,
            progress: 0.0,
            fps: 0.0,
            speed: None,
            error: None,
            assigned_at: now_ms,
            updated_at: now_ms,
            processing_since: None,
            settling_since: None,
        }
    }

    /// Holds its worker.
    pub fn is_running(&self) -> bool {
        matches!(self.state, JobState::Assigned | JobState::Processing)
    }

    /// Its segments are its own: nobody else runs them.
    pub fn is_active(&self) -> bool {
        self.is_running() || self.settling_since.is_some()
    }

    pub fn view(&self) -> ChunkStatus {
        ChunkStatus {
            attempt: self.attempt,
            worker_id: self.worker_id.clone(),
            first_segment: self.first_segment,
            end_segment: self.end_segment,
            state: self.state,
            progress: self.progress,
            fps: self.fps,
            error: self.error.clone(),
        }
    }
}

impl Job {
    pub fn from_request(req: &JobRequest, job_id: Uuid, seq: u64, now_ms: u64) -> Job {
        Job {
            job_id,
            source_path: req.source_path.clone(),
            resolution: req.resolution,
            bitrate: req.bitrate,
            start_time: req.start_time,
            is_mesh_mode: req.is_mesh_mode,
            state: JobState::Queued,
            worker_id: None,
            progress: 0.0,
            fps: 0.0,
            speed: None,
            eta_s: None,
            stream_url: None,
            attempt: 0,
            failures: 0,
            error: None,
            error_kind: None,
            seq,
            created_at: now_ms,
            updated_at: now_ms,
            queued_at: now_ms,
            assigned_at: None,
            started_at: None,
            finished_at: None,
            resume_time: None,
            segments_done: None,
            processing_since: None,
            workers: Vec::new(),
            refused_by: None,
            note: None,
            grid: None,
            encodings: Vec::new(),
            listed: 0,
            total_segments: None,
            requested: None,
            served: None,
            run_from: 0,
            run_to: None,
            run_next: 0,
            settling_since: None,
            chunks: Vec::new(),
            encoder: None,
            segments_estimate: None,
        }
    }

    /// Where a viewer needs the next segment: right after the highest one a
    /// worker served, or the highest one a player asked for (it may not
    /// have arrived).
    pub fn priority(&self) -> u64 {
        let served = self.served.map(|s| s + 1).unwrap_or(0);
        served.max(self.requested.unwrap_or(0))
    }

    /// Whether this job is the same request as `req` (an idempotent resubmit).
    /// The request this job came from, without its id: the same job again.
    pub fn request(&self) -> JobRequest {
        JobRequest {
            source_path: self.source_path.clone(),
            resolution: self.resolution,
            bitrate: self.bitrate,
            start_time: self.start_time,
            is_mesh_mode: self.is_mesh_mode,
            job_id: None,
        }
    }

    pub fn same_request(&self, req: &JobRequest) -> bool {
        self.source_path == req.source_path
            && self.resolution == req.resolution
            && self.bitrate == req.bitrate
            && self.start_time == req.start_time
            && self.is_mesh_mode == req.is_mesh_mode
    }

    /// The order for the worker that gets the next run: segments
    /// `run_from..run_to` (or to the end) on the job's grid. `start_time`
    /// stays the job's: the worker finds segment `run_from` on the grid.
    pub fn assignment(&self) -> JobAssignment {
        JobAssignment {
            job_id: self.job_id,
            source_path: self.source_path.clone(),
            resolution: self.resolution,
            bitrate: self.bitrate,
            start_time: self.start_time,
            is_mesh_mode: self.is_mesh_mode,
            attempt: self.attempt,
            duration: None,
            segment_offset: (self.run_from > 0).then_some(self.run_from),
            segment_count: self.run_to.map(|t| t.saturating_sub(self.run_from).max(1)),
            grid: self.grid,
            encoder: None,
            source_url: None,
            source_size: None,
        }
    }

    /// The order for the worker that runs a part of a split job.
    pub fn chunk_assignment(&self, chunk: &Chunk) -> JobAssignment {
        let first = chunk.first_segment;
        JobAssignment {
            attempt: chunk.attempt,
            segment_offset: (first > 0).then_some(first),
            segment_count: chunk.end_segment.map(|t| t.saturating_sub(first).max(1)),
            encoder: self.encoder.clone(),
            ..self.assignment()
        }
    }

    /// The part of a split job its run's attempt names.
    pub fn chunk_mut(&mut self, attempt: u32) -> Option<&mut Chunk> {
        self.chunks.iter_mut().find(|c| c.attempt == attempt)
    }

    /// The retained status the orchestrator publishes for this job.
    pub fn status(&self, now_ms: u64) -> JobStatus {
        JobStatus {
            job_id: self.job_id,
            state: self.state,
            progress: self.progress,
            fps: self.fps,
            stream_url: self.stream_url.clone(),
            // A split job's parts name their workers.
            worker_id: self.worker_id.clone().filter(|_| !self.is_mesh_mode),
            speed: self.speed,
            eta_s: self.eta_s,
            error: self.error.clone(),
            error_kind: self.error_kind,
            segments_done: self.segments_done,
            resume_time: self.resume_time,
            served_segment: self.served,
            attempt: (self.attempt > 0).then_some(self.attempt),
            timestamp: Some(now_ms),
            chunks: self
                .is_mesh_mode
                .then(|| self.chunks.iter().map(Chunk::view).collect()),
        }
    }

    /// The run ended or was taken away: nothing of it is live any more.
    pub fn leave_run(&mut self, now_ms: u64) {
        self.updated_at = now_ms;
        self.speed = None;
        self.eta_s = None;
        self.fps = 0.0;
        self.processing_since = None;
        self.assigned_at = None;
        self.settling_since = None;
    }

    /// Is the job held by a worker right now? A run that said it completed
    /// while its last reports are on their way holds no worker.
    pub fn is_running(&self) -> bool {
        matches!(self.state, JobState::Assigned | JobState::Processing)
            && self.settling_since.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JobRequest {
        transcode_common::wire::decode(
            br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","start_time":6}"#,
        )
        .unwrap()
    }

    #[test]
    fn assignments_name_their_segments_on_the_grid() {
        let mut job = Job::from_request(&request(), Uuid::new_v4(), 1, 0);
        job.attempt = 1;
        let a = job.assignment();
        assert_eq!(
            (a.start_time, a.segment_offset, a.segment_count, a.grid),
            (6.0, None, None, None)
        );

        let grid = Grid {
            segment_frames: 120,
            lead: 0,
            fps_num: 30,
            fps_den: 1,
        };
        job.attempt = 2;
        job.grid = Some(grid);
        job.run_from = 3;
        job.run_to = Some(5);
        let a = job.assignment();
        // The job's own start time: the worker finds segment 3 on the grid.
        assert_eq!(
            (a.start_time, a.segment_offset, a.segment_count, a.grid),
            (6.0, Some(3), Some(2), Some(grid))
        );
        assert_eq!(a.attempt, 2);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn the_viewer_sets_the_priority() {
        let mut job = Job::from_request(&request(), Uuid::new_v4(), 1, 0);
        let cases = [
            (None, None, 0),
            (Some(4), None, 5),
            (None, Some(7), 7),
            (Some(9), Some(7), 10),
            (Some(3), Some(7), 7),
        ];
        for (served, requested, want) in cases {
            job.served = served;
            job.requested = requested;
            assert_eq!(job.priority(), want, "{served:?} {requested:?}");
        }
    }

    #[test]
    fn chunks_name_their_segments_and_the_jobs_encoder() {
        let mut req = request();
        req.is_mesh_mode = true;
        let mut job = Job::from_request(&req, Uuid::new_v4(), 1, 0);
        assert!(job.same_request(&req));
        assert!(!job.same_request(&request()));
        job.encoder = Some("libx264".into());
        job.attempt = 9;
        let chunk = |attempt, first, end| Chunk::new(attempt, "w2", first, end, 0);
        let cases = [
            (chunk(3, 0, Some(2)), (None, Some(2))),
            (chunk(4, 2, Some(6)), (Some(2), Some(4))),
            (chunk(5, 40, None), (Some(40), None)),
        ];
        for (c, (offset, count)) in cases {
            let a = job.chunk_assignment(&c);
            assert_eq!((a.segment_offset, a.segment_count), (offset, count));
            assert_eq!(a.attempt, c.attempt);
            assert!(a.is_mesh_mode);
            assert_eq!(a.encoder.as_deref(), Some("libx264"));
            assert!(a.validate().is_ok());
        }
        job.chunks = vec![chunk(3, 0, Some(2))];
        let status = job.status(1);
        assert_eq!(status.chunks.map(|c| c.len()), Some(1));
        assert_eq!(status.worker_id, None);
    }
}
