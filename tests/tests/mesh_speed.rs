//! Two workers share a split job side by side, alone in its test binary so
//! that no other test shares the two cores while they encode.
//!
//! How much faster that makes the job is a speed goal, measured beside the
//! plain job's time by `./dev bench mesh-speedup`, not asserted here: this
//! test checks what cannot be noise, that both workers encoded at once for
//! nearly the whole job and that the joined stream is whole.

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

/// A chunk's span on the orchestrator's clock: from its assignment to its
/// worker's last word about it.
fn span(chunk: &Value) -> (u64, u64) {
    let at = |k: &str| {
        chunk[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {chunk}"))
    };
    (at("assigned_at"), at("updated_at"))
}

/// Milliseconds in which every worker in `workers` held a chunk at once.
fn overlap(parts: &[Value], workers: &[&str]) -> u64 {
    let mut edges: Vec<u64> = parts.iter().flat_map(|c| [span(c).0, span(c).1]).collect();
    edges.sort_unstable();
    edges.dedup();
    edges
        .windows(2)
        .filter(|w| {
            let mid = (w[0] + w[1]) / 2;
            workers.iter().all(|id| {
                parts.iter().any(|c| {
                    let (from, to) = span(c);
                    c["worker_id"] == *id && from <= mid && mid < to
                })
            })
        })
        .map(|w| w[1] - w[0])
        .sum()
}

#[test]
fn two_one_thread_workers_encode_a_split_job_side_by_side() {
    browser::require_browser();
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 180);
    let _o = sys.start_orchestrator();
    let _a = sys.start_online("mesh-a", &ONE_THREAD);
    let _b = sys.start_online("mesh-b", &ONE_THREAD);

    let mesh = sys.submit(&request("film.mkv", true));
    let job = finished(&sys, &mesh);
    let at = |k: &str| job[k].as_u64().unwrap_or_else(|| panic!("{k} in {job}"));
    let wall = at("finished_at").saturating_sub(at("created_at"));
    let parts = chunks(&job);
    let both = overlap(&parts, &["mesh-a", "mesh-b"]);
    eprintln!(
        "split job {:.1} s, both workers encoding for {:.1} s ({:.0} %) in {} chunks: {}",
        wall as f64 / 1000.0,
        both as f64 / 1000.0,
        100.0 * both as f64 / wall.max(1) as f64,
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
    // Only the first chunk runs alone (until its first segment is on the
    // playlist, about one segment's encode) and the last may end alone:
    // the rest of the job, both workers encode. Serial chunks give 0 %.
    assert!(
        both * 4 >= wall * 3,
        "both workers encoded at once for only {both} ms of the job's {wall} ms: {job}"
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
