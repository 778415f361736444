//! The running system: the workspace's binaries ([`bin`]), each started as
//! a [`Proc`] that is killed on drop, and [`System`], an orchestrator and
//! its workers configured for a test.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{env, free_port, get_json, http_json, require_tools, wait_until};

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
