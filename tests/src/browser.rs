//! Playing an HLS stream the way a viewer does: hls.js in Debian's headless
//! Chromium, driven by `tests/browser/play.mjs` (playwright-core), which
//! reports stalls and errors as JSON lines.
//!
//! - [`play`]: plays a stream to its end (or a timeout) and returns what
//!   happened.
//! - [`start_play`]: the same without blocking, for a test that does
//!   something while the browser plays (kill a worker 14 s in); its
//!   [`PlayHandle::current_time`] follows the playback.
//! - [`require_browser`]: fails the test unless `./dev setup` installed the
//!   browser and the harness's npm packages.
//!
//! The page is served from its own loopback origin, so the stream's CORS
//! headers matter as in a real browser. The script runs as a [`Proc`] that
//! leads its own process group; Chromium dies with it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::Proc;

/// The harness's folder: `play.mjs`, `package.json`, `node_modules`.
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The Chromium that `play.mjs` starts: `$CHROMIUM` or `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails the test unless node, Chromium and the harness's npm packages
/// (hls.js, playwright-core) are installed.
pub fn require_browser() {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        node,
        "node is not installed: run ./dev setup (or apt-get install nodejs npm)"
    );
    let chromium = chromium_path();
    assert!(
        chromium.is_file(),
        "{} is not installed: run ./dev setup (or apt-get install chromium)",
        chromium.display()
    );
    let dir = harness_dir();
    for needed in [
        "node_modules/hls.js/dist/hls.min.js",
        "node_modules/playwright-core/package.json",
    ] {
        assert!(
            dir.join(needed).is_file(),
            "{} is missing: run ./dev setup (it runs npm ci in {})",
            dir.join(needed).display(),
            dir.display()
        );
    }
}

/// What one playback did, from `play.mjs`'s summary line.
#[derive(Clone)]
pub struct Playback {
    /// The video reached its end (`ended` fired).
    pub ended: bool,
    /// Wall-clock seconds, after the first `playing` and before `ended`,
    /// during which the video waited or its time did not advance.
    pub stall_s: f64,
    /// hls.js's fatal errors (and the video element's), as
    /// `"type/details url (reason)"`; also why the harness itself failed.
    pub fatal_errors: Vec<String>,
    /// Every error, fatal or not, in the same form.
    pub errors: Vec<String>,
    /// `video.duration` at the end; NaN when unknown (no media, or a live
    /// playlist without an end).
    pub duration: f64,
    /// `video.currentTime` at the end; NaN when unknown.
    pub current_time: f64,
    /// Seconds from asking hls.js to load the stream to the first
    /// `playing`; `None` when it never played.
    pub started_after_s: Option<f64>,
    /// Why the playback stopped: `ended`, `fatal_error`, `timeout`,
    /// `browser_gone`, `page_crashed`, `signal SIGTERM`, `harness_error: ...`,
    /// or `no summary` when the script died without one.
    pub reason: String,
    /// Every JSON line the script printed, the summary last.
    pub events: Vec<Value>,
    /// The script's log (its stdout and stderr).
    pub log: PathBuf,
}

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playback")
            .field("ended", &self.ended)
            .field("reason", &self.reason)
            .field("stall_s", &self.stall_s)
            .field("duration", &self.duration)
            .field("current_time", &self.current_time)
            .field("started_after_s", &self.started_after_s)
            .field("fatal_errors", &self.fatal_errors)
            .field("errors", &self.errors)
            .field(
                "events",
                &format_args!("{} lines in {}", self.events.len(), self.log.display()),
            )
            .finish()
    }
}

/// Plays `url` at `rate` with hls.js from its first segment until it ends,
/// fails fatally or `timeout` passes, and says how it went.
pub fn play(url: &str, rate: f64, timeout: Duration, log_dir: &Path) -> Playback {
    start_play(url, rate, timeout, log_dir).wait(timeout + Duration::from_secs(30))
}

/// Starts playing `url` like [`play`] and returns at once. The script
/// stops by itself after `timeout`; dropping the handle stops it earlier.
pub fn start_play(url: &str, rate: f64, timeout: Duration, log_dir: &Path) -> PlayHandle {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    let name = format!("browser-{n}");
    let log = log_dir.join(format!("{name}.log"));
    // The log is appended to: read only what this run writes.
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let script = harness_dir().join("play.mjs");
    let script = script.to_str().expect("the harness path is UTF-8");
    let rate = rate.to_string();
    let timeout_s = format!("{:.3}", timeout.as_secs_f64().max(0.001));
    let proc = Proc::spawn_group(
        &name,
        Path::new("node"),
        &[script, url, "--rate", &rate, "--timeout", &timeout_s],
        &[],
        log_dir,
    );
    PlayHandle {
        proc: Some(proc),
        log,
        offset,
    }
}

/// A playback in progress; see [`start_play`].
pub struct PlayHandle {
    proc: Option<Proc>,
    log: PathBuf,
    offset: u64,
}

impl PlayHandle {
    /// The JSON lines the script printed so far.
    pub fn events(&self) -> Vec<Value> {
        read_events(&self.log, self.offset)
    }

    /// The video's time in the latest report so far (progress every second,
    /// and `playing`, `waiting`, `ended`); `None` before the first.
    pub fn current_time(&self) -> Option<f64> {
        self.events().iter().rev().find_map(|e| {
            let kind = e["event"].as_str()?;
            ["progress", "playing", "waiting", "stalled", "ended"]
                .contains(&kind)
                .then(|| e["t"].as_f64())
                .flatten()
        })
    }

    /// The script's process id (it leads its process group; Chromium is
    /// its child), while it runs.
    pub fn pid(&self) -> Option<nix::unistd::Pid> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Whether the script is still playing.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// Waits up to `timeout` for the playback to finish (asking the script
    /// to stop, and killing it, past that) and returns what happened.
    pub fn wait(mut self, timeout: Duration) -> Playback {
        if let Some(mut proc) = self.proc.take() {
            if proc.wait_exit(timeout).is_none() {
                // It still prints its summary and closes the browser.
                proc.signal(Signal::SIGTERM);
                if proc.wait_exit(Duration::from_secs(10)).is_none() {
                    proc.kill();
                }
            }
            drop(proc);
        }
        playback(&self.log, self.events())
    }
}

impl Drop for PlayHandle {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            // Let the script close Chromium (and remove its profile) before
            // Proc's drop kills the whole group.
            if proc.is_running() {
                proc.signal(Signal::SIGTERM);
                let _ = proc.wait_exit(Duration::from_secs(5));
            }
        }
    }
}

/// The complete JSON lines of `log` from `offset` (stderr's other lines
/// skipped).
fn read_events(log: &Path, offset: u64) -> Vec<Value> {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    // A last line without its newline may still be being written.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"].is_string())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn playback(log: &Path, events: Vec<Value>) -> Playback {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    match events
        .iter()
        .rev()
        .find(|e| e["event"] == "summary")
        .cloned()
    {
        Some(s) => Playback {
            ended: s["ended"].as_bool().unwrap_or(false),
            stall_s: s["stall_s"].as_f64().unwrap_or(0.0),
            fatal_errors: strings(&s["fatal_errors"]),
            errors: strings(&s["errors"]),
            duration: num(&s["duration"]),
            current_time: num(&s["current_time"]),
            started_after_s: s["started_after_s"].as_f64(),
            reason: s["reason"].as_str().unwrap_or_default().to_string(),
            events,
            log: log.to_path_buf(),
        },
        None => {
            // Killed, or failed before it could say anything: what it said.
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(10)..].join("\n");
            let errors: Vec<String> = events
                .iter()
                .filter(|e| e["event"] == "error")
                .map(|e| e.to_string())
                .collect();
            let last_t = events
                .iter()
                .rev()
                .find_map(|e| e["t"].as_f64())
                .unwrap_or(f64::NAN);
            Playback {
                ended: events.iter().any(|e| e["event"] == "ended"),
                stall_s: events
                    .iter()
                    .rev()
                    .find_map(|e| e["stall_s"].as_f64())
                    .unwrap_or(0.0),
                fatal_errors: vec![format!(
                    "play.mjs exited without a summary; its last lines:\n{tail}"
                )],
                errors,
                duration: f64::NAN,
                current_time: last_t,
                started_after_s: events
                    .iter()
                    .find(|e| e["event"] == "playing")
                    .and_then(|e| e["wall"].as_f64()),
                reason: "no summary".into(),
                events,
                log: log.to_path_buf(),
            }
        }
    }
}

/// One Chromium page a test acts on like a person (`tests/browser/drive.mjs`):
/// load, click, type, wait for what the page shows, take a screenshot.
/// Every request the page makes is kept ([`Page::requests`]).
pub struct Page {
    proc: Proc,
    port: u16,
    agent: ureq::Agent,
}

impl Page {
    /// Opens a browser with one page of `width`×`height` CSS pixels.
    pub fn open(log_dir: &Path, width: u32, height: u32) -> Page {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("page-{n}");
        let log = log_dir.join(format!("{name}.log"));
        let script = harness_dir().join("drive.mjs");
        let script = script.to_str().expect("the harness path is UTF-8");
        let (w, h) = (width.to_string(), height.to_string());
        let mut proc = Proc::spawn_group(
            &name,
            Path::new("node"),
            &[script, "--width", &w, "--height", &h],
            &[],
            log_dir,
        );
        let port = crate::wait_until(Duration::from_secs(60), "the browser to start", || {
            assert!(proc.is_running(), "drive.mjs exited:\n{}", proc.log());
            read_events(&log, 0)
                .iter()
                .find(|e| e["event"] == "ready")
                .and_then(|e| e["port"].as_u64())
                .map(|p| p as u16)
        });
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        Page { proc, port, agent }
    }

    /// Sends one command; its value, or the browser's error.
    pub fn try_command(&self, command: Value) -> Result<Value, String> {
        let mut resp = self
            .agent
            .post(&format!("http://127.0.0.1:{}/", self.port))
            .send(command.to_string())
            .map_err(|e| format!("drive.mjs does not answer: {e}"))?;
        let answer: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| format!("drive.mjs answered something else than JSON: {e}"))?;
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("no reason").to_string())
        }
    }

    fn command(&self, command: Value) -> Value {
        let what = command.to_string();
        self.try_command(command).unwrap_or_else(|e| {
            panic!(
                "the browser could not do {what}: {e}\n(the page's log: {})",
                self.proc.name
            )
        })
    }

    pub fn goto(&self, url: &str) {
        self.command(serde_json::json!({"cmd": "goto", "url": url}));
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&self, js: &str) -> Value {
        self.command(serde_json::json!({"cmd": "eval", "js": js}))
    }

    /// Waits until the expression is truthy in the page; its value and how
    /// long that took. Panics with `what` after `timeout`.
    pub fn wait(&self, what: &str, js: &str, timeout: Duration) -> (Value, Duration) {
        let started = std::time::Instant::now();
        match self.try_command(serde_json::json!({
            "cmd": "wait", "js": js, "timeout_ms": timeout.as_millis() as u64
        })) {
            Ok(v) => (v["value"].clone(), started.elapsed()),
            Err(e) => {
                let body = self
                    .try_command(
                        serde_json::json!({"cmd": "eval", "js": "document.body.innerText"}),
                    )
                    .unwrap_or_default();
                panic!(
                    "the page did not show {what} within {timeout:?} ({e}); it shows:\n{}",
                    body.as_str().unwrap_or_default()
                )
            }
        }
    }

    pub fn click(&self, selector: &str) {
        self.command(serde_json::json!({"cmd": "click", "selector": selector}));
    }

    pub fn fill(&self, selector: &str, value: &str) {
        self.command(serde_json::json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    pub fn select(&self, selector: &str, value: &str) {
        self.command(serde_json::json!({"cmd": "select", "selector": selector, "value": value}));
    }

    pub fn press(&self, key: &str) {
        self.command(serde_json::json!({"cmd": "press", "key": key}));
    }

    pub fn screenshot(&self, path: &Path, full_page: bool) {
        self.command(serde_json::json!({
            "cmd": "screenshot", "path": path, "full_page": full_page
        }));
    }

    /// Every URL the page asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        strings(&self.command(serde_json::json!({"cmd": "requests"})))
    }

    /// Uncaught errors of the page's scripts so far.
    pub fn page_errors(&self) -> Vec<String> {
        read_events(self.proc.log_path(), 0)
            .iter()
            .filter(|e| e["event"] == "pageerror" || e["event"] == "crash")
            .map(|e| e.to_string())
            .collect()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.try_command(serde_json::json!({"cmd": "close"}));
        let _ = self.proc.wait_exit(Duration::from_secs(5));
    }
}
