//! A job on the wire: the request that makes one, the orchestrator's
//! assignment of a run to a worker, and the job's status as it goes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ChunkStatus, Grid, MAX_SEGMENTS};
use crate::validate::{self, Bitrate, Resolution};

/// The orchestrator's order to a worker, on `.../workers/{id}/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAssignment {
    pub job_id: Uuid,
    /// Relative to the media root: the worker's own copy, or the
    /// orchestrator's at `source_url`.
    pub source_path: String,
    pub resolution: Resolution,
    pub bitrate: Bitrate,
    /// Seconds into the source where the output starts.
    #[serde(default)]
    pub start_time: f64,
    #[serde(default)]
    pub is_mesh_mode: bool,
    /// 1 for the first try, counting up on each requeue; with the job id it
    /// names one run of a job, so a redelivery starts nothing twice.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// For a part of a split job or a resumed job: how many seconds to encode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Number of the first HLS segment this run writes, so a resumed or split
    /// job continues the numbering the player already has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_offset: Option<u64>,
    /// How many segments this run writes from `segment_offset` on; absent:
    /// to the end of the source. A run that fills a gap stops where the
    /// segments other workers hold begin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_count: Option<u64>,
    /// The job's frame grid, decided by its first run: every later run cuts
    /// its segments on the same frames so that they join seamlessly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Grid>,
    /// The H.264 encoder every part of a split job uses (one of
    /// `H264_ENCODERS`), so that the parts join without a discontinuity;
    /// absent: the worker's best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// Where a worker without its own copy of the source reads it: an
    /// `http://` URL on the orchestrator, signed for this run, valid while
    /// it goes. Absent: the orchestrator serves no media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// The source's size in bytes on the orchestrator: a worker's own copy
    /// is used only when it has the same size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_size: Option<u64>,
}

/// The longest `source_url` an assignment may carry.
pub const MAX_SOURCE_URL_LEN: usize = 8 * 1024;

/// The H.264 encoders a worker may prove, best first.
pub const H264_ENCODERS: [&str; 7] = [
    "h264_nvenc",
    "h264_qsv",
    "h264_vaapi",
    "h264_amf",
    "h264_videotoolbox",
    "h264_v4l2m2m",
    "libx264",
];

fn first_attempt() -> u32 {
    1
}

