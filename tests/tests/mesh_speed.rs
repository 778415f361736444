//! The speedup of a split job, alone in its test binary so that no other
//! test shares the two cores while it measures.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use transcode_tests::split::{
    assert_stream_whole, chunk_workers, chunks, request, JOB, ONE_THREAD,
};
use transcode_tests::{browser, decode, System};

/// Waits for the job to complete, asking once a second: a test that polls
/// faster takes CPU from the encoders, and only while both cores encode.
fn finished(sys: &System, id: &str) -> Value {
    let deadline = Instant::now() + JOB;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let job = sys.job(id);
        match job["state"].as_str() {
            Some("completed") => return job,
            Some("failed" | "cancelled") => panic!("job {id} ended otherwise: {job}"),
            _ => assert!(
                Instant::now() < deadline,
                "job {id} did not complete: {job}"
            ),
        }
    }
}

/// Seconds from submission to completion, by the orchestrator's clock.
fn wall_time(job: &Value) -> f64 {
    let at = |k: &str| job[k].as_u64().unwrap_or_else(|| panic!("{k} in {job}"));
    at("finished_at").saturating_sub(at("created_at")) as f64 / 1000.0
}

#[test]
fn two_one_thread_workers_finish_a_split_job_in_at_most_six_tenths_of_the_time() {
    browser::require_browser();
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 180);
    let _o = sys.start_orchestrator();
    let _a = sys.start_online("mesh-a", &ONE_THREAD);
    let _b = sys.start_online("mesh-b", &ONE_THREAD);

    let plain = sys.submit(&request("film.mkv", false));
    let plain_job = finished(&sys, &plain);
    let plain_s = wall_time(&plain_job);
    assert!(plain_job["chunks"].is_null(), "a plain job runs whole");

    let mesh = sys.submit(&request("film.mkv", true));
    let job = finished(&sys, &mesh);
    let mesh_s = wall_time(&job);
    let parts = chunks(&job);
    eprintln!(
        "plain {plain_s:.1} s, split {mesh_s:.1} s (×{:.2}) in {} chunks: {}",
        mesh_s / plain_s,
        parts.len(),
        parts
            .iter()
            .map(|c| format!(
                "{}:{}-{}",
                c["worker_id"].as_str().unwrap_or("?"),
                c["first_segment"],
                c["end_segment"]
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        mesh_s <= 0.6 * plain_s,
        "the split job took {mesh_s:.1} s, the plain one {plain_s:.1} s"
    );
    let ran: BTreeSet<String> = ["mesh-a", "mesh-b"].map(String::from).into();
    assert_eq!(chunk_workers(&job), ran, "{job}");
    let listed: BTreeSet<String> = job["workers"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(listed, ran, "workers lists every worker that ran a part");
    assert_eq!(job["progress"], 100.0);
    let completed = parts.iter().filter(|c| c["state"] == "completed").count();
    assert_stream_whole(&sys, &mesh, 180, completed.saturating_sub(1));
}
