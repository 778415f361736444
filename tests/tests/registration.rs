//! Workers find their place by themselves: they appear on the broker
//! (retained, for `mosquitto_sub`) and in the orchestrator's registry, and
//! disappear when they die, however they die.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use transcode_common::wire::{Heartbeat, Os};
use transcode_tests::{env, get_json, mqtt, simulated_worker, wait_until, System};

const START: Duration = Duration::from_secs(30);

/// Every seed field with its JSON type, and our additions.
fn assert_heartbeat_shape(id: &str, hb: &Value) {
    let s = |k: &str| {
        hb[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is a string in {hb}"))
    };
    let n = |k: &str| {
        hb[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} is a number in {hb}"))
    };
    let u = |k: &str| {
        hb[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} is a whole number in {hb}"))
    };
    let a = |k: &str| {
        hb[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} is an array in {hb}"))
    };
    assert_eq!(s("worker_id"), id);
    assert_eq!(s("ip_address"), "127.0.0.1");
    assert!(u("port") > 0 && u("port") <= 65535);
    assert_eq!(s("os"), "linux");
    assert!(a("hw_accel").is_empty(), "no GPU here: {hb}");
    assert!(["idle", "working", "draining"].contains(&s("status")));
    assert!((0.0..=100.0).contains(&n("cpu_usage")));
    assert!(!s("hostname").is_empty() && !s("version").is_empty());
    assert!(u("cpu_cores") >= 1);
    assert!(u("memory_total_mb") > 0);
    assert!(u("memory_available_mb") <= u("memory_total_mb"));
    assert_eq!(u("max_jobs"), 1);
    assert!(a("active_jobs").is_empty());
    assert_eq!(a("encoders"), &vec![Value::from("libx264")]);
    assert_eq!(u("interval_s"), 1);
    let now = transcode_common::unix_ms();
    assert!(u("timestamp") <= now + 1000 && u("timestamp") + 60_000 > now);
    // And our own decoder accepts it.
    let typed: Heartbeat = serde_json::from_value(hb.clone()).expect("heartbeat decodes");
    assert!(typed.validate().is_ok());
    assert_eq!(typed.os, Os::Linux);
}

#[test]
fn two_workers_appear_on_the_broker_and_in_the_registry() {
    let sys = System::new();
    let _orchestrator = sys.start_orchestrator();
    let _alpha = sys.start_worker("alpha", &[]);
    let _beta = sys.start_worker("beta", &[]);
    sys.wait_online("alpha", true, START);
    sys.wait_online("beta", true, START);

    // A person who starts watching now sees both retained heartbeats.
    let messages = mqtt::sub(
        sys.broker_port,
        &["transcode/workers/+/heartbeat"],
        2,
        Duration::from_secs(10),
    );
    assert_eq!(messages.len(), 2, "{messages:?}");
    for id in ["alpha", "beta"] {
        let m = messages
            .iter()
            .find(|m| m.topic == format!("transcode/workers/{id}/heartbeat"))
            .unwrap_or_else(|| panic!("no heartbeat of {id} in {messages:?}"));
        let hb: Value = serde_json::from_str(&m.payload).expect("heartbeat is JSON");
        assert_heartbeat_shape(id, &hb);
        assert_eq!(
            mqtt::retained(
                sys.broker_port,
                &format!("transcode/workers/{id}/availability")
            )
            .as_deref(),
            Some("online")
        );
        // The advertised port is the worker's HTTP server.
        let health = get_json(&format!("http://127.0.0.1:{}/healthz", hb["port"]))
            .expect("the worker's HTTP server answers");
        assert_eq!(health["worker_id"], id);
    }
    assert_eq!(
        mqtt::retained(sys.broker_port, "transcode/orchestrator/availability").as_deref(),
        Some("online")
    );

    let workers = sys.workers();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for w in &workers {
        assert_eq!(w["online"], true, "{w}");
        assert_eq!(w["heartbeat"]["status"], "idle", "{w}");
        assert!(w["last_seen"].as_u64().is_some(), "{w}");
        assert_eq!(w["jobs"], Value::Array(vec![]), "{w}");
    }
}

#[test]
fn a_killed_worker_is_offline_within_two_seconds_and_a_terminated_one_at_once() {
    let sys = System::new();
    let _orchestrator = sys.start_orchestrator();
    let mut doomed = sys.start_worker("doomed", &[]);
    let mut polite = sys.start_worker("polite", &[]);
    sys.wait_online("doomed", true, START);
    sys.wait_online("polite", true, START);

    let killed = Instant::now();
    doomed.signal(Signal::SIGKILL);
    wait_until(
        Duration::from_secs(2),
        "the retained availability `offline`",
        || {
            (mqtt::retained(sys.broker_port, "transcode/workers/doomed/availability").as_deref()
                == Some("offline"))
            .then_some(())
        },
    );
    let left = Duration::from_secs(2).saturating_sub(killed.elapsed());
    sys.wait_online("doomed", false, left);
    eprintln!("SIGKILLed worker offline after {:?}", killed.elapsed());
    doomed.wait_exit(Duration::from_secs(5));

    let terminated = Instant::now();
    polite.signal(Signal::SIGTERM);
    // Measured at about 50 ms; the deadline leaves room for a loaded machine.
    sys.wait_online("polite", false, Duration::from_secs(2));
    eprintln!("SIGTERMed worker offline after {:?}", terminated.elapsed());
    let status = polite
        .wait_exit(Duration::from_secs(5))
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert_eq!(
        mqtt::retained(sys.broker_port, "transcode/workers/polite/availability").as_deref(),
        Some("offline")
    );
    let last = sys.worker("polite").expect("still known");
    assert_eq!(last["heartbeat"]["status"], "draining", "{last}");
}

#[test]
fn a_stopped_worker_is_offline_after_the_heartbeat_timeout() {
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_SCHEDULER__HEARTBEAT_TIMEOUT_S", "3"));
    let _orchestrator = sys.start_orchestrator();
    // A long keepalive, so it is the missing heartbeats (not the broker's
    // keepalive check) that give the frozen worker away.
    let frozen = sys.start_worker("frozen", &[("TRANSCODE_BROKER__KEEPALIVE_S", "60")]);
    sys.wait_online("frozen", true, START);

    let stopped = Instant::now();
    frozen.signal(Signal::SIGSTOP);
    sys.wait_online("frozen", false, Duration::from_secs(10));
    let after = stopped.elapsed();
    eprintln!("SIGSTOPped worker offline after {after:?}");
    // The last heartbeat was at most 1 s old when it stopped; the timeout is 3 s.
    assert!(
        after >= Duration::from_secs(2),
        "offline too early: {after:?}"
    );
    // Its socket is still open: the broker still has it as online.
    assert_eq!(
        mqtt::retained(sys.broker_port, "transcode/workers/frozen/availability").as_deref(),
        Some("online")
    );

    frozen.signal(Signal::SIGCONT);
    sys.wait_online("frozen", true, Duration::from_secs(10));
}

#[test]
fn workers_come_back_by_themselves_after_the_orchestrator_is_killed() {
    let sys = System::new();
    let mut first = sys.start_orchestrator();
    let mut alpha = sys.start_worker("alpha", &[]);
    let mut beta = sys.start_worker("beta", &[]);
    sys.wait_online("alpha", true, START);
    sys.wait_online("beta", true, START);

    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let restarted = Instant::now();
    let _second = sys.start_orchestrator();
    sys.wait_online("alpha", true, Duration::from_secs(10));
    sys.wait_online("beta", true, Duration::from_secs(10));
    eprintln!(
        "both workers online {:?} after the orchestrator was restarted",
        restarted.elapsed()
    );
    assert!(
        alpha.is_running() && beta.is_running(),
        "workers were not restarted"
    );
    // The new broker has their retained state again.
    let messages = mqtt::sub(
        sys.broker_port,
        &["transcode/workers/+/availability"],
        2,
        Duration::from_secs(10),
    );
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages.iter().all(|m| m.payload == "online"),
        "{messages:?}"
    );
    assert!(alpha.log_lines_with(&["connected to the MQTT broker again"]) >= 1);
}

