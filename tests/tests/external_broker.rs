//! The system on a broker the house already has: a real Mosquitto with a
//! password file and no anonymous access, instead of the embedded broker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use transcode_tests::{
    env, ffprobe, free_port, make_media, mosquitto, mqtt, wait_until, Proc, System,
};

/// Starts Mosquitto on a free loopback port with one user.
fn start_mosquitto(dir: &Path, user: &str, password: &str) -> (Proc, u16) {
    let passwords = dir.join("passwd");
    passwd(&passwords, user, password);
    let port = free_port();
    let config = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}",
        passwords.display()
    );
    (mosquitto::start("mosquitto", dir, port, &config), port)
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

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, made
/// with the openssl command as a person would: PEM files in `dir`, (CA,
/// certificate, key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs (./dev setup installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &[
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=transcode test CA",
        ][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[
        &["req", "-subj", "/CN=localhost"][..],
        &ec,
        &["-keyout", "broker.key", "-out", "broker.csr"],
    ]
    .concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "broker.pem",
    ]);
    // Readable by the broker whichever user it runs as (openssl makes keys
    // for their owner only).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("broker.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("broker.key readable");
    (
        dir.join("ca.pem"),
        dir.join("broker.pem"),
        dir.join("broker.key"),
    )
}

/// `mosquitto_passwd -b FILE USER PASSWORD`, making the file first.
fn passwd(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    if !file.exists() {
        cmd.arg("-c");
    }
    let status = cmd
        .arg("-b")
        .arg(file)
        .args([user, password])
        .stdin(Stdio::null())
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
}

