//! The speedup of a split job, alone in its test binary so that no other
//! test shares the two cores while it measures.

use std::collections::BTreeSet;
use std::time::Instant;

use transcode_tests::split::{
    assert_stream_whole, chunk_workers, chunks, request, JOB, ONE_THREAD,
};
use transcode_tests::{browser, decode, System};

#[test]
fn two_one_thread_workers_finish_a_split_job_in_at_most_six_tenths_of_the_time() {
    browser::require_browser();
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 180);
    let _o = sys.start_orchestrator();
    let _a = sys.start_online("mesh-a", &ONE_THREAD);
    let _b = sys.start_online("mesh-b", &ONE_THREAD);

    let started = Instant::now();
    let plain = sys.submit(&request("film.mkv", false));
    let plain_job = sys.wait_job(&plain, "completed", JOB);
    let plain_s = started.elapsed().as_secs_f64();
    assert!(plain_job["chunks"].is_null(), "a plain job runs whole");

    let started = Instant::now();
    let mesh = sys.submit(&request("film.mkv", true));
    let job = sys.wait_job(&mesh, "completed", JOB);
    let mesh_s = started.elapsed().as_secs_f64();
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