#[test]
fn one_hundred_fifty_workers_all_appear() {
    const N: usize = 150;
    let sys = System::new();
    let _orchestrator = sys.start_orchestrator();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let port = sys.broker_port;
    let tasks: Vec<tokio::task::JoinHandle<()>> = (0..N)
        .map(|i| runtime.spawn(simulated_worker(format!("sim-{i:03}"), port)))
        .collect();

    let online = wait_until(
        Duration::from_secs(60),
        "150 simulated workers online",
        || {
            let workers = sys.workers();
            let online = workers
                .iter()
                .filter(|w| {
                    w["online"] == true
                        && w["worker_id"]
                            .as_str()
                            .is_some_and(|id| id.starts_with("sim-"))
                })
                .count();
            (online == N).then_some(workers)
        },
    );
    assert_eq!(online.len(), N);
    // A person subscribing now gets every retained heartbeat, not just 100.
    let messages = mqtt::sub(
        port,
        &["transcode/workers/+/heartbeat"],
        N,
        Duration::from_secs(20),
    );
    assert_eq!(messages.len(), N);
    for t in tasks {
        t.abort();
    }
}

#[test]
fn a_heartbeat_that_claims_an_endless_interval_still_goes_offline_within_the_bound() {
    let mut sys = System::new();
    // Timeout 1 s; a worker's own interval counts up to 2 s: offline after
    // at most 6 s of silence, whatever its heartbeat claims.
    sys.orchestrator_env.extend([
        env("TRANSCODE_SCHEDULER__HEARTBEAT_TIMEOUT_S", "1"),
        env("TRANSCODE_REGISTRY__MAX_HEARTBEAT_INTERVAL_S", "2"),
    ]);
    let _o = sys.start_orchestrator();
    let hb = r#"{"worker_id":"sloth","ip_address":"127.0.0.1","port":9,"os":"linux","hw_accel":[],"status":"idle","cpu_usage":1,"interval_s":1000000000000}"#;
    assert!(mqtt::publish(
        sys.broker_port,
        "transcode/workers/sloth/heartbeat",
        hb.as_bytes(),
        false
    ));
    sys.wait_online("sloth", true, START);
    let silent = Instant::now();
    sys.wait_online("sloth", false, Duration::from_secs(15));
    let after = silent.elapsed();
    eprintln!("a heartbeat claiming 10^12 s went offline after {after:?}");
    // Three bounded intervals, not the 1 s timeout and not 3 x 10^12 s.
    assert!(after >= Duration::from_secs(4), "{after:?}");
}

