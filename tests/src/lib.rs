//! The harness of the end-to-end tests: it builds and starts the real
//! binaries on free loopback ports, waits on conditions with deadlines, talks
//! to them over HTTP and through the real `mosquitto_sub`/`mosquitto_pub`,
//! and kills every child it started, also when a test fails.
//!
//! - [`bin`]: the path of a workspace binary, built once per test run.
//! - [`Proc`]: a child process that is killed (and its log shown when the
//!   test failed) on drop.
//! - [`System`]: an orchestrator and its workers, configured for a test.
//! - [`wait_until`]: polling with a deadline, never a fixed sleep.
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
pub mod split;

pub use media::{make_heavy_media, make_media, make_noisy_media};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The path of a binary of the workspace, after building all of them once
/// per test process, so a test never runs a stale binary.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // target/debug/deps/<test> or target/release/<bench>
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let mut args = vec!["build", "--quiet", "--workspace", "--bins"];
        if dir.ends_with("release") {
            args.push("--release");
        }
        let out = Command::new(cargo)
            .args(&args)
            .current_dir(&workspace)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build --workspace --bins failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match dir {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

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

/// A child process of the test. Dropping it kills it; if the test is
/// failing, the last lines of its log are printed first.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// The child leads its own process group, killed whole on drop.
    group: bool,
}

