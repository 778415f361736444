//! The orchestrator's state folder on a full disk: its store cannot be
//! written. New jobs get a `503` that says why, `/healthz` says it too,
//! nothing is dispatched and nothing half-done is published; once there is
//! room again, every job it had completes, exactly once, and a refused
//! request sent again is taken once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use transcode_tests::{decode, http_json, wait_until, System};

/// A small tmpfs mounted over a folder for the test's life (the test runs
/// as root, as CI does; the mount goes when it is dropped, also on a panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stdin(Stdio::null())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (the test needs root)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process of the test may still hold a file there.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stdin(Stdio::null())
            .status();
    }
}

/// Fills the file system of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn health(sys: &System) -> (u16, Value) {
    http_json("GET", &sys.api("/healthz"), None)
}

/// Waits until the orchestrator has seen `n` heartbeats in a row that say
/// the worker is idle.
fn idle_heartbeats(sys: &System, worker: &str, n: usize) {
    let mut seen: Vec<u64> = Vec::new();
    wait_until(
        Duration::from_secs(30),
        &format!("{n} idle heartbeats of {worker}"),
        || {
            let hb = sys.worker(worker)?["heartbeat"].clone();
            match (hb["status"].as_str(), hb["timestamp"].as_u64()) {
                (Some("idle"), Some(t)) if !seen.contains(&t) => seen.push(t),
                (Some("idle"), _) => {}
                _ => seen.clear(),
            }
            (seen.len() >= n).then_some(())
        },
    );
}

fn request(source: &str, job_id: &str) -> Value {
    json!({"source_path": source, "resolution": "480p", "bitrate": "1M", "job_id": job_id})
}

#[test]
fn a_full_state_disk_takes_no_job_dispatches_nothing_and_loses_nothing() {
    let sys = System::new();
    let _mount = Tmpfs::mount(&sys.state_dir(), "16m");
    // One one-slot worker: the second job waits in the queue.
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 24);
    let o = sys.start_orchestrator();
    let w = sys.start_online("solo", &[("TRANSCODE_TRANSCODE__THREADS", "1")]);

    let running = "00000000-0000-4000-8000-0000000000a1";
    let waiting = "00000000-0000-4000-8000-0000000000a2";
    sys.submit(&request("film.mkv", running));
    sys.wait_job(running, "processing", Duration::from_secs(60));
    sys.submit(&request("film.mkv", waiting));
    assert_eq!(sys.job(waiting)["state"], "queued");

    // The disk fills while the first job runs.
    let filler = fill(&sys.state_dir());
    let refused = "00000000-0000-4000-8000-0000000000a3";
    let (code, body) = wait_until(
        Duration::from_secs(10),
        "a submission refused for the full disk",
        || {
            let body = serde_json::to_vec(&request("film.mkv", refused)).ok()?;
            let (code, answer) = http_json("POST", &sys.api("/api/jobs"), Some(&body));
            (code != 202).then_some((code, answer))
        },
    );
    assert_eq!(code, 503, "{body}");
    let sentence = body["error"].as_str().unwrap_or_default();
    assert!(
        sentence.contains("cannot write its job store") && sentence.contains("try again"),
        "{sentence}"
    );
    let (code, why) = health(&sys);
    assert_eq!(code, 503, "{why}");
    assert!(
        why["store"]
            .as_str()
            .is_some_and(|s| s.contains("No space left")),
        "{why}"
    );
    assert!(
        sys.job(refused).is_null() || sys.job(refused)["error"].is_string(),
        "a refused job is not there"
    );

    // The first job finishes on the worker; the orchestrator cannot write
    // that down, so the waiting job is not dispatched.
    wait_until(
        Duration::from_secs(120),
        "the worker to finish the first job",
        || w.log().contains("job completed").then_some(()),
    );
    // Two idle heartbeats later (the core dispatches on each, and ticks
    // between them) the waiting job still waits, and ran nowhere.
    idle_heartbeats(&sys, "solo", 2);
    assert_eq!(sys.job(waiting)["state"], "queued", "{}", sys.job(waiting));
    assert!(
        !w.log()
            .lines()
            .any(|l| l.contains("starting FFmpeg") && l.contains(waiting)),
        "dispatched while the store could not be written"
    );

    // Room again: everything completes, once.
    std::fs::remove_file(&filler).expect("filler removed");
    wait_until(Duration::from_secs(20), "a healthy orchestrator", || {
        (health(&sys).0 == 200).then_some(())
    });
    let body = serde_json::to_vec(&request("film.mkv", refused)).expect("json");
    let (code, answer) = http_json("POST", &sys.api("/api/jobs"), Some(&body));
    assert_eq!(code, 202, "the refused request sent again: {answer}");
    for id in [running, waiting, refused] {
        let done = sys.wait_job(id, "completed", Duration::from_secs(180));
        assert_eq!(done["attempt"], 1, "one run: {done}");
        let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
        decode::assert_seamless(&d, 30.0, 720, 0, 24.0);
    }
    let log = w.log();
    for id in [running, waiting, refused] {
        let runs = log
            .lines()
            .filter(|l| l.contains("starting FFmpeg") && l.contains(id))
            .count();
        assert_eq!(runs, 1, "job {id} ran {runs} times");
    }
    let jobs = transcode_tests::get_json(&sys.api("/api/jobs")).expect("jobs");
    assert_eq!(jobs.as_array().map(Vec::len), Some(3), "{jobs}");
    assert!(o.log().contains("the job store takes writes again"));
}