#[test]
fn a_worker_offline_for_registry_forget_after_s_is_forgotten_with_its_retained_topics() {
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_REGISTRY__FORGET_AFTER_S", "3"));
    let o = sys.start_orchestrator();
    let w = sys.start_worker("gone", &[]);
    sys.wait_online("gone", true, START);
    w.signal(Signal::SIGKILL);
    sys.wait_online("gone", false, Duration::from_secs(10));
    wait_until(Duration::from_secs(15), "the worker forgotten", || {
        sys.worker("gone").is_none().then_some(())
    });
    for topic in ["heartbeat", "availability", "job"] {
        assert_eq!(
            mqtt::retained(sys.broker_port, &format!("transcode/workers/gone/{topic}")),
            None,
            "{topic} cleared"
        );
    }
    assert_eq!(o.log_lines_with(&["worker gone forgotten"]), 1);
}

#[test]
fn malformed_heartbeats_are_logged_and_ignored() {
    let sys = System::new();
    let orchestrator = sys.start_orchestrator();
    let _honest = sys.start_worker("honest", &[]);
    sys.wait_online("honest", true, START);
    let before = sys.worker("honest").expect("honest is listed");

    let liar = before["heartbeat"].to_string(); // says "honest", sent on liar's topic
    let wrong_types = r#"{"worker_id":"typed","ip_address":7,"port":"eighty","os":"linux","hw_accel":"nvenc","status":"idle","cpu_usage":"high"}"#;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", b"this is not json".to_vec(), true),
        ("typed", wrong_types.as_bytes().to_vec(), true),
        ("huge", vec![b'x'; 1_000_000], false),
        ("liar", liar.into_bytes(), true),
        ("binary", vec![0xff, 0xfe, 0x00, 0x80, b'{'], true),
        (
            "honest",
            b"{\"worker_id\": \"honest\", broken".to_vec(),
            false,
        ),
    ];
    for (id, payload, retain) in &cases {
        assert!(
            mqtt::publish(
                sys.broker_port,
                &format!("transcode/workers/{id}/heartbeat"),
                payload,
                *retain
            ),
            "mosquitto_pub could publish for {id}"
        );
    }
    for (id, _, _) in &cases {
        wait_until(
            Duration::from_secs(10),
            &format!("a log line about worker {id}"),
            || {
                (orchestrator.log_lines_with(&["WARN", &format!("worker {id}"), "ignored"]) > 0)
                    .then_some(())
            },
        );
    }

    // Nothing crashed, nothing was corrupted, nobody invented was registered.
    assert!(get_json(&sys.api("/healthz")).is_some());
    let workers = sys.workers();
    let ids: Vec<&str> = workers
        .iter()
        .filter_map(|w| w["worker_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["honest"], "{workers:?}");
    // The honest worker keeps its own heartbeat, and new ones still arrive.
    let stamp = before["heartbeat"]["timestamp"]
        .as_u64()
        .expect("timestamp");
    wait_until(
        Duration::from_secs(10),
        "a newer heartbeat from honest",
        || {
            let w = sys.worker("honest")?;
            (w["online"] == true
                && w["heartbeat"]["worker_id"] == "honest"
                && w["heartbeat"]["port"] == before["heartbeat"]["port"]
                && w["heartbeat"]["timestamp"].as_u64() > Some(stamp))
            .then_some(())
        },
    );
    // A watcher still gets a readable picture.
    let all = mqtt::sub(sys.broker_port, &["transcode/#"], 3, Duration::from_secs(5));
    assert!(!all.is_empty());
}

#[test]
fn the_orchestrator_refuses_a_taken_broker_port_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let mut sys = System::new();
    sys.broker_port = taken.local_addr().expect("addr").port();
    let mut orchestrator = sys.spawn_orchestrator(&[]);
    let status = orchestrator
        .wait_exit(Duration::from_secs(20))
        .expect("the orchestrator gives up");
    assert!(!status.success());
    let log = orchestrator.log();
    assert!(
        log.contains(&format!(
            "cannot listen for MQTT on 127.0.0.1:{}",
            sys.broker_port
        )),
        "{log}"
    );
}

