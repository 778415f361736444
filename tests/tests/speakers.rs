//! Only the holder speaks for a job: on the locked embedded broker, a second
//! worker's login cannot publish a status, heartbeat, availability, segment
//! report or order that counts for the first worker. The broker's gate turns
//! each such publish into a refusal note on `transcode/refused` and logs it
//! with the client that sent it; the job runs on and its stream is whole. A
//! worker whose login is revoked while it is connected loses its connection
//! and is refused at the next.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use transcode_tests::mqtt::{self, Watcher};
use transcode_tests::{bin, decode, wait_until, System};

const WATCH_PASSWORD: &str = "look-but-do-not-touch";

/// `transcode-orchestrator ARGS` against the system's state folder.
fn orchestrator_cmd(sys: &System, args: &[&str]) -> Output {
    Command::new(bin("transcode-orchestrator"))
        .args(args)
        .env("TRANSCODE_STATE__DIR", sys.state_dir())
        .env(
            "TRANSCODE_BROKER__LISTEN",
            format!("127.0.0.1:{}", sys.broker_port),
        )
        .stdin(Stdio::null())
        .output()
        .expect("transcode-orchestrator runs")
}

/// Gives worker `name` a login and writes it into its own config file, as
/// `add-worker` and `join` do for a person; returns the file and password.
fn join(sys: &System, name: &str) -> (String, String) {
    let out = orchestrator_cmd(sys, &["add-worker", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .trim()
        .strip_prefix("transcode-worker join ")
        .unwrap_or_else(|| panic!("not a join command: {stdout}"))
        .to_string();
    let password = line
        .split_once(&format!("worker-{name}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("a password");
    let config = sys.dir.path().join(format!("{name}.toml"));
    let config = config.display().to_string();
    let out = Command::new(bin("transcode-worker"))
        .args(["--config", &config, "join", &line])
        .stdin(Stdio::null())
        .output()
        .expect("join runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (config, password)
}

/// `mosquitto_pub` as worker w2, retained: whether the broker took it (the
/// gate takes every publish of a good login, refusing by rewriting).
fn publish_as_w2(sys: &System, password: &str, topic: &str, payload: &str) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &sys.broker_port.to_string()])
        .args(["-i", "worker-w2", "-u", "worker-w2", "-P", password])
        .args(["-t", topic, "-m", payload, "-q", "1", "-r"])
        .stdin(Stdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_second_workers_login_cannot_speak_for_the_first_worker_or_its_job() {
    let mut sys = System::new();
    sys.locked = true;
    sys.orchestrator_env.extend([
        transcode_tests::env("TRANSCODE_BROKER__USERNAME", "watch"),
        transcode_tests::env("TRANSCODE_BROKER__PASSWORD", WATCH_PASSWORD),
    ]);
    // A 40 s 1080p film on a one-thread worker: long enough to forge things
    // while it runs.
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 40);
    let o = sys.start_orchestrator();
    let (w1_config, _) = join(&sys, "w1");
    let (w2_config, w2_pass) = join(&sys, "w2");
    let _w1 = sys.start_worker_with(
        "w1",
        &[("TRANSCODE_TRANSCODE__THREADS", "1")],
        &["--config", &w1_config],
    );
    sys.wait_online("w1", true, Duration::from_secs(30));
    let watch = ["-u", "watch", "-P", WATCH_PASSWORD];
    let watcher = Watcher::start_ready(
        sys.broker_port,
        &watch,
        "transcode/#",
        "transcode/workers/w1/heartbeat",
        sys.dir.path(),
        "watch",
    );

    let id = sys.submit(&json!({"source_path": "film.mkv", "resolution": "720p", "bitrate": "2M"}));
    let running = sys.wait_job(&id, "processing", Duration::from_secs(60));
    assert_eq!(running["worker_id"], "w1");
    let attempt = running["attempt"].as_u64().unwrap_or(1);

    // Speaking for w1 with w2's login: every one refused by the broker.
    let forged_done = json!({"job_id": id, "state": "completed", "progress": 100.0,
        "worker_id": "w1", "attempt": attempt, "stream_url": "http://10.66.66.66:9/hls/x/index.m3u8"})
    .to_string();
    let forged_heartbeat = json!({"worker_id": "w1", "ip_address": "10.66.66.66", "port": 9,
        "os": "linux", "hw_accel": [], "status": "idle", "cpu_usage": 0.0})
    .to_string();
    let forged_report = json!({"worker_id": "w1", "job_id": id, "attempt": attempt,
        "segments": [], "inventory": true})
    .to_string();
    let forged_order = json!({"job_id": "00000000-0000-4000-8000-00000000abcd",
        "source_path": "film.mkv", "resolution": "720p", "bitrate": "1M", "attempt": 1})
    .to_string();
    let refused = [
        (format!("transcode/jobs/{id}/status"), forged_done.clone()),
        (
            "transcode/workers/w1/heartbeat".to_string(),
            forged_heartbeat,
        ),
        (
            "transcode/workers/w1/availability".to_string(),
            "offline".to_string(),
        ),
        ("transcode/workers/w1/segments".to_string(), forged_report),
        ("transcode/workers/w1/jobs".to_string(), forged_order),
    ];
    for (topic, payload) in &refused {
        assert!(publish_as_w2(&sys, &w2_pass, topic, payload), "{topic}");
    }
    // w2 speaking for itself about w1's job passes the broker and changes
    // nothing either: the job is w1's.
    let own_claim = forged_done.replace("\"worker_id\":\"w1\"", "\"worker_id\":\"w2\"");
    assert!(publish_as_w2(
        &sys,
        &w2_pass,
        &format!("transcode/jobs/{id}/status"),
        &own_claim
    ));

    // Each refusal is a note naming the client and the topic, and a log line.
    let notes = wait_until(Duration::from_secs(10), "five refusal notes", || {
        let notes: Vec<Value> = watcher
            .messages()
            .into_iter()
            .filter(|m| m.topic == "transcode/refused")
            .filter_map(|m| serde_json::from_str(&m.payload).ok())
            .collect();
        (notes.len() >= refused.len()).then_some(notes)
    });
    for (topic, _) in &refused {
        let note = notes
            .iter()
            .find(|n| n["topic"] == topic.as_str())
            .unwrap_or_else(|| panic!("no refusal note for {topic}: {notes:?}"));
        assert_eq!(note["client_id"], "worker-w2", "{note}");
        assert!(
            note["reason"].as_str().is_some_and(|r| r.contains("w2")),
            "{note}"
        );
    }
    let logged = o
        .log()
        .lines()
        .filter(|l| l.contains("the broker refused a publish from client \"worker-w2\""))
        .count();
    assert!(logged >= refused.len(), "{logged} refusals logged");
    // Nothing of it reached a retained topic of w1's.
    assert_eq!(
        mqtt::retained_as(sys.broker_port, &watch, "transcode/workers/w1/availability").as_deref(),
        Some("online")
    );
    let hb = mqtt::retained_as(sys.broker_port, &watch, "transcode/workers/w1/heartbeat")
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .expect("w1's heartbeat");
    assert_eq!(hb["ip_address"], "127.0.0.1", "{hb}");
    wait_until(
        Duration::from_secs(10),
        "w2's own claim to be ignored",
        || {
            o.log()
                .lines()
                .any(|l| {
                    l.contains("job status completed ignored") && l.contains("not worker w2's")
                })
                .then_some(())
        },
    );
    // The orchestrator still has w1 online, busy with the job.
    let job = sys.job(&id);
    assert_eq!(
        (job["state"].as_str(), job["worker_id"].as_str()),
        (Some("processing"), Some("w1")),
        "{job}"
    );
    assert!(sys.is_online("w1"));

    // The job completes on w1, once, and its stream is whole.
    let done = sys.wait_job(&id, "completed", Duration::from_secs(240));
    assert_eq!(done["attempt"].as_u64(), Some(attempt), "{done}");
    let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
    decode::assert_seamless(&d, 30.0, 1200, 0, 40.0);
    let w1_log = sys.dir.path().join("worker-w1.log");
    let w1_log = std::fs::read_to_string(w1_log).unwrap_or_default();
    assert_eq!(w1_log.matches("starting FFmpeg").count(), 1, "{w1_log}");

    // w2 runs as a worker; revoked while connected, it is cut off within
    // seconds (its last will says offline) and refused when it comes back.
    let _w2 = sys.start_worker_with("w2", &[], &["--config", &w2_config]);
    sys.wait_online("w2", true, Duration::from_secs(30));
    let out = orchestrator_cmd(&sys, &["revoke-worker", "w2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = sys.wait_online("w2", false, Duration::from_secs(10));
    eprintln!("revoked w2 went offline after {:.2} s", took.as_secs_f64());
    wait_until(Duration::from_secs(10), "w2's reconnection refused", || {
        o.log()
            .contains("MQTT login refused: worker w2 has no login (never added, or revoked)")
            .then_some(())
    });
    assert!(
        o.log()
            .contains("closing the connection of client \"worker-w2\""),
        "{}",
        o.log()
    );
    assert!(!sys.is_online("w2"));
}
