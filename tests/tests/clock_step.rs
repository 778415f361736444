//! A wall-clock step moves no deadline. A board without a real-time clock
//! syncs NTP after it booted and its clock jumps by days: the orchestrator
//! (run here under libfaketime, whose offset the test changes while it
//! runs) neither prunes a finished job early nor takes a running job for
//! stalled, because it counts every deadline on the monotonic clock.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use transcode_tests::{decode, env, make_media, System};

/// libfaketime's library for multithreaded programs (`./dev setup`
/// installs the faketime package).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("libfaketime is not installed: run ./dev setup (or apt-get install faketime)")
    })
}

#[test]
fn a_wall_clock_step_of_two_days_prunes_nothing_and_requeues_nothing() {
    let mut sys = System::new();
    let offset = sys.dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("offset file");
    sys.orchestrator_env.extend([
        env("LD_PRELOAD", libfaketime().display().to_string()),
        env("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
        env("FAKETIME_NO_CACHE", "1"),
        env("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        // Finished jobs are kept an hour; a run silent for 20 s is stalled.
        env("TRANSCODE_STATE__RETENTION_S", "3600"),
        env("TRANSCODE_SCHEDULER__STALL_TIMEOUT_S", "20"),
    ]);
    make_media(&sys.dir.path().join("media/clip.mkv"), 320, 240, 2, true);
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 32);
    let o = sys.start_orchestrator();
    let _w = sys.start_online("steady", &[("TRANSCODE_TRANSCODE__THREADS", "1")]);

    let finished =
        sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&finished, "completed", Duration::from_secs(60));
    let running =
        sys.submit(&json!({"source_path": "film.mkv", "resolution": "720p", "bitrate": "2M"}));
    let before = sys.wait_job(&running, "processing", Duration::from_secs(60));

    // Two days later, by the orchestrator's wall clock (its log lines say
    // so: their dates come from it).
    let day = |line: &str| line.get(..10).map(str::to_string);
    let first_day = o.log().lines().find_map(day).expect("a dated log line");
    std::fs::write(&offset, "+2d\n").expect("offset file");
    let done = sys.wait_job(&running, "completed", Duration::from_secs(240));
    let last_day = o
        .log()
        .lines()
        .rev()
        .filter(|l| l.contains("job completed"))
        .find_map(day)
        .expect("the completion logged");
    eprintln!("the orchestrator's clock went from {first_day} to {last_day}");
    assert!(last_day > first_day, "the clock did not step");
    assert!(
        done["updated_at"].as_u64() < before["updated_at"].as_u64().map(|t| t + 3_600_000),
        "timestamps count from the clock at start: {done}"
    );
    assert_eq!(done["attempt"], 1, "not taken for stalled: {done}");
    assert_eq!(
        sys.job(&finished)["state"],
        "completed",
        "a job finished minutes ago is not pruned"
    );
    assert_eq!(o.log_lines_with(&["pruned"]), 0, "{}", o.log());
    assert_eq!(o.log_lines_with(&["requeued"]), 0, "{}", o.log());
}
