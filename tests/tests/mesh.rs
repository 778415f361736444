//! Split jobs (`is_mesh_mode`): one film encoded in chunks by several
//! workers at once, joined on one playlist that decodes frame for frame and
//! plays to the end in hls.js, also when a worker dies mid-job.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use transcode_tests::split::{
    assert_stream_whole, chunk_workers, chunks, request, JOB, ONE_THREAD,
};
use transcode_tests::{browser, decode};
use transcode_tests::{children_named, http_json, http_raw, mqtt, wait_until, System};

const FPS: f64 = 30.0;

#[test]
fn a_split_job_survives_a_worker_killed_mid_job() {
    browser::require_browser();
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 60);
    let _o = sys.start_orchestrator();
    let _a = sys.start_online("keeper", &ONE_THREAD);
    let mut b = sys.start_online("doomed", &ONE_THREAD);
    let id = sys.submit(&request("film.mkv", true));
    // The doomed worker holds a finished chunk and runs another one.
    wait_until(JOB, "a finished and a running chunk on one worker", || {
        let job = sys.job(&id);
        let mine = |state: &str| {
            chunks(&job)
                .iter()
                .any(|c| c["worker_id"] == "doomed" && c["state"] == state)
        };
        (mine("completed") && mine("processing")).then_some(())
    });
    b.signal(Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(5));
    let job = sys.wait_job(&id, "completed", JOB);
    let parts = chunks(&job);
    eprintln!("chunks: {parts:?}");
    assert!(
        parts
            .iter()
            .any(|c| c["worker_id"] == "doomed" && c["state"] == "failed"),
        "the killed worker's chunk is lost: {job}"
    );
    let completed = parts.iter().filter(|c| c["state"] == "completed").count();
    assert_stream_whole(&sys, &id, 60, completed.saturating_sub(1));
}

#[test]
fn a_split_job_waits_for_a_worker_and_runs_on_one_like_a_plain_job() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/clip.mkv"), 24);
    let _o = sys.start_orchestrator();
    let id = sys.submit(&request("clip.mkv", true));
    let job = sys.job(&id);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["is_mesh_mode"], true);
    assert_eq!(
        http_raw(sys.http_port, &format!("/stream/{id}/index.m3u8")).0,
        503
    );
    let _w = sys.start_online("solo", &[]);
    let job = sys.wait_job(&id, "completed", JOB);
    assert_eq!(job["workers"], json!(["solo"]));
    assert_eq!(
        chunk_workers(&job),
        BTreeSet::from(["solo".to_string()]),
        "{job}"
    );
    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    let d = decode::decode(&url);
    decode::log_joins(&d);
    let joins = chunks(&job).len().saturating_sub(1);
    decode::assert_seamless(&d, FPS, 720, joins, 24.0);
}

#[test]
fn strangers_cannot_speak_for_a_chunk_and_cancel_stops_every_chunk() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 120);
    let o = sys.start_orchestrator();
    let a = sys.start_online("left", &ONE_THREAD);
    let b = sys.start_online("right", &ONE_THREAD);
    let id = sys.submit(&request("film.mkv", true));
    let running = wait_until(JOB, "a chunk running on each worker", || {
        let job = sys.job(&id);
        let on = |w: &str| {
            chunks(&job)
                .iter()
                .any(|c| c["worker_id"] == w && c["state"] == "processing")
        };
        (on("left") && on("right")).then_some(job)
    });
    let chunk = chunks(&running)
        .into_iter()
        .find(|c| c["worker_id"] == "left" && c["state"] == "processing")
        .expect("left's chunk");
    let attempt = chunk["attempt"].as_u64().expect("attempt");
    // Chunk statuses are on the broker for anyone to watch.
    let seen = mqtt::sub(
        sys.broker_port,
        &[&format!("transcode/jobs/{id}/chunks/+")],
        1,
        Duration::from_secs(10),
    );
    assert!(!seen.is_empty(), "retained chunk statuses");

    let status = |worker: &str, attempt: u64, state: &str| {
        json!({"job_id": id, "state": state, "worker_id": worker, "attempt": attempt,
               "progress": 100, "segments_done": 30})
        .to_string()
    };
    let cases = [
        (
            format!("transcode/jobs/{id}/chunks/{attempt}"),
            status("intruder", attempt, "completed"),
            "does not hold chunk".to_string(),
        ),
        (
            format!("transcode/jobs/{id}/chunks/999"),
            status("left", 999, "completed"),
            "has no chunk 999".to_string(),
        ),
        (
            format!("transcode/jobs/{id}/chunks/{attempt}"),
            status("left", attempt + 1, "completed"),
            "not those of its topic".to_string(),
        ),
        (
            format!("transcode/jobs/{id}/chunks/x"),
            status("left", attempt, "completed"),
            "names no job id and attempt".to_string(),
        ),
        (
            format!("transcode/jobs/{id}/status"),
            status("left", attempt, "completed"),
            "is split into chunks".to_string(),
        ),
    ];
    for (topic, payload, needle) in &cases {
        assert!(mqtt::publish(
            sys.broker_port,
            topic,
            payload.as_bytes(),
            false
        ));
        wait_until(
            Duration::from_secs(10),
            &format!("a log line saying {needle:?}"),
            || (o.log_lines_with(&["refused", needle]) > 0).then_some(()),
        );
    }
    let job = sys.job(&id);
    let same = chunks(&job)
        .into_iter()
        .find(|c| c["attempt"] == attempt)
        .expect("the chunk");
    assert_eq!(same["state"], "processing", "nothing changed: {job}");
    assert_eq!(same["worker_id"], "left");

    // Cancel stops every chunk.
    let (code, _) = http_json("DELETE", &sys.api(&format!("/api/jobs/{id}")), None);
    assert_eq!(code, 200);
    wait_until(Duration::from_secs(20), "no FFmpeg left running", || {
        (children_named(a.pid(), "ffmpeg").is_empty()
            && children_named(b.pid(), "ffmpeg").is_empty())
        .then_some(())
    });
    let job = sys.job(&id);
    assert_eq!(job["state"], "cancelled");
    assert!(
        chunks(&job)
            .iter()
            .all(|c| c["state"] != "processing" && c["state"] != "assigned"),
        "{job}"
    );
}