impl JobAssignment {
    pub fn validate(&self) -> Result<(), String> {
        validate::source_path(&self.source_path).map_err(|e| format!("source_path: {e}"))?;
        validate::start_time(self.start_time).map_err(|e| format!("start_time: {e}"))?;
        if self.attempt == 0 {
            return Err("attempt: must be 1 or more".into());
        }
        if let Some(d) = self.duration {
            if !d.is_finite() || d <= 0.0 {
                return Err(format!(
                    "duration: {d} must be a positive number of seconds"
                ));
            }
        }
        if let Some(n) = self.segment_offset {
            if n > MAX_SEGMENTS {
                return Err(format!(
                    "segment_offset: {n} is more than the {MAX_SEGMENTS} segments a job may have"
                ));
            }
        }
        if let Some(c) = self.segment_count {
            let end = self.segment_offset.unwrap_or(0).saturating_add(c);
            if c == 0 || end > MAX_SEGMENTS {
                return Err(format!(
                    "segment_count: {c} must be at least 1 and end within the {MAX_SEGMENTS} segments a job may have"
                ));
            }
        }
        if let Some(g) = &self.grid {
            g.validate().map_err(|e| format!("grid: {e}"))?;
        }
        if let Some(url) = &self.source_url {
            let shown = validate::truncate(url, 80);
            if url.len() > MAX_SOURCE_URL_LEN
                || !url.starts_with("http://")
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "source_url: {shown:?} is not an http:// URL without spaces of at most {MAX_SOURCE_URL_LEN} bytes"
                ));
            }
        }
        if let Some(e) = &self.encoder {
            if !H264_ENCODERS.contains(&e.as_str()) {
                return Err(format!(
                    "encoder: {e:?} is not one of {}",
                    H264_ENCODERS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Assigned,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    /// A finished job never changes state again.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A job's retained state on `.../jobs/{job_id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job_id: Uuid,
    pub state: JobState,
    /// Percent done, 0-100.
    #[serde(default)]
    pub progress: f64,
    /// Frames encoded per second right now.
    #[serde(default)]
    pub fps: f64,
    /// Where a player watches the stream, once the first segment exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Encoding speed as a multiple of real time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Seconds until done at the current speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// Why the job failed or was refused, as a sentence for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is, so the orchestrator knows whether a
    /// retry elsewhere can help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// Number of the next HLS segment: every segment before it is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_done: Option<u64>,
    /// Source time (seconds) where the next segment starts: where another
    /// worker resumes the job if this one is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_time: Option<f64>,
    /// The highest segment number this worker has served to a player: a
    /// run that replaces it starts right after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_segment: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// A split job's parts, as the orchestrator sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<ChunkStatus>>,
}

impl JobStatus {
    /// A status with only the job and its state set.
    pub fn new(job_id: Uuid, state: JobState) -> JobStatus {
        JobStatus {
            job_id,
            state,
            progress: 0.0,
            fps: 0.0,
            stream_url: None,
            worker_id: None,
            speed: None,
            eta_s: None,
            error: None,
            error_kind: None,
            segments_done: None,
            resume_time: None,
            served_segment: None,
            attempt: None,
            timestamp: None,
            chunks: None,
        }
    }
}

/// Why a job failed, for routing decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request or the source is at fault (missing, unreadable, corrupt,
    /// unsafe path): no other worker will do better; no retry.
    Input,
    /// The worker had no free slot and refused the job: send it elsewhere,
    /// without counting an attempt.
    Busy,
    /// FFmpeg or the machine failed: another worker may succeed.
    Worker,
    /// The worker was stopped (SIGTERM, a restart, an update) and handed
    /// the run back: it goes on elsewhere, and counts as no failure.
    Shutdown,
}

/// A request for a new job, on `transcode/jobs/submit` or `POST /api/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub source_path: String,
    pub resolution: Resolution,
    pub bitrate: Bitrate,
    #[serde(default)]
    pub start_time: f64,
    #[serde(default)]
    pub is_mesh_mode: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
}

impl JobRequest {
    pub fn validate(&self) -> Result<(), String> {
        validate::source_path(&self.source_path).map_err(|e| format!("source_path: {e}"))?;
        validate::start_time(self.start_time).map_err(|e| format!("start_time: {e}"))?;
        if self.job_id.is_some_and(|id| id.is_nil()) {
            return Err("job_id: the nil UUID is not a job id".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode;
    use crate::wire::seeds::{round_trip, SEED_ASSIGNMENT, SEED_STATUS};

    #[test]
    fn seed_assignment_round_trips() {
        let a: JobAssignment = round_trip(SEED_ASSIGNMENT);
        assert_eq!(a.resolution, Resolution::Named(1080));
        assert_eq!(a.bitrate, Bitrate(10_000_000));
        assert_eq!(a.attempt, 1);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn source_urls_are_plain_http() {
        let long = format!("http://a/{}", "x".repeat(MAX_SOURCE_URL_LEN));
        let cases = [
            ("http://udoo:8000/source/j/1/a.mkv?sig=00", true),
            ("https://udoo/source", false),
            ("file:/etc/passwd", false),
            ("concat:http://a|http://b", false),
            ("http://a/b c", false),
            ("http://a/b\nc", false),
            (long.as_str(), false),
        ];
        for (url, ok) in cases {
            let mut a: JobAssignment = round_trip(SEED_ASSIGNMENT);
            a.source_url = Some(url.to_string());
            assert_eq!(a.validate().is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn seed_status_round_trips() {
        let s: JobStatus = round_trip(SEED_STATUS);
        assert_eq!(s.state, JobState::Processing);
        assert_eq!(s.progress, 12.5);
        assert_eq!(s.fps, 48.0);
    }

    #[test]
    fn job_request_defaults() {
        let r: JobRequest =
            decode(br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"2500k"}"#).unwrap();
        assert_eq!(r.start_time, 0.0);
        assert!(!r.is_mesh_mode);
        assert_eq!(r.job_id, None);
    }
}
