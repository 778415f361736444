//! A worker with no broker address finds the orchestrator's broker over
//! mDNS, finds it again when it comes back on another port, never follows
//! a broker without our topic prefix, moves off a broker whose advertisement
//! went while its connection still works, and leaves a broker that refuses
//! its login.
//!
//! Multicast must not leave this machine: each test runs itself again inside
//! a new network namespace that holds only loopback (`unshare -rn`, which
//! needs no root where user namespaces are allowed, and works as root).
//! Mosquitto runs there as the namespace's root (`user root`: it cannot
//! drop to a user the namespace does not map).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use transcode_tests::{
    bin, env, free_port, make_media, mdns, mosquitto, mqtt, wait_until, Proc, System,
};

const INSIDE: &str = "MDNS_TEST_IN_NAMESPACE";

/// Runs `test` in a fresh loopback-only namespace; true when this call is
/// the outer one (which only checks the inner run).
fn in_namespace(test: &str) -> bool {
    if std::env::var(INSIDE).is_ok() {
        return false;
    }
    // Build outside, where cargo may reach everything it needs.
    let _ = bin("transcode-worker");
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args([
            "-rn",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the test inside the namespace failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stderr}");
    true
}

/// Inside: nothing but loopback exists.
fn only_loopback() {
    let dev = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(links, vec!["lo"], "only loopback in this namespace");
}

/// A Mosquitto on a free port that logs every connection and client id,
/// with `access` (`allow_anonymous ...`).
fn house_broker(sys: &System, name: &str, access: &str) -> (Proc, u16) {
    let port = free_port();
    let config = format!(
        "listener {port} 127.0.0.1\n{access}\nuser root\nlog_type all\nconnection_messages true"
    );
    (mosquitto::start(name, sys.dir.path(), port, &config), port)
}

/// Waits until `worker` logged a line with every one of `needles`.
fn wait_log(worker: &Proc, needles: &[&str], what: &str) {
    wait_until(Duration::from_secs(10), what, || {
        (worker.log_lines_with(needles) > 0).then_some(())
    });
}

#[test]
fn a_worker_without_an_address_finds_the_broker_and_finds_it_again_after_a_move() {
    if in_namespace("a_worker_without_an_address_finds_the_broker_and_finds_it_again_after_a_move")
    {
        return;
    }
    only_loopback();
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_BROKER__MDNS", "true"));
    let mut orchestrator = sys.start_orchestrator();
    let started = Instant::now();
    let worker = sys.start_worker("finder", &[("TRANSCODE_BROKER__URL", "")]);
    sys.wait_online("finder", true, Duration::from_secs(10));
    eprintln!("found and registered over mDNS in {:?}", started.elapsed());
    assert!(
        worker.log_lines_with(&[
            "found the MQTT broker over mDNS",
            &format!("127.0.0.1:{}", sys.broker_port)
        ]) >= 1
    );

    // The orchestrator comes back on another port: the worker follows.
    orchestrator.signal(Signal::SIGTERM);
    orchestrator.wait_exit(Duration::from_secs(10));
    sys.broker_port = free_port();
    let moved = Instant::now();
    let _orchestrator = sys.start_orchestrator();
    sys.wait_online("finder", true, Duration::from_secs(20));
    eprintln!("found again {:?} after the move", moved.elapsed());
    assert!(
        worker.log_lines_with(&[
            "switching to the broker found over mDNS",
            &format!("127.0.0.1:{}", sys.broker_port)
        ]) >= 1
    );
}

#[test]
fn a_worker_never_follows_a_foreign_broker_and_is_back_on_ours_after_a_restart_on_another_port() {
    if in_namespace(
        "a_worker_never_follows_a_foreign_broker_and_is_back_on_ours_after_a_restart_on_another_port",
    ) {
        return;
    }
    only_loopback();
    let mut sys = System::new();
    // The house's broker takes anyone; it is advertised beside ours without
    // a prefix, and again with another system's.
    let (house, house_port) = house_broker(&sys, "house-mosquitto", "allow_anonymous true");
    let bare = mdns::advertise(&mdns::unique_instance("house-mqtt"), house_port, &[]);
    let zigbee = mdns::advertise(
        &mdns::unique_instance("zigbee-mqtt"),
        house_port,
        &[("prefix", "zigbee2mqtt")],
    );
    sys.orchestrator_env
        .push(env("TRANSCODE_BROKER__MDNS", "true"));
    let mut orchestrator = sys.start_orchestrator();
    let worker = sys.start_worker("loyal", &[("TRANSCODE_BROKER__URL", "")]);
    sys.wait_online("loyal", true, Duration::from_secs(10));
    for foreign in [&bare, &zigbee] {
        wait_log(
            &worker,
            &["not using the MQTT broker", &foreign.fullname, "worker_id"],
            "the worker to see the foreign broker",
        );
    }

    // The orchestrator comes back on another port while the foreign broker
    // is the only one advertised and answering.
    orchestrator.signal(Signal::SIGTERM);
    assert!(orchestrator.wait_exit(Duration::from_secs(10)).is_some());
    sys.broker_port = free_port();
    let restarted = Instant::now();
    let _orchestrator = sys.start_orchestrator();
    let started = restarted.elapsed();
    sys.wait_online("loyal", true, Duration::from_secs(10));
    let back = restarted.elapsed();
    eprintln!(
        "back online on our broker {back:?} after the restart on another port began ({:?} after the orchestrator answered)",
        back - started
    );
    assert!(back <= Duration::from_secs(10), "{back:?}");
    assert_eq!(
        worker.log_lines_with(&[
            "switching to the broker found over mDNS",
            &format!("127.0.0.1:{}", sys.broker_port)
        ]),
        1
    );

    // Mosquitto names every client that connects (a control client shows
    // it): the worker never connected, not even for a probe.
    let control = format!("control-{}", std::process::id());
    let _ = mqtt::retained_as(house_port, &["-i", &control], "control/none");
    wait_until(
        Duration::from_secs(5),
        "mosquitto to log the control client",
        || house.log().contains(&control).then_some(()),
    );
    let log = house.log();
    assert!(!log.contains("worker-loyal"), "{log}");
    assert_eq!(
        log.matches("New connection from").count(),
        2,
        "only the harness's readiness check and the control client: {log}"
    );
    assert_eq!(worker.log_lines_with(&[&format!(":{house_port}")]), 0);
}

#[test]
fn a_worker_moves_off_a_withdrawn_broker_without_waiting_for_its_connection_to_fail() {
    if in_namespace(
        "a_worker_moves_off_a_withdrawn_broker_without_waiting_for_its_connection_to_fail",
    ) {
        return;
    }
    only_loopback();
    let mut sys = System::new();
    // A second broker of ours (a Mosquitto advertised with our prefix), the
    // only one when the worker starts.
    let (_spare, spare_port) = house_broker(&sys, "spare-mosquitto", "allow_anonymous true");
    let spare = mdns::advertise(
        &mdns::unique_instance("spare-mqtt"),
        spare_port,
        &[("prefix", "transcode")],
    );
    let worker = sys.start_worker("mover", &[("TRANSCODE_BROKER__URL", "")]);
    let availability = "transcode/workers/mover/availability";
    wait_until(
        Duration::from_secs(10),
        "the worker online on the spare broker",
        || (mqtt::retained(spare_port, availability).as_deref() == Some("online")).then_some(()),
    );

    // The orchestrator's broker appears too: two live brokers of ours, the
    // worker stays where it is.
    sys.orchestrator_env
        .push(env("TRANSCODE_BROKER__MDNS", "true"));
    make_media(&sys.dir.path().join("media/clip.mkv"), 640, 360, 2, true);
    let _orchestrator = sys.start_orchestrator();
    wait_log(
        &worker,
        &[
            "another broker of ours is advertised",
            "transcode-orchestrator on",
        ],
        "the worker to see the orchestrator's broker",
    );
    assert_eq!(
        mqtt::retained(spare_port, availability).as_deref(),
        Some("online"),
        "still on the spare broker"
    );

    // The spare broker's advertisement goes while it runs on: the worker
    // moves at once, its connection there never failed.
    let withdrawn = Instant::now();
    drop(spare);
    sys.wait_online("mover", true, Duration::from_secs(10));
    eprintln!(
        "on the orchestrator's broker {:?} after the other one's advertisement went",
        withdrawn.elapsed()
    );
    assert_eq!(worker.log_lines_with(&["MQTT connection lost"]), 0);
    assert_eq!(
        worker.log_lines_with(&["switching to the broker found over mDNS"]),
        1,
        "one move, no flapping"
    );
    // It left like a crash: the spare broker published its last will.
    wait_until(
        Duration::from_secs(5),
        "the will on the spare broker",
        || (mqtt::retained(spare_port, availability).as_deref() == Some("offline")).then_some(()),
    );
    // Its session works on the new broker: it takes and finishes a job.
    let id =
        sys.submit(&json!({"source_path": "clip.mkv", "resolution": "640x360", "bitrate": "500k"}));
    let done = sys.wait_job(&id, "completed", Duration::from_secs(60));
    assert_eq!(done["worker_id"].as_str(), Some("mover"), "{done}");
}

#[test]
fn brokers_that_refuse_the_worker_are_left_for_one_that_takes_it() {
    if in_namespace("brokers_that_refuse_the_worker_are_left_for_one_that_takes_it") {
        return;
    }
    only_loopback();
    let mut sys = System::new();
    // Two brokers of ours that turn the worker (no login) away: the
    // orchestrator's own, which closes the connection instead of a CONNACK,
    // and a Mosquitto without anonymous access, which answers "not
    // authorised".
    sys.locked = true;
    sys.orchestrator_env
        .push(env("TRANSCODE_BROKER__MDNS", "true"));
    let orchestrator = sys.start_orchestrator();
    let (strict, strict_port) = house_broker(&sys, "strict-mosquitto", "allow_anonymous false");
    let _strict_ad = mdns::advertise(
        &mdns::unique_instance("strict-mqtt"),
        strict_port,
        &[("prefix", "transcode")],
    );
    let worker = sys.start_worker("turned-away", &[("TRANSCODE_BROKER__URL", "")]);
    for port in [sys.broker_port, strict_port] {
        wait_log(
            &worker,
            &[
                "refused worker turned-away",
                &format!("127.0.0.1:{port} "),
                "broker.username",
                "worker_id",
            ],
            "the worker to say a broker refused it",
        );
    }
    let told = orchestrator.log();
    assert!(told.contains("\"worker-turned-away\""), "{told}");
    let told = strict.log();
    assert!(told.contains("not authorised"), "{told}");

    // A broker of ours that takes anyone appears: the worker goes there.
    let (_open, open_port) = house_broker(&sys, "open-mosquitto", "allow_anonymous true");
    assert!(mqtt::publish(open_port, "test/ready", b"1", true));
    let watcher = mqtt::Watcher::start_ready(
        open_port,
        &[],
        "#",
        "test/ready",
        sys.dir.path(),
        "open-watcher",
    );
    let appeared = Instant::now();
    let _open_ad = mdns::advertise(
        &mdns::unique_instance("open-mqtt"),
        open_port,
        &[("prefix", "transcode")],
    );
    wait_until(
        Duration::from_secs(10),
        "the worker online on the broker that takes it",
        || {
            watcher
                .messages()
                .iter()
                .any(|m| {
                    m.topic == "transcode/workers/turned-away/availability" && m.payload == "online"
                })
                .then_some(())
        },
    );
    eprintln!(
        "online {:?} after a broker that takes it was advertised, both refusing ones left",
        appeared.elapsed()
    );
    assert_eq!(
        worker.log_lines_with(&["refused worker turned-away"]),
        2,
        "one line per broker and hold, not one per attempt"
    );
}