impl Proc {
    /// Starts `program` with `env` (and no inherited `TRANSCODE_*`), its
    /// stdout and stderr going to `log_dir/name.log`. The child is killed
    /// if the test thread dies without dropping it.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Proc {
        Proc::start(name, program, args, env, log_dir, false)
    }

    /// Like [`Proc::spawn`], for a program that starts programs of its own
    /// (a script): it leads a new process group, and the whole group is
    /// killed on drop.
    pub fn spawn_group(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Proc {
        Proc::start(name, program, args, env, log_dir, true)
    }

    fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
        group: bool,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file can be created");
        let err = file.try_clone().expect("log file can be cloned");
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        for (k, _) in std::env::vars() {
            if k.starts_with("TRANSCODE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info,rumqttd=off,rumqttc=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs in the hook.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if group {
                    libc::setpgid(0, 0);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
            group,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Where the process's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Counts log lines containing every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> usize {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return 0;
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        if self.group {
            let _ = kill(Pid::from_raw(-self.pid().as_raw()), Signal::SIGKILL);
        }
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- last log lines of {} -----", self.name);
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// The API token every test orchestrator gets: [`System`] writes it into
/// the state folder before the first start, as a person may replace the
/// token the orchestrator made.
pub const API_TOKEN: &str = "7e57a11ce0ffee00c0ffee00ba5eba11d0d0cafe1234567890abcdef00112233";

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

/// An orchestrator (with its embedded broker) and workers, on free loopback
/// ports, with everything they write under one temporary folder.
pub struct System {
    pub dir: tempfile::TempDir,
    pub broker_port: u16,
    pub http_port: u16,
    /// Extra environment for the orchestrator, kept for restarts.
    pub orchestrator_env: Vec<(String, String)>,
    /// Keep the embedded broker's default: logins only. Otherwise the
    /// tests that are not about logins let clients in anonymously
    /// (`broker.allow_anonymous`), as a closed lab would.
    pub locked: bool,
}

impl Default for System {
    fn default() -> Self {
        System::new()
    }
}

impl System {
    pub fn new() -> System {
        require_tools();
        System {
            dir: tempfile::tempdir().expect("temp dir"),
            broker_port: free_port(),
            http_port: free_port(),
            orchestrator_env: Vec::new(),
            locked: false,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn broker_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.broker_port)
    }

    /// Starts the orchestrator and waits until its API and broker answer.
    pub fn start_orchestrator(&self) -> Proc {
        let mut p = self.spawn_orchestrator(&[]);
        wait_until(
            Duration::from_secs(20),
            "the orchestrator's /healthz",
            || {
                assert!(p.is_running(), "the orchestrator exited:\n{}", p.log());
                get_json(&self.api("/healthz"))
            },
        );
        p
    }

    /// The orchestrator's state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the orchestrator with `args` and does not wait for it.
    pub fn spawn_orchestrator(&self, args: &[&str]) -> Proc {
        let token = self.state_dir().join("api-token");
        if !token.exists() {
            let _ = std::fs::create_dir_all(self.state_dir());
            std::fs::write(&token, API_TOKEN).expect("the test's API token");
        }
        let mut env = vec![
            env(
                "TRANSCODE_BROKER__LISTEN",
                format!("127.0.0.1:{}", self.broker_port),
            ),
            env(
                "TRANSCODE_HTTP__LISTEN",
                format!("127.0.0.1:{}", self.http_port),
            ),
            env("TRANSCODE_BROKER__MDNS", "false"),
            env(
                "TRANSCODE_BROKER__ALLOW_ANONYMOUS",
                if self.locked { "false" } else { "true" },
            ),
            env(
                "TRANSCODE_STATE__DIR",
                self.dir.path().join("state").display().to_string(),
            ),
        ];
        env.extend(self.orchestrator_env.iter().cloned());
        Proc::spawn(
            "orchestrator",
            &bin("transcode-orchestrator"),
            args,
            &env,
            self.dir.path(),
        )
    }

    /// Starts a worker named `id` with a one-second heartbeat and `extra`
    /// settings.
    pub fn start_worker(&self, id: &str, extra: &[(&str, &str)]) -> Proc {
        self.start_worker_with(id, extra, &[])
    }

    /// [`System::start_worker`] with command-line arguments (`--config`).
    pub fn start_worker_with(&self, id: &str, extra: &[(&str, &str)], args: &[&str]) -> Proc {
        let media = self.dir.path().join("media");
        let _ = std::fs::create_dir_all(&media);
        let mut env = vec![
            env("TRANSCODE_WORKER_ID", id),
            env("TRANSCODE_BROKER__URL", self.broker_url()),
            env("TRANSCODE_HTTP__LISTEN", "127.0.0.1:0"),
            env("TRANSCODE_HTTP__ADVERTISE", "127.0.0.1"),
            env("TRANSCODE_HEARTBEAT__INTERVAL_S", "1"),
            env("TRANSCODE_MEDIA__ROOT", media.display().to_string()),
            env(
                "TRANSCODE_TRANSCODE__OUTPUT_DIR",
                self.dir
                    .path()
                    .join(format!("out-{id}"))
                    .display()
                    .to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Proc::spawn(
            &format!("worker-{id}"),
            &bin("transcode-worker"),
            args,
            &env,
            self.dir.path(),
        )
    }

    /// Starts a worker like [`System::start_worker`] and waits until the
    /// orchestrator lists it online.
    pub fn start_online(&self, id: &str, extra: &[(&str, &str)]) -> Proc {
        let w = self.start_worker(id, extra);
        self.wait_online(id, true, Duration::from_secs(30));
        w
    }

    /// `GET /api/workers`, or an empty list while the API does not answer.
    pub fn workers(&self) -> Vec<Value> {
        get_json(&self.api("/api/workers"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The worker's entry in `/api/workers`.
    pub fn worker(&self, id: &str) -> Option<Value> {
        self.workers()
            .into_iter()
            .find(|w| w["worker_id"].as_str() == Some(id))
    }

    pub fn is_online(&self, id: &str) -> bool {
        self.worker(id)
            .is_some_and(|w| w["online"].as_bool() == Some(true))
    }

    /// Waits until the orchestrator lists `id` with `online == want`.
    pub fn wait_online(&self, id: &str, want: bool, timeout: Duration) -> Duration {
        let started = Instant::now();
        let what = format!(
            "worker {id} to be {}",
            if want { "online" } else { "offline" }
        );
        wait_until(timeout, &what, || {
            (self.is_online(id) == want).then_some(())
        });
        started.elapsed()
    }
}

/// One environment variable.
pub fn env(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_string(), value.into())
}

/// A worker speaking the real protocol: persistent session, retained last
/// will, `online` and a retained heartbeat on every connection.
/// The heartbeat of a simulated worker: idle, one slot, libx264, Linux.
pub fn simulated_heartbeat(id: &str) -> transcode_common::wire::Heartbeat {
    use transcode_common::wire::{Heartbeat, Os, WorkerStatus};
    Heartbeat {
        worker_id: id.to_string(),
        ip_address: "127.0.0.1".into(),
        port: 9,
        os: Os::Linux,
        hw_accel: vec![],
        status: WorkerStatus::Idle,
        cpu_usage: 1.0,
        hostname: None,
        version: None,
        cpu_cores: Some(2),
        memory_total_mb: None,
        memory_available_mb: None,
        max_jobs: Some(1),
        active_jobs: vec![],
        encoders: vec!["libx264".into()],
        weight: None,
        interval_s: Some(15),
        timestamp: Some(transcode_common::unix_ms()),
        finished_runs: Vec::new(),
    }
}

pub async fn simulated_worker(id: String, port: u16) {
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
    let topics = transcode_common::topics::Topics::new("transcode").expect("prefix");
    let mut opts = MqttOptions::new(format!("worker-{id}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    opts.set_last_will(LastWill::new(
        topics.worker_availability(&id),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let heartbeat = simulated_heartbeat(&id);
    let payload = transcode_common::wire::encode(&heartbeat);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_publish(
                    topics.worker_availability(&id),
                    QoS::AtLeastOnce,
                    true,
                    "online",
                );
                let _ = client.try_publish(
                    topics.worker_heartbeat(&id),
                    QoS::AtLeastOnce,
                    true,
                    payload.clone(),
                );
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
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

impl System {
    /// `POST /api/jobs` with a JSON request; panics unless it is accepted.
    pub fn submit(&self, request: &Value) -> String {
        let (status, job) = http_json(
            "POST",
            &self.api("/api/jobs"),
            Some(request.to_string().as_bytes()),
        );
        assert_eq!(status, 202, "{job}");
        job["job_id"].as_str().expect("job_id").to_string()
    }

    /// `GET /api/jobs/{id}`.
    pub fn job(&self, job_id: &str) -> Value {
        get_json(&self.api(&format!("/api/jobs/{job_id}"))).unwrap_or(Value::Null)
    }

    /// Waits until the job is in `state`; panics early if it ends otherwise.
    pub fn wait_job(&self, job_id: &str, state: &str, timeout: Duration) -> Value {
        wait_until(timeout, &format!("job {job_id} to be {state}"), || {
            let job = self.job(job_id);
            let now = job["state"].as_str()?;
            if now != state && ["completed", "failed", "cancelled"].contains(&now) {
                panic!("job {job_id} ended {now} instead of {state}: {job}");
            }
            (now == state).then_some(job)
        })
    }
}
