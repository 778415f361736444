//! The JSON payloads on the MQTT topics (see SPEC.md, "Payloads").
//!
//! The seed document's fields are kept verbatim; every later field is
//! optional on input so that older or foreign publishers still parse, and
//! skipped on output when it has no value. Decoding untrusted bytes goes
//! through [`decode`], which bounds the size, checks UTF-8 and names the field
//! that is wrong.
//!
//! This file holds [`encode`] and [`decode`]; the payloads live beside it
//! by concern, all re-exported here: `worker` (the heartbeat), `job` (request,
//! assignment, status), `limits` (the bounds of a status), `stream` (the frame
//! grid and segment reports), `orders` (stop orders, counters), `media` (the
//! library listing), `access` (the broker's refusals), `api` (the HTTP API's
//! answers as clients read them).

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

mod access;
mod api;
mod job;
mod limits;
mod media;
mod orders;
#[cfg(test)]
mod seeds;
mod stream;
mod worker;
pub use access::{speaker_of, Refusal};
pub use api::*;
pub use job::{
    ErrorKind, JobAssignment, JobRequest, JobState, JobStatus, H264_ENCODERS, MAX_SOURCE_URL_LEN,
};
pub use limits::{MAX_FPS, MAX_MEDIA_SECONDS, MAX_SPEED, MAX_TEXT};
pub use media::{MediaEntry, MediaKind, MediaListing};
pub use orders::{CancelOrder, OrchestratorStats};
pub use stream::{
    ChunkStatus, Grid, OutputAction, OutputCommand, SegmentInfo, SegmentReport,
    MAX_REPORT_SEGMENTS, MAX_SEGMENTS, MAX_SEGMENT_SECONDS,
};
pub use worker::{FinishedRun, Heartbeat, Idle, IdleJob, Os, WorkerStatus, MAX_FINISHED_RUNS};

/// Largest payload any of our topics carries; anything bigger is refused
/// before parsing. Real heartbeats are under 2 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

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
}
