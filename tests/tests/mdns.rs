//! A worker with no broker address finds the orchestrator's broker over
//! mDNS, and finds it again when it comes back on another port.
//!
//! Multicast must not leave this machine: the test runs itself again inside
//! a new network namespace that holds only loopback (`unshare -rn`, which
//! needs no root where user namespaces are allowed, and works as root).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use transcode_tests::{bin, env, free_port, System};

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

#[test]
fn a_worker_without_an_address_finds_the_broker_and_finds_it_again_after_a_move() {
    if in_namespace("a_worker_without_an_address_finds_the_broker_and_finds_it_again_after_a_move")
    {
        return;
    }
    // Inside: nothing but loopback exists.
    let dev = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(links, vec!["lo"], "only loopback in this namespace");

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