#[test]
fn bad_configuration_stops_a_binary_with_the_key_named() {
    let sys = System::new();
    let mut worker = sys.start_worker("w", &[("TRANSCODE_HEARTBEAT__INTERVAL_S", "often")]);
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("worker exits");
    assert_eq!(status.code(), Some(2));
    assert!(
        worker.log().contains("heartbeat.interval_s"),
        "{}",
        worker.log()
    );

    let file = sys.dir.path().join("bad.toml");
    std::fs::write(&file, "[scheduler]\nheartbeat_timeout = 10\n").expect("write");
    let path = file.display().to_string();
    let mut orchestrator = sys.spawn_orchestrator(&["--config", &path]);
    let status = orchestrator
        .wait_exit(Duration::from_secs(10))
        .expect("orchestrator exits");
    assert_eq!(status.code(), Some(2));
    let log = orchestrator.log();
    assert!(
        log.contains("scheduler.heartbeat_timeout") && log.contains(&path),
        "{log}"
    );
}

#[test]
fn the_probe_finds_libx264_only_on_a_machine_without_gpu() {
    let out = std::process::Command::new(transcode_tests::bin("transcode-worker"))
        .arg("probe")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("probe runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hw_accel: []"), "{text}");
    assert!(text.contains("encoders: [libx264]"), "{text}");
    for line in text
        .lines()
        .filter(|l| l.contains("nvenc") || l.contains("vaapi") || l.contains("qsv"))
    {
        assert!(
            line.contains("failed")
                || line.contains("not compiled in")
                || line.contains("timed out"),
            "{line}"
        );
    }
}
