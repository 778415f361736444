//! The README's run command, end to end: it starts the orchestrator and a
//! worker, transcodes a generated sample and prints a stream URL that
//! ffprobe can open while the job runs (the worker reads the sample from the
//! orchestrator: no shared folder); SIGTERM stops everything.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use transcode_tests::{
    env, ffprobe, free_port, get_json, get_json_with, require_tools, wait_until, Proc,
};

#[test]
fn dev_run_prints_a_stream_url_that_plays() {
    require_tools();
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, api, hls) = (free_port(), free_port(), free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev");
    let mut demo = Proc::spawn_group(
        "dev-run",
        Path::new("bash"),
        &[&script.display().to_string(), "run"],
        &[
            env("DEMO_BIND", "127.0.0.1"),
            env("DEMO_ADVERTISE", "127.0.0.1"),
            env("DEMO_BROKER_PORT", broker.to_string()),
            env("DEMO_API_PORT", api.to_string()),
            env("DEMO_HLS_PORT", hls.to_string()),
            env("DEMO_DIR", dir.path().display().to_string()),
        ],
        dir.path(),
    );
    let url = wait_until(Duration::from_secs(300), "the stream URL line", || {
        assert!(demo.is_running(), "./dev run stopped:\n{}", demo.log());
        demo.log()
            .lines()
            .find_map(|l| l.strip_prefix("Stream URL: ").map(str::to_string))
    });
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{api}/stream/")) && url.ends_with("/index.m3u8"),
        "{url}"
    );
    let (streams, _) = ffprobe(&url);
    assert!(
        streams.contains(&("video".into(), "h264".into(), 1280, 720)),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.0 == "audio" && s.1 == "aac"),
        "{streams:?}"
    );
    // The API wants the token the orchestrator made at its first start.
    let token = std::fs::read_to_string(dir.path().join("state/api-token")).expect("the token");
    assert!(
        get_json(&format!("http://127.0.0.1:{api}/api/workers")).is_none(),
        "the API answered without the token"
    );
    let get = |path: &str| get_json_with(&format!("http://127.0.0.1:{api}{path}"), token.trim());
    let workers = get("/api/workers").expect("API answers");
    assert_eq!(workers[0]["worker_id"], "local-worker");
    // No shared folder: the worker read the sample from the orchestrator.
    let worker_log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();
    assert!(
        worker_log.contains("reading the source from the orchestrator"),
        "{worker_log}"
    );
    let library = get("/api/media").expect("the library");
    assert_eq!(library["entries"][0]["path"], "sample.mkv", "{library}");
    // The broker is locked: the watch command it prints works, a client
    // without a login does not.
    let watch = wait_until(Duration::from_secs(120), "the watch line", || {
        demo.log().lines().find_map(|l| {
            l.split_once("Watch everything:")
                .map(|(_, c)| c.to_string())
        })
    });
    let password = watch
        .split_whitespace()
        .skip_while(|w| *w != "-P")
        .nth(1)
        .expect("a password in the watch line")
        .to_string();
    let sub = |login: &[&str]| {
        transcode_tests::mqtt::first_as(broker, login, "transcode/orchestrator/availability")
    };
    let seen = sub(&["-u", "watch", "-P", &password]);
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "online");
    assert!(!sub(&[]).status.success(), "an anonymous client was let in");

    demo.signal(Signal::SIGTERM);
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .expect("./dev run stops on SIGTERM");
    assert!(status.code().is_some(), "{status}");
    wait_until(
        Duration::from_secs(10),
        "the orchestrator and worker to be gone",
        || {
            let api_gone = get_json(&format!("http://127.0.0.1:{api}/healthz")).is_none();
            let hls_gone = std::net::TcpStream::connect(("127.0.0.1", hls)).is_err();
            (api_gone && hls_gone).then_some(())
        },
    );
}
