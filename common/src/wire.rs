//! The JSON payloads on the MQTT topics (see SPEC.md, "Payloads").
//!
//! The seed document's fields are kept verbatim; every later field is
//! optional on input so that older or foreign publishers still parse, and
//! skipped on output when it has no value. Decoding untrusted bytes goes
//! through [`decode`], which bounds the size, checks UTF-8 and names the field
//! that is wrong.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate::{self, Bitrate, Resolution};

mod access;
mod api;
mod limits;
mod media;
mod orders;
mod stream;
pub use access::{speaker_of, Refusal};
pub use api::*;
pub use limits::{MAX_FPS, MAX_MEDIA_SECONDS, MAX_SPEED, MAX_TEXT};
pub use media::{MediaEntry, MediaKind, MediaListing};
pub use orders::{CancelOrder, OrchestratorStats};
pub use stream::{
    ChunkStatus, Grid, OutputAction, OutputCommand, SegmentInfo, SegmentReport,
    MAX_REPORT_SEGMENTS, MAX_SEGMENTS, MAX_SEGMENT_SECONDS,
};

/// Largest payload any of our topics carries; anything bigger is refused
/// before parsing. Real heartbeats are under 2 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

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

/// Why a payload could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("payload is {0} bytes, more than the {MAX_PAYLOAD_BYTES} allowed")]
    TooLarge(usize),
    #[error("payload is empty")]
    Empty,
    #[error("payload is not valid UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

/// Decodes untrusted bytes into a payload type, naming the field that is
/// wrong (`bitrate: ...`, `cpu_usage: invalid type ...`).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::NotUtf8)?;
    // Every payload of ours is an object; serde would also read a struct
    // from an array, with a message nobody understands.
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::Json(
            "expected a JSON object like {\"field\": value, ...}".into(),
        ));
    }
    // Most payloads are fine: read them without tracking the path, and
    // read a bad one again to say where it went wrong (a thousand
    // heartbeats a second go the fast way).
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_str(text)) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = strip_position(&inner);
        if path == "." || path.is_empty() {
            DecodeError::Json(msg)
        } else {
            DecodeError::Json(format!("{path}: {msg}"))
        }
    })
}

/// serde_json appends "at line 1 column 42"; a person wants the field, not
/// the column.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => text[..i].to_string(),
        _ => text,
    }
}

/// The job id of a payload that could not be used otherwise, if one can be
/// read, so the refusal can be answered on that job's status topic.
pub fn job_id_of(payload: &[u8]) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Uuid::parse_str(value.get("job_id")?.as_str()?).ok()
}

/// Encodes a payload. Our types always serialize; the fallback keeps a
/// caller's publish path free of panics all the same.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_HEARTBEAT: &str = r#"{
  "worker_id": "gaming-pc-room",
  "ip_address": "192.168.1.50",
  "port": 8080,
  "os": "windows",
  "hw_accel": ["nvenc", "cuda", "d3d11va"],
  "status": "idle",
  "cpu_usage": 5
}"#;

    const SEED_ASSIGNMENT: &str = r#"{
  "job_id": "550e8400-e29b-41d4-a716-446655440000",
  "source_path": "movies/sci-fi/interstellar.mkv",
  "resolution": "1080p",
  "bitrate": "10M",
  "start_time": 0,
  "is_mesh_mode": false
}"#;

    const SEED_STATUS: &str = r#"{
  "job_id": "550e8400-e29b-41d4-a716-446655440000",
  "state": "processing",
  "progress": 12.5,
  "fps": 48,
  "stream_url": "http://192.168.1.50:8080/hls/interstellar/index.m3u8"
}"#;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(seed: &str) -> T {
        let parsed: T = decode(seed.as_bytes()).expect("seed example parses");
        let again: T = decode(&encode(&parsed)).expect("re-encoded example parses");
        assert_eq!(parsed, again);
        // Every field of the seed is still there, with the same JSON type.
        let seed_json: serde_json::Value = serde_json::from_str(seed).unwrap();
        let out_json: serde_json::Value = serde_json::to_value(&parsed).unwrap();
        for (key, value) in seed_json.as_object().unwrap() {
            let out = &out_json[key];
            assert_eq!(
                std::mem::discriminant(value),
                std::mem::discriminant(out),
                "field {key}: {value} became {out}"
            );
            if !value.is_number() {
                assert_eq!(value, out, "field {key}");
            } else {
                assert_eq!(value.as_f64(), out.as_f64(), "field {key}");
            }
        }
        parsed
    }

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

    #[test]
    fn bad_payloads_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"not json", "expected"),
            (&[0xff, 0xfe, b'{'], "UTF-8"),
            (br#"{"worker_id":"a","ip_address":"x","port":"eighty","os":"linux","hw_accel":[],"status":"idle","cpu_usage":1}"#, "port"),
            (br#"{"worker_id":"a","ip_address":"x","port":80,"os":"linux","hw_accel":[],"status":"sleeping","cpu_usage":1}"#, "status"),
            (br#"{"worker_id":"a","ip_address":"x","port":80,"os":"linux","hw_accel":"nvenc","status":"idle","cpu_usage":1}"#, "hw_accel"),
            (br#"{"worker_id":"a","ip_address":"x","port":80,"os":"linux","hw_accel":[],"status":"idle"}"#, "cpu_usage"),
            (br#"[1,2,3]"#, "expected"),
        ];
        for (payload, needle) in cases {
            let err = decode::<Heartbeat>(payload).expect_err("must be refused");
            assert!(
                err.to_string().contains(needle),
                "{:?}: {err} should mention {needle}",
                String::from_utf8_lossy(payload)
            );
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode::<Heartbeat>(&big),
            Err(DecodeError::TooLarge(MAX_PAYLOAD_BYTES + 1))
        );
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
    fn job_ids_are_found_in_bad_payloads() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        let cases: Vec<(String, bool)> = vec![
            (format!(r#"{{"job_id":"{id}","resolution":"999p"}}"#), true),
            (format!(r#"{{"job_id":"{id}"}}"#), true),
            (r#"{"job_id":"not-a-uuid"}"#.to_string(), false),
            (r#"{"job_id":5}"#.to_string(), false),
            ("CANCEL".to_string(), false),
            ("".to_string(), false),
        ];
        for (payload, found) in cases {
            assert_eq!(job_id_of(payload.as_bytes()).is_some(), found, "{payload}");
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
