//! Helpers for split-job (`is_mesh_mode`) tests: requests, the chunks of
//! a job's API view, and the check that a finished stream is whole.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{browser, decode, System};

pub const JOB: Duration = Duration::from_secs(400);
pub const FPS: f64 = 30.0;
/// Workers that use one thread each: two of them fit the test machine's
/// two cores, and a speedup is the mesh's, not FFmpeg's.
pub const ONE_THREAD: [(&str, &str); 1] = [("TRANSCODE_TRANSCODE__THREADS", "1")];

pub fn request(source: &str, mesh: bool) -> Value {
    json!({"source_path": source, "resolution": "720p", "bitrate": "2M", "is_mesh_mode": mesh})
}

pub fn chunks(job: &Value) -> Vec<Value> {
    job["chunks"].as_array().cloned().unwrap_or_default()
}

/// The workers whose chunks completed.
pub fn chunk_workers(job: &Value) -> BTreeSet<String> {
    chunks(job)
        .iter()
        .filter(|c| c["state"] == "completed")
        .filter_map(|c| c["worker_id"].as_str().map(str::to_string))
        .collect()
}

/// Decodes the job's playlist through the orchestrator and plays it to
/// the end in hls.js: the source's frames, joins without gaps, its length.
pub fn assert_stream_whole(sys: &System, id: &str, seconds: u32, joins: usize) {
    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    let d = decode::decode(&url);
    decode::log_joins(&d);
    let frames = (seconds as f64 * FPS) as usize;
    decode::assert_seamless(&d, FPS, frames, joins, seconds as f64);
    let played = browser::play(&url, 16.0, Duration::from_secs(120), sys.dir.path());
    eprintln!("played: {played:?}");
    assert!(played.fatal_errors.is_empty(), "{:?}", played.fatal_errors);
    assert!(
        played.ended,
        "playback stopped at {:.1} s",
        played.current_time
    );
    assert!(
        (played.duration - seconds as f64).abs() < 0.5,
        "{}",
        played.duration
    );
}
