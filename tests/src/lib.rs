//! The harness of the end-to-end tests: it builds and starts the real
//! binaries on free loopback ports, waits on conditions with deadlines, talks
//! to them over HTTP and through the real `mosquitto_sub`/`mosquitto_pub`,
//! and kills every child it started, also when a test fails.
//!
//! - [`system`]: [`bin`], the path of a workspace binary, built once per test
//!   run; [`Proc`], a child process that is killed (and its log shown when
//!   the test failed) on drop; [`System`], an orchestrator and its workers,
//!   configured for a test.
//! - [`simulated`]: [`simulated_worker`], the worker's side of the protocol
//!   without a process, and its [`simulated_heartbeat`].
//! - this file: [`wait_until`] (polling with a deadline, never a fixed
//!   sleep), [`free_port`], [`env()`], and HTTP and `/proc` helpers.
//! - [`mqtt`]: `mosquitto_sub`/`mosquitto_pub` wrappers.
//! - [`split`]: split-job requests, their chunks, and the whole-stream check.
//! - [`proxy`]: a TCP relay that can slow a link down and cut it.
//! - [`mosquitto`]: a real Mosquitto on a free port.
//! - [`mdns`]: a broker advertised over mDNS from the test process.
//! - [`media`]: test videos made with FFmpeg's generators.
//! - [`mqtt_proxy`]: a relay that holds some of a client's publishes back.

pub mod browser;
pub mod decode;
pub mod homeassistant_rules;
pub mod load;
pub mod mdns;
pub mod media;
pub mod mosquitto;
pub mod mqtt;
pub mod mqtt_proxy;
pub mod proxy;
pub mod simulated;
pub mod split;
pub mod system;

pub use media::{make_heavy_media, make_media, make_noisy_media};
pub use simulated::{simulated_heartbeat, simulated_worker};
pub use system::{bin, Proc, System, API_TOKEN};

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde_json::Value;

/// A port on loopback that nothing listens on right now, and that nothing
/// else will take before the test binds it: it lies below the kernel's
/// ephemeral range (where outgoing connections and port-0 listeners, a
/// browser's or FFmpeg's, get theirs), and is handed out once per process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32);
    for _ in 0..1000 {
        // xorshift: no crate needed for spreading picks over the range.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = low + (seed % u64::from(high - low)) as u16;
        let mut taken = given.lock().unwrap_or_else(|p| p.into_inner());
        if taken.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.insert(port);
        return port;
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out a free port")
}

/// Fails the test unless the programs the suite needs are installed.
pub fn require_tools() {
    for (tool, package) in [
        ("ffmpeg", "ffmpeg"),
        ("ffprobe", "ffmpeg"),
        ("mosquitto_sub", "mosquitto-clients"),
        ("mosquitto_pub", "mosquitto-clients"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is not installed: run ./dev setup (or apt-get install {package})"
        );
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` saying what was awaited.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `Authorization` with [`API_TOKEN`].
pub fn bearer() -> String {
    format!("Bearer {API_TOKEN}")
}

/// An HTTP GET (with the API token) returning JSON; `None` when the server
/// is not answering or the status is not 200.
pub fn get_json(url: &str) -> Option<Value> {
    get_json_with(url, API_TOKEN)
}

/// [`get_json`] with another API token.
pub fn get_json_with(url: &str, token: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()
        .ok()?;
    resp.body_mut().read_json::<Value>().ok()
}

/// One environment variable.
pub fn env(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_string(), value.into())
}

/// What ffprobe says about a file or URL: (codec_type, codec_name, width,
/// height) per stream, and the duration.
pub fn ffprobe(target: &str) -> (Vec<(String, String, u64, u64)>, f64) {
    let text = decode::run_ffprobe(&[
        "-print_format",
        "json",
        "-show_entries",
        "stream=codec_type,codec_name,width,height:format=duration",
        target,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&text).expect("ffprobe JSON");
    let streams = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["codec_type"].as_str().unwrap_or_default().to_string(),
                        s["codec_name"].as_str().unwrap_or_default().to_string(),
                        s["width"].as_u64().unwrap_or(0),
                        s["height"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (streams, duration)
}

/// A raw HTTP/1.1 GET of exactly `path` (no client-side normalisation):
/// status code, headers (lower-case names) and body.
pub fn http_raw(port: u16, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_request(port, "GET", path, &[])
}

/// A raw HTTP/1.1 request of exactly `path` with `headers` added (no
/// client-side normalisation): status code, headers (lower-case names) and
/// body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_request_with_body(port, method, path, headers, "")
}

/// [`http_request`] with a body (give its `Content-Length` in `headers`).
pub fn http_request_with_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The whole request in one write, sent at once (as curl does).
    let _ = s.set_nodelay(true);
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n{body}"
    );
    s.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body)
}

/// A header of an [`http_raw`] answer by its lower-case name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Pids of the live processes named `name` whose parent is `parent`.
pub fn children_named(parent: Pid, name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let comm = &stat[open + 1..close];
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next().unwrap_or("");
            let ppid = rest.next().and_then(|p| p.parse::<i32>().ok());
            comm == name && ppid == Some(parent.as_raw()) && state != "Z"
        })
        .collect()
}

/// Processes named `name` in any state (zombies included) whose parent is
/// `parent`: a reaped child is not among them.
pub fn any_children_named(parent: Pid, name: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let close = stat.rfind(')').unwrap_or(0);
                let open = stat.find('(').unwrap_or(0);
                let ppid = stat[close + 1..]
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<i32>().ok());
                stat.get(open + 1..close) == Some(name) && ppid == Some(parent.as_raw())
            })
        })
        .count()
}

/// An HTTP request with a body (or none) that returns the status and the
/// JSON answer, whatever the status.
pub fn http_json(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let result = match (method, body) {
        ("POST", Some(b)) => agent
            .post(url)
            .header("content-type", "application/json")
            .header("authorization", bearer())
            .send(b),
        ("DELETE", _) => agent.delete(url).header("authorization", bearer()).call(),
        _ => agent.get(url).header("authorization", bearer()).call(),
    };
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let value = resp.body_mut().read_json::<Value>().unwrap_or(Value::Null);
            (status, value)
        }
        Err(e) => panic!("{method} {url}: {e}"),
    }
}
