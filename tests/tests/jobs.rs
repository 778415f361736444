//! The orchestrator's reason to exist: jobs in over HTTP and MQTT, routed
//! to the best idle worker in order, never lost, resumed elsewhere when a
//! machine dies, never run twice, and one stable stream URL for the player.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use transcode_tests::{
    children_named, env, ffprobe, http_json, http_raw, make_media, mqtt, wait_until, System,
};

const JOB: Duration = Duration::from_secs(180);

fn request(source: &str) -> Value {
    json!({"source_path": source, "resolution": "720p", "bitrate": "1M"})
}

#[test]
fn five_jobs_on_two_one_slot_workers_run_in_order_never_two_at_once() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/clip.mkv"), 1280, 720, 8, true);
    let _o = sys.start_orchestrator();
    let a = sys.start_online("a", &[]);
    let b = sys.start_online("b", &[]);

    let ids: Vec<String> = (0..5).map(|_| sys.submit(&request("clip.mkv"))).collect();
    let deadline = Instant::now() + JOB;
    loop {
        for w in [&a, &b] {
            let running = children_named(w.pid(), "ffmpeg").len();
            assert!(running <= 1, "{} runs {running} FFmpeg at once", w.name);
        }
        // One snapshot (the orchestrator answers under one lock): jobs read
        // one by one could show a finished run still processing beside the
        // next one already assigned.
        let all: Vec<Value> = transcode_tests::get_json(&sys.api("/api/jobs"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let jobs: Vec<Value> = ids
            .iter()
            .map(|id| {
                all.iter()
                    .find(|j| j["job_id"].as_str() == Some(id.as_str()))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        for w in ["a", "b"] {
            let held = jobs
                .iter()
                .filter(|j| {
                    j["worker_id"] == w
                        && ["assigned", "processing"].contains(&j["state"].as_str().unwrap_or(""))
                })
                .count();
            assert!(held <= 1, "worker {w} holds {held} jobs: {jobs:?}");
        }
        if jobs.iter().all(|j| j["state"] == "completed") {
            // Started in submission order, each once.
            let started: Vec<u64> = jobs
                .iter()
                .map(|j| j["started_at"].as_u64().expect("started_at"))
                .collect();
            let assigned: Vec<&Value> = jobs.iter().map(|j| &j["workers"]).collect();
            for pair in started.windows(2) {
                assert!(
                    pair[0] <= pair[1] + 500,
                    "not in submission order: {started:?}"
                );
            }
            for j in &jobs {
                assert_eq!(j["attempt"], 1, "{j}");
            }
            assert!(
                assigned.iter().any(|w| *w == &json!(["a"]))
                    && assigned.iter().any(|w| *w == &json!(["b"])),
                "both workers worked: {assigned:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not complete: {jobs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_worker_s_job_resumes_on_the_idle_one_after_its_last_segment() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/film.mkv"), 1920, 1080, 40, true);
    let _o = sys.start_orchestrator();
    let mut first = sys.start_online("first", &[]);
    let id = sys.submit(&request("film.mkv"));
    let running = wait_until(JOB, "two complete segments on the first worker", || {
        let j = sys.job(&id);
        (j["state"] == "processing" && j["segments_done"].as_u64()? >= 2).then_some(j)
    });
    assert_eq!(running["worker_id"], "first");
    let _second = sys.start_online("second", &[]);

    let killed = Instant::now();
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let moved = wait_until(
        Duration::from_secs(5),
        "the job processing on the second worker",
        || {
            let j = sys.job(&id);
            (j["state"] == "processing" && j["worker_id"] == "second").then_some(j)
        },
    );
    eprintln!(
        "job processing on the second worker {:?} after the SIGKILL",
        killed.elapsed()
    );
    assert_eq!(moved["attempt"], 2);
    // Nobody watched: the new run starts at the first segment whose holder
    // is gone, on the grid of the first run.
    assert_eq!(moved["run_from"], 0, "{moved}");
    assert!(
        moved["grid"]["segment_frames"].as_u64().is_some(),
        "{moved}"
    );

    let done = sys.wait_job(&id, "completed", JOB);
    assert_eq!(done["workers"], json!(["first", "second"]));
    // The player's stable URL is the orchestrator's playlist: every segment
    // leads to the worker that holds it now.
    let (code, _, body) = http_raw(sys.http_port, &format!("/stream/{id}/index.m3u8"));
    assert_eq!(code, 200);
    let playlist = String::from_utf8_lossy(&body).to_string();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let (streams, duration) = ffprobe(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert!((duration - 40.0).abs() <= 0.5, "{duration} {streams:?}");
}

#[test]
fn the_orchestrator_killed_with_one_job_running_and_two_queued_loses_none() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/clip.mkv"), 1280, 720, 12, true);
    let mut orchestrator = sys.start_orchestrator();
    let worker = sys.start_online("solo", &[]);
    let ids: Vec<String> = (0..3).map(|_| sys.submit(&request("clip.mkv"))).collect();
    sys.wait_job(&ids[0], "processing", JOB);
    assert_eq!(sys.job(&ids[1])["state"], "queued");
    // While it is down the stable URL does not answer; after, queued jobs
    // say when to retry.
    orchestrator.signal(Signal::SIGKILL);
    orchestrator.wait_exit(Duration::from_secs(5));
    let _orchestrator = sys.start_orchestrator();
    let (code, headers, _) = http_raw(sys.http_port, &format!("/stream/{}/index.m3u8", ids[2]));
    assert_eq!(code, 503);
    assert!(
        headers.iter().any(|(k, _)| k == "retry-after"),
        "{headers:?}"
    );

    for id in &ids {
        let done = sys.wait_job(id, "completed", JOB);
        assert_eq!(done["attempt"], 1, "run once: {done}");
        assert_eq!(done["workers"], json!(["solo"]), "{done}");
    }
    assert_eq!(
        worker.log_lines_with(&["starting FFmpeg"]),
        3,
        "three runs in all"
    );
    let all = transcode_tests::get_json(&sys.api("/api/jobs")).expect("jobs");
    assert_eq!(all.as_array().map(Vec::len), Some(3));
}

#[test]
fn a_frozen_worker_s_job_moves_and_its_copy_stops_when_it_thaws() {
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_SCHEDULER__HEARTBEAT_TIMEOUT_S", "3"));
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 60, false);
    let _o = sys.start_orchestrator();
    let frozen = sys.start_online("frozen", &[]);
    let id = sys.submit(&request("long.mkv"));
    sys.wait_job(&id, "processing", JOB);
    let _other = sys.start_online("other", &[]);

    frozen.signal(Signal::SIGSTOP);
    let moved = wait_until(
        Duration::from_secs(15),
        "the job processing on the other worker",
        || {
            let j = sys.job(&id);
            (j["state"] == "processing" && j["worker_id"] == "other").then_some(j)
        },
    );
    assert_eq!(moved["attempt"], 2);
    assert_eq!(
        children_named(frozen.pid(), "ffmpeg").len(),
        1,
        "the frozen copy still exists"
    );

    let thawed = Instant::now();
    frozen.signal(Signal::SIGCONT);
    wait_until(
        Duration::from_secs(10),
        "the thawed worker to stop its copy",
        || {
            children_named(frozen.pid(), "ffmpeg")
                .is_empty()
                .then_some(())
        },
    );
    eprintln!(
        "the thawed worker stopped its copy after {:?}",
        thawed.elapsed()
    );
    assert!(frozen.log_lines_with(&["moved this job elsewhere"]) >= 1);
    let j = sys.job(&id);
    assert_eq!(
        (j["state"].as_str(), j["worker_id"].as_str()),
        (Some("processing"), Some("other")),
        "{j}"
    );
    let (code, _) = http_json("DELETE", &sys.api(&format!("/api/jobs/{id}")), None);
    assert_eq!(code, 200);
}

#[test]
fn invalid_requests_get_a_400_that_names_the_problem() {
    let sys = System::new();
    let _o = sys.start_orchestrator();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "JSON object"),
        (b"".to_vec(), "empty"),
        (b"[]".to_vec(), "JSON object"),
        (b"null".to_vec(), "JSON object"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M""#.to_vec(), "EOF"),
        (b"{}".to_vec(), "source_path"),
        (vec![0xff, 0xfe, b'{'], "UTF-8"),
        (br#"{"resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"a.mkv","bitrate":"1M"}"#.to_vec(), "resolution"),
        (br#"{"source_path":"a.mkv","resolution":"720p"}"#.to_vec(), "bitrate"),
        (br#"{"source_path":"a.mkv","resolution":"999p","bitrate":"1M"}"#.to_vec(), "resolution"),
        (br#"{"source_path":"a.mkv","resolution":720,"bitrate":"1M"}"#.to_vec(), "resolution"),
        (br#"{"source_path":"a.mkv","resolution":"0x0","bitrate":"1M"}"#.to_vec(), "resolution"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"fast"}"#.to_vec(), "bitrate"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":-1}"#.to_vec(), "bitrate"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"0"}"#.to_vec(), "bitrate"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","start_time":-5}"#.to_vec(), "start_time"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","start_time":"soon"}"#.to_vec(), "start_time"),
        (br#"{"source_path":"/etc/passwd","resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"../../etc/passwd","resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"-i.mkv","resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"concat:a|b","resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"","resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":42,"resolution":"720p","bitrate":"1M"}"#.to_vec(), "source_path"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","colour":"red"}"#.to_vec(), "colour"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","job_id":"nope"}"#.to_vec(), "job_id"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","job_id":"00000000-0000-0000-0000-000000000000"}"#.to_vec(), "job_id"),
        (br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M","is_mesh_mode":"yes"}"#.to_vec(), "is_mesh_mode"),
    ];
    assert!(cases.len() >= 20);
    for (body, needle) in &cases {
        let (status, answer) = http_json("POST", &sys.api("/api/jobs"), Some(body));
        let text = String::from_utf8_lossy(body);
        assert_eq!(status, 400, "{text}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{text}: no error sentence in {answer}"));
        assert!(
            error.contains(needle),
            "{text}: {error:?} should name {needle}"
        );
        assert!(error.len() > 20, "{text}: {error:?} is not a sentence");
    }
    let huge = format!(
        r#"{{"source_path":"{}","resolution":"720p","bitrate":"1M"}}"#,
        "a".repeat(100_000)
    );
    let (status, answer) = http_json("POST", &sys.api("/api/jobs"), Some(huge.as_bytes()));
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().is_some());
    // Nothing was created.
    assert_eq!(
        transcode_tests::get_json(&sys.api("/api/jobs")),
        Some(json!([]))
    );

    // Unknown ids.
    let unknown = "6f1d1c8e-0000-4000-8000-000000000001";
    assert_eq!(
        http_json("GET", &sys.api(&format!("/api/jobs/{unknown}")), None).0,
        404
    );
    assert_eq!(
        http_json("DELETE", &sys.api(&format!("/api/jobs/{unknown}")), None).0,
        404
    );
    assert_eq!(
        http_json("GET", &sys.api("/api/jobs/not-an-id"), None).0,
        404
    );
    assert_eq!(
        http_raw(sys.http_port, &format!("/stream/{unknown}/index.m3u8")).0,
        404
    );
}

#[test]
fn mqtt_submissions_garbage_and_every_way_to_cancel() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 60, false);
    let o = sys.start_orchestrator();
    let worker = sys.start_online("w", &[]);
    let port = sys.broker_port;

    // Garbage on the submit topic crashes nothing; a bad request with a
    // readable id is answered on that job's status topic.
    for payload in [
        &b"not json"[..],
        &[0xff, 0x00][..],
        b"{}",
        b"[1,2]",
        &vec![b'{'; 70_000][..],
    ] {
        assert!(mqtt::publish(port, "transcode/jobs/submit", payload, false));
    }
    let bad = "6f1d1c8e-0000-4000-8000-000000000002";
    let payload =
        json!({"job_id": bad, "source_path": "../x", "resolution": "720p", "bitrate": "1M"});
    assert!(mqtt::publish(
        port,
        "transcode/jobs/submit",
        payload.to_string().as_bytes(),
        false
    ));
    let answer = wait_until(
        Duration::from_secs(10),
        "the failed status of the bad submission",
        || {
            mqtt::retained(port, &format!("transcode/jobs/{bad}/status"))
                .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        },
    );
    assert_eq!(answer["state"], "failed");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("source_path")),
        "{answer}"
    );
    assert!(transcode_tests::get_json(&sys.api("/healthz")).is_some());
    assert!(o.log_lines_with(&["invalid job request"]) >= 5);

    // A good one over MQTT becomes a job; cancelled on its MQTT cancel topic.
    let by_mqtt = "6f1d1c8e-0000-4000-8000-000000000003";
    let payload = json!({"job_id": by_mqtt, "source_path": "long.mkv", "resolution": "720p", "bitrate": "1M"});
    assert!(mqtt::publish(
        port,
        "transcode/jobs/submit",
        payload.to_string().as_bytes(),
        false
    ));
    sys.wait_job(by_mqtt, "processing", JOB);
    assert!(mqtt::publish(
        port,
        &format!("transcode/jobs/{by_mqtt}/cancel"),
        b"CANCEL",
        false
    ));
    sys.wait_job(by_mqtt, "cancelled", Duration::from_secs(5));
    wait_until(Duration::from_secs(3), "FFmpeg to stop", || {
        children_named(worker.pid(), "ffmpeg")
            .is_empty()
            .then_some(())
    });

    // Over the API.
    let by_api = sys.submit(&request("long.mkv"));
    sys.wait_job(&by_api, "processing", JOB);
    let (code, job) = http_json("DELETE", &sys.api(&format!("/api/jobs/{by_api}")), None);
    assert_eq!((code, job["state"].as_str()), (200, Some("cancelled")));
    wait_until(Duration::from_secs(3), "FFmpeg to stop", || {
        children_named(worker.pid(), "ffmpeg")
            .is_empty()
            .then_some(())
    });
    let (code, answer) = http_json("DELETE", &sys.api(&format!("/api/jobs/{by_api}")), None);
    assert_eq!(code, 409, "{answer}");

    // On the worker's own cancel topic (as Home Assistant's button does).
    let by_worker = sys.submit(&request("long.mkv"));
    sys.wait_job(&by_worker, "processing", JOB);
    assert!(mqtt::publish(
        port,
        "transcode/workers/w/cancel",
        b"CANCEL",
        false
    ));
    sys.wait_job(&by_worker, "cancelled", Duration::from_secs(5));

    // A split job is cut into chunks (tests/mesh.rs), and cancels like any.
    // The worker takes it once its heartbeat no longer lists the run it
    // just stopped.
    let mesh = sys.submit(&json!({"source_path": "long.mkv", "resolution": "480p", "bitrate": "500k", "is_mesh_mode": true}));
    wait_until(
        Duration::from_secs(5),
        "the split job's first chunk",
        || {
            let j = sys.job(&mesh);
            j["chunks"]
                .as_array()
                .is_some_and(|c| c.len() == 1)
                .then_some(())
        },
    );
    let (code, _) = http_json("DELETE", &sys.api(&format!("/api/jobs/{mesh}")), None);
    assert_eq!(code, 200);
    wait_until(Duration::from_secs(5), "FFmpeg to stop", || {
        children_named(worker.pid(), "ffmpeg")
            .is_empty()
            .then_some(())
    });
}

#[test]
fn finished_jobs_are_pruned_after_the_retention_time() {
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_STATE__RETENTION_S", "2"));
    make_media(&sys.dir.path().join("media/clip.mkv"), 320, 240, 2, false);
    let _o = sys.start_orchestrator();
    let _w = sys.start_online("w", &[]);
    let id = sys.submit(&request("clip.mkv"));
    sys.wait_job(&id, "completed", JOB);
    wait_until(Duration::from_secs(15), "the job to be pruned", || {
        (http_json("GET", &sys.api(&format!("/api/jobs/{id}")), None).0 == 404).then_some(())
    });
    wait_until(
        Duration::from_secs(10),
        "its retained status to be cleared",
        || {
            mqtt::retained(sys.broker_port, &format!("transcode/jobs/{id}/status"))
                .is_none()
                .then_some(())
        },
    );
}
