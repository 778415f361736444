//! The system on a broker the house already has: a real Mosquitto with a
//! password file and no anonymous access, instead of the embedded broker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use transcode_tests::{env, ffprobe, free_port, make_media, mqtt, wait_until, Proc, System};

/// Debian puts the broker in /usr/sbin, which a user's PATH may lack.
fn mosquitto() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let p = Path::new(dir).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    panic!("mosquitto is not installed: run ./dev setup (or apt-get install mosquitto)");
}

/// Starts Mosquitto on a free loopback port with one user.
fn start_mosquitto(dir: &Path, user: &str, password: &str) -> (Proc, u16) {
    let passwd = dir.join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args([user, password])
        .stdin(Stdio::null())
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\nlog_dest stderr\n",
            passwd.display()
        ),
    )
    .expect("config");
    let conf_arg = conf.display().to_string();
    let p = Proc::spawn("mosquitto", &mosquitto(), &["-c", &conf_arg], &[], dir);
    wait_until(Duration::from_secs(10), "mosquitto to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(drop)
    });
    (p, port)
}

#[test]
fn registration_transcode_and_stream_through_an_external_mosquitto() {
    let mut sys = System::new();
    let (_broker, port) = start_mosquitto(sys.dir.path(), "transcode", "s3cret pass");
    sys.broker_port = port;
    sys.orchestrator_env.extend([
        env("TRANSCODE_BROKER__EMBEDDED", "false"),
        env("TRANSCODE_BROKER__URL", format!("mqtt://127.0.0.1:{port}")),
        env("TRANSCODE_BROKER__USERNAME", "transcode"),
        env("TRANSCODE_BROKER__PASSWORD", "s3cret pass"),
    ]);
    make_media(&sys.dir.path().join("media/clip.mkv"), 1280, 720, 6, true);
    let _o = sys.start_orchestrator();
    let _w = sys.start_worker(
        "house",
        &[
            ("TRANSCODE_BROKER__USERNAME", "transcode"),
            ("TRANSCODE_BROKER__PASSWORD", "s3cret pass"),
        ],
    );
    sys.wait_online("house", true, Duration::from_secs(30));

    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "720p", "bitrate": "1M"}));
    let done = sys.wait_job(&id, "completed", Duration::from_secs(120));
    let (streams, duration) = ffprobe(done["stream_url"].as_str().expect("stream_url"));
    assert!(
        streams.contains(&("video".into(), "h264".into(), 1280, 720)),
        "{streams:?}"
    );
    assert!((duration - 6.0).abs() <= 0.5, "{duration}");

    // A watcher with the credentials sees the retained picture...
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "transcode",
            "-P",
            "s3cret pass",
        ])
        .args(["-t", "transcode/#", "-v", "-C", "3", "-W", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub runs");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("transcode/workers/house/"), "{seen}");
    // ...and an anonymous client is refused.
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "transcode/#",
            "-C",
            "1",
            "-W",
            "5",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub runs");
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(refused.contains("not authori"), "{refused}");
    assert!(out.stdout.is_empty());
    assert!(
        mqtt::retained(port, "transcode/workers/house/heartbeat").is_none(),
        "anonymous reads nothing"
    );
}

#[test]
fn a_worker_with_a_wrong_password_says_so_and_keeps_trying() {
    let sys = System::new();
    let (_broker, port) = start_mosquitto(sys.dir.path(), "transcode", "right");
    let w = Proc::spawn(
        "worker-intruder",
        &transcode_tests::bin("transcode-worker"),
        &[],
        &[
            env("TRANSCODE_WORKER_ID", "intruder"),
            env("TRANSCODE_BROKER__URL", format!("mqtt://127.0.0.1:{port}")),
            env("TRANSCODE_BROKER__USERNAME", "transcode"),
            env("TRANSCODE_BROKER__PASSWORD", "wrong"),
            env("TRANSCODE_HTTP__LISTEN", "127.0.0.1:0"),
            env(
                "TRANSCODE_TRANSCODE__OUTPUT_DIR",
                sys.dir.path().join("out").display().to_string(),
            ),
        ],
        sys.dir.path(),
    );
    wait_until(
        Duration::from_secs(20),
        "a log line about the refused connection",
        || {
            (w.log_lines_with(&[
                "MQTT connection lost",
                "check broker.username and broker.password",
            ]) > 0)
                .then_some(())
        },
    );
    let mut w = w;
    assert!(w.is_running(), "a refused login is retried, not fatal");
}