#[test]
fn the_job_path_on_mosquitto_with_tls_per_worker_users_and_an_acl() {
    let mut sys = System::new();
    let dir = sys.dir.path().to_path_buf();
    let (ca, cert, key) = make_certificates(&dir);
    let port = free_port();
    sys.broker_port = port;
    let url = format!("mqtts://127.0.0.1:{port}");
    let ca_arg = ca.display().to_string();
    sys.orchestrator_env.extend([
        env("TRANSCODE_BROKER__EMBEDDED", "false"),
        env("TRANSCODE_BROKER__URL", &url),
        env("TRANSCODE_BROKER__USERNAME", "transcode-orchestrator"),
        env("TRANSCODE_BROKER__PASSWORD", "orchestrator pass"),
        env("TRANSCODE_BROKER__CA_FILE", &ca_arg),
    ]);

    // add-worker, as a person would run it for an external broker: the join
    // line (mqtts://) and the lines Mosquitto needs.
    let out = Command::new(transcode_tests::bin("transcode-orchestrator"))
        .arg("add-worker")
        .arg("w1")
        .envs(sys.orchestrator_env.iter().cloned())
        .env("TRANSCODE_STATE__DIR", sys.state_dir())
        .stdin(Stdio::null())
        .output()
        .expect("add-worker runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("transcode-worker join ")
        .expect("a join line")
        .to_string();
    assert!(line.starts_with("mqtts://worker-w1:"), "{line}");
    let w1_pass = line
        .split_once("worker-w1:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("a password");
    let told = String::from_utf8_lossy(&out.stderr).to_string();
    let acl_lines = told
        .split_once("acl_file:\n")
        .map(|(_, lines)| lines.trim().to_string())
        .unwrap_or_else(|| panic!("no ACL lines: {told}"));
    assert!(acl_lines.starts_with("user worker-w1\n"), "{acl_lines}");

    // Mosquitto with TLS only, a user per worker and an ACL file. The
    // shared "watch" login is careless here (it may write anywhere): the
    // worker's sealed orders are what keeps a forged one out.
    let passwords = dir.join("passwd");
    passwd(&passwords, "transcode-orchestrator", "orchestrator pass");
    passwd(&passwords, "worker-w1", &w1_pass);
    passwd(&passwords, "watch", "watch pass");
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        format!(
            "user transcode-orchestrator\ntopic readwrite transcode/#\ntopic readwrite homeassistant/#\n\nuser watch\ntopic readwrite transcode/#\n\n{acl_lines}\n"
        ),
    )
    .expect("acl");
    let config = format!(
        "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}",
        passwords.display(),
        acl.display(),
        ca.display(),
        cert.display(),
        key.display()
    );
    let _broker = mosquitto::start("mosquitto-tls", &dir, port, &config);

    make_media(&dir.join("media/clip.mkv"), 1280, 720, 6, true);
    let o = sys.start_orchestrator();
    let config = dir.join("w1.toml").display().to_string();
    let out = Command::new(transcode_tests::bin("transcode-worker"))
        .args(["--config", &config, "join", &line])
        .stdin(Stdio::null())
        .output()
        .expect("join runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w1 = sys.start_worker_with(
        "w1",
        &[
            ("TRANSCODE_BROKER__URL", &url),
            ("TRANSCODE_BROKER__CA_FILE", &ca_arg),
        ],
        &["--config", &config],
    );
    sys.wait_online("w1", true, Duration::from_secs(30));

    // The whole job path, over TLS, with sealed orders.
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "720p", "bitrate": "1M"}));
    let done = sys.wait_job(&id, "completed", Duration::from_secs(120));
    let (streams, duration) = ffprobe(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert!(
        streams.contains(&("video".into(), "h264".into(), 1280, 720)),
        "{streams:?} {done}"
    );
    assert!((duration - 6.0).abs() <= 0.5, "{duration}");
    assert!(
        o.log().contains("sealed with its password"),
        "the orchestrator seals orders with the logins add-worker made"
    );

    let tls = ["--cafile", ca_arg.as_str()];
    let as_user = |user: &str, pass: &str| -> Vec<String> {
        tls.iter()
            .map(|s| s.to_string())
            .chain(["-u", user, "-P", pass].map(String::from))
            .collect()
    };
    let pub_as = |login: &[String], topic: &str, payload: &str, retain: bool| {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(login)
            .args(["-t", topic, "-m", payload, "-q", "1"]);
        if retain {
            cmd.arg("-r");
        }
        cmd.stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let watch = as_user("watch", "watch pass");
    let watch_args: Vec<&str> = watch.iter().map(String::as_str).collect();

    // The ACL keeps w1 to its own topics: its publish as another worker
    // never reaches anyone.
    let w1_login = as_user("worker-w1", &w1_pass);
    assert!(pub_as(
        &w1_login,
        "transcode/workers/w2/availability",
        "offline",
        true
    ));
    assert!(pub_as(
        &w1_login,
        "transcode/workers/w1/probe",
        "mine",
        true
    ));
    assert_eq!(
        mqtt::retained_as(port, &watch_args, "transcode/workers/w1/probe").as_deref(),
        Some("mine"),
        "w1 writes its own topics"
    );
    assert_eq!(
        mqtt::retained_as(port, &watch_args, "transcode/workers/w2/availability"),
        None,
        "w1 may not write w2's"
    );

    // An order that is not the orchestrator's, on a topic the careless ACL
    // lets through: w1 refuses it (its seal does not match).
    let forged =
        json!({"job_id": "00000000-0000-4000-8000-00000000beef", "source_path": "clip.mkv",
        "resolution": "720p", "bitrate": "1M", "attempt": 1})
        .to_string();
    assert!(pub_as(&watch, "transcode/workers/w1/jobs", &forged, false));
    wait_until(
        Duration::from_secs(10),
        "w1 to refuse the forged order",
        || {
            w1.log()
                .lines()
                .any(|l| {
                    l.contains("order refused")
                        && l.contains("00000000-0000-4000-8000-00000000beef")
                })
                .then_some(())
        },
    );
    assert_eq!(
        w1.log().matches("starting FFmpeg").count(),
        1,
        "{}",
        w1.log()
    );

    // Nothing in the clear: a client without TLS gets no answer.
    let out = mqtt::first_as(port, &["-u", "watch", "-P", "watch pass"], "transcode/#");
    assert!(!out.status.success() && out.stdout.is_empty());
}

#[test]
fn an_oversized_retained_message_is_skipped_with_a_log_line_not_a_reconnect_loop() {
    let mut sys = System::new();
    let (_broker, port) = start_mosquitto(sys.dir.path(), "transcode", "pass");
    sys.broker_port = port;
    // Someone left 5 MB on one of our retained topics.
    let big = vec![b'x'; 5 * 1024 * 1024];
    let file = sys.dir.path().join("big.bin");
    std::fs::write(&file, &big).expect("payload");
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "transcode",
            "-P",
            "pass",
        ])
        .args([
            "-t",
            "transcode/jobs/00000000-0000-4000-8000-0000000000ff/status",
            "-r",
            "-q",
            "1",
            "-f",
        ])
        .arg(&file)
        .stdin(Stdio::null())
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success());
    sys.orchestrator_env.extend([
        env("TRANSCODE_BROKER__EMBEDDED", "false"),
        env("TRANSCODE_BROKER__URL", format!("mqtt://127.0.0.1:{port}")),
        env("TRANSCODE_BROKER__USERNAME", "transcode"),
        env("TRANSCODE_BROKER__PASSWORD", "pass"),
    ]);
    make_media(&sys.dir.path().join("media/clip.mkv"), 320, 240, 2, true);
    let o = sys.start_orchestrator();
    let _w = sys.start_worker(
        "house",
        &[
            ("TRANSCODE_BROKER__USERNAME", "transcode"),
            ("TRANSCODE_BROKER__PASSWORD", "pass"),
        ],
    );
    sys.wait_online("house", true, Duration::from_secs(30));
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", Duration::from_secs(60));
    let log = o.log();
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "one connection, no reconnect loop:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("00000000-0000-4000-8000-0000000000ff") && l.contains("bytes")),
        "the oversized message is named in the log:\n{log}"
    );
}
