//! The embedded broker takes only its logins by default: anonymous clients
//! are refused, each worker has its own login (`add-worker`, `join`), a
//! login opens only its own client id, and a revoked worker is refused at
//! its next connection. A burst of bad logins keeps nobody out.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use transcode_tests::{bin, ffprobe, make_media, mqtt, wait_until, System};

const JOB: Duration = Duration::from_secs(120);

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

/// The join line `add-worker NAME` prints, and its password.
fn add_worker(sys: &System, name: &str) -> (String, String) {
    let out = orchestrator_cmd(sys, &["add-worker", name]);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .strip_prefix("transcode-worker join ")
        .unwrap_or_else(|| panic!("not a join command: {stdout}"))
        .to_string();
    let password = line
        .split_once(&format!("worker-{name}:"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("a password");
    (line, password)
}

/// `mosquitto_pub` with a login (or none): whether the broker took it.
fn publish_as(sys: &System, login: Option<(&str, &str, &str)>) -> (bool, String) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &sys.broker_port.to_string()])
        .args(["-t", "transcode/test/probe", "-m", "x", "-q", "1"]);
    if let Some((client_id, user, pass)) = login {
        cmd.args(["-i", client_id, "-u", user, "-P", pass]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("mosquitto_pub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_locked_broker_takes_each_worker_by_its_own_login_only() {
    let mut sys = System::new();
    sys.locked = true;
    make_media(&sys.dir.path().join("media/clip.mkv"), 640, 360, 4, true);
    let o = sys.start_orchestrator();

    // The first start prints one worker's join line, which logs in.
    let printed: Vec<String> = o
        .log()
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("transcode-worker --config worker.toml join ")
        })
        .map(str::to_string)
        .collect();
    assert_eq!(printed.len(), 1, "{}", o.log());
    let first_pass = printed[0]
        .strip_prefix("mqtt://worker-first:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| panic!("{}", printed[0]));
    assert!(publish_as(&sys, Some(("worker-first", "worker-first", &first_pass))).0);

    // Nobody without a login: not even to watch.
    let (ok, why) = publish_as(&sys, None);
    // rumqttd closes the connection of a client without a login.
    assert!(!ok, "an anonymous publish was taken");
    assert!(
        why.contains("connection was lost") || why.to_lowercase().contains("not authori"),
        "{why}"
    );
    let out = mqtt::first_as(sys.broker_port, &[], "transcode/#");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "an anonymous subscriber read"
    );

    // A worker joins with the line add-worker printed.
    let (line, w1_pass) = add_worker(&sys, "w1");
    let config = sys.dir.path().join("w1.toml");
    let out = Command::new(bin("transcode-worker"))
        .args(["--config", &config.display().to_string(), "join", &line])
        .stdin(Stdio::null())
        .output()
        .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&config).expect("config");
    assert!(written.contains("username = \"worker-w1\""), "{written}");
    let w1 = sys.start_worker_with("w1", &[], &["--config", &config.display().to_string()]);
    sys.wait_online("w1", true, Duration::from_secs(30));

    // The whole job path, locked.
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "720p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", JOB);
    let (_, duration) = ffprobe(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert!((duration - 4.0).abs() < 0.5, "{duration}");

    // Another worker's login opens its own session, never w1's.
    let (_, w2_pass) = add_worker(&sys, "w2");
    std::thread::sleep(Duration::from_millis(1100));
    assert!(publish_as(&sys, Some(("worker-w2", "worker-w2", &w2_pass))).0);
    assert!(!publish_as(&sys, Some(("worker-w1", "worker-w2", &w2_pass))).0);
    assert!(!publish_as(&sys, Some(("worker-w1", "worker-w1", &w2_pass))).0);
    assert!(
        !publish_as(
            &sys,
            Some(("transcode-orchestrator", "transcode-orchestrator", &w2_pass))
        )
        .0
    );

    // An order another client publishes on w1's job topic is refused by the
    // broker, which logs who sent it (and w1 would refuse it too: the
    // orchestrator's orders are sealed with w1's login).
    let forged =
        json!({"job_id": "00000000-0000-4000-8000-00000000abcd", "source_path": "clip.mkv",
        "resolution": "720p", "bitrate": "1M", "attempt": 1})
        .to_string();
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &sys.broker_port.to_string()])
        .args(["-i", "worker-w2", "-u", "worker-w2", "-P", &w2_pass])
        .args(["-t", "transcode/workers/w1/jobs", "-m", &forged, "-q", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success());
    wait_until(
        Duration::from_secs(10),
        "the broker to refuse the forged order",
        || {
            o.log()
                .lines()
                .find(|l| {
                    l.contains("the broker refused a publish from client \"worker-w2\"")
                        && l.contains("transcode/workers/w1/jobs")
                })
                .map(str::to_string)
        },
    );
    // Only the real job ever ran there.
    assert_eq!(
        w1.log().matches("starting FFmpeg").count(),
        1,
        "{}",
        w1.log()
    );

    // Revoked: refused at the next connection.
    let out = orchestrator_cmd(&sys, &["revoke-worker", "w1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(w1);
    sys.wait_online("w1", false, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(!publish_as(&sys, Some(("worker-w1", "worker-w1", &w1_pass))).0);
    let _again = sys.start_worker_with("w1", &[], &["--config", &config.display().to_string()]);
    wait_until(
        Duration::from_secs(15),
        "the revoked worker to be refused",
        || {
            o.log()
                .contains("MQTT login refused: worker w1 has no login (never added, or revoked)")
                .then_some(())
        },
    );
    assert!(!sys.is_online("w1"), "a revoked worker came back online");
}

/// An MQTT 3.1.1 CONNECT with a login.
fn connect_packet(client_id: &str, user: &str, pass: &str) -> Vec<u8> {
    let field = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[4, 0xC2, 0, 30]);
    body.extend(field(client_id));
    body.extend(field(user));
    body.extend(field(pass));
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_thousand_bad_logins_keep_no_worker_out_and_cost_no_memory() {
    let mut sys = System::new();
    sys.locked = true;
    let o = sys.start_orchestrator();
    let (_, pass) = add_worker(&sys, "good");
    std::thread::sleep(Duration::from_millis(1100));
    let pid = o.pid().as_raw();
    let before = rss_kb(pid);
    let port = sys.broker_port;
    // 1,000 bad logins from 20 threads at once.
    let burst: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("worker-x{t}-{i}");
                    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.write_all(&connect_packet(&id, &id, "wrong"));
                    let mut buf = [0u8; 16];
                    let _ = s.read(&mut buf);
                }
            })
        })
        .collect();
    // Meanwhile a good worker logs in and reads a retained message.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let login = ["-i", "worker-good", "-u", "worker-good", "-P", &pass];
    let out = mqtt::first_as(port, &login, "transcode/orchestrator/availability");
    let took = t.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "online",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for b in burst {
        let _ = b.join();
    }
    eprintln!(
        "a good login during 1,000 bad ones: {:.3} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    let refused = o.log().matches("MQTT login refused").count();
    assert!(refused >= 900, "{refused} refusals logged");
    // Memory: a moment for the broker to drop the closed connections.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kb(pid);
    eprintln!("orchestrator RSS {before} kB before, {after} kB after the burst");
    assert!(
        after < before + 5 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
}

#[test]
fn a_worker_login_can_be_made_and_revoked_through_the_api() {
    let mut sys = System::new();
    sys.locked = true;
    let _o = sys.start_orchestrator();
    let url = sys.api("/api/workers/tv/login");
    let (status, body) = transcode_tests::http_json("POST", &url, Some(b""));
    assert_eq!(status, 200, "{body}");
    let join = body["join"].as_str().expect("a join line").to_string();
    let password = join
        .split_once("worker-tv:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("a password");
    assert!(
        join.ends_with(&format!("@127.0.0.1:{}", sys.broker_port)),
        "{join}"
    );
    wait_until(Duration::from_secs(5), "the new login to be taken", || {
        publish_as(&sys, Some(("worker-tv", "worker-tv", &password)))
            .0
            .then_some(())
    });
    let (status, body) = transcode_tests::http_json("DELETE", &url, None);
    assert_eq!(
        (status, body["revoked"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, _) = transcode_tests::http_json("DELETE", &url, None);
    assert_eq!(status, 404);
    wait_until(
        Duration::from_secs(5),
        "the revoked login to be refused",
        || (!publish_as(&sys, Some(("worker-tv", "worker-tv", &password))).0).then_some(()),
    );
    let (status, _) =
        transcode_tests::http_json("POST", &sys.api("/api/workers/a%2Fb/login"), Some(b""));
    assert_eq!(status, 400);
    let (status, _, _) =
        transcode_tests::http_request(sys.http_port, "POST", "/api/workers/tv/login", &[]);
    assert_eq!(status, 401);
}
