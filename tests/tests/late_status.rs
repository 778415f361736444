//! A finished job is never run again because of a late status: a worker's
//! final status travels on the job's topic, its heartbeat on its own, and
//! the heartbeat that no longer lists the run may arrive first. Here a
//! proxy between the worker and the broker holds every `completed` back
//! for 6 s (twice the grace the orchestrator gives an unlisted run) while
//! heartbeats pass: the job completes once, on its first run.

use std::time::Duration;

use serde_json::json;
use transcode_tests::mqtt_proxy::{Hold, Reorder};
use transcode_tests::{make_media, System};

#[test]
fn a_completed_status_overtaken_by_heartbeats_completes_the_job_once() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/clip.mkv"), 640, 360, 6, true);
    let o = sys.start_orchestrator();
    let proxy = Reorder::start(
        sys.broker_port,
        Hold {
            topic: "/status".into(),
            payload: "\"completed\"".into(),
            delay: Duration::from_secs(6),
        },
    );
    let w = sys.start_worker(
        "late",
        &[(
            "TRANSCODE_BROKER__URL",
            &format!("mqtt://127.0.0.1:{}", proxy.port),
        )],
    );
    sys.wait_online("late", true, Duration::from_secs(30));
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    let done = sys.wait_job(&id, "completed", Duration::from_secs(120));
    assert!(proxy.held() >= 1, "the completed status was not held back");
    assert_eq!(done["attempt"], 1, "run once: {done}");
    assert_eq!(done["failures"], 0, "{done}");
    assert_eq!(w.log_lines_with(&["starting FFmpeg"]), 1, "{}", w.log());
    assert_eq!(o.log_lines_with(&["requeued"]), 0, "{}", o.log());
}
