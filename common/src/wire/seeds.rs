//! The seed document's example payloads, and the round trip every payload
//! type must survive with the seed's fields intact (test only).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode};

pub(super) const SEED_HEARTBEAT: &str = r#"{
  "worker_id": "gaming-pc-room",
  "ip_address": "192.168.1.50",
  "port": 8080,
  "os": "windows",
  "hw_accel": ["nvenc", "cuda", "d3d11va"],
  "status": "idle",
  "cpu_usage": 5
}"#;

pub(super) const SEED_ASSIGNMENT: &str = r#"{
  "job_id": "550e8400-e29b-41d4-a716-446655440000",
  "source_path": "movies/sci-fi/interstellar.mkv",
  "resolution": "1080p",
  "bitrate": "10M",
  "start_time": 0,
  "is_mesh_mode": false
}"#;

pub(super) const SEED_STATUS: &str = r#"{
  "job_id": "550e8400-e29b-41d4-a716-446655440000",
  "state": "processing",
  "progress": 12.5,
  "fps": 48,
  "stream_url": "http://192.168.1.50:8080/hls/interstellar/index.m3u8"
}"#;

pub(super) fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    seed: &str,
) -> T {
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
