//! `transcodectl`: the orchestrator's HTTP API from a shell. This file only
//! talks HTTP and prints; what it prints is built in
//! [`transcode_orchestrator::ctl`].

use std::io::Write;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde::de::DeserializeOwned;
use transcode_common::validate::{Bitrate, Resolution};
use transcode_common::wire::{JobRequest, JobState, JobView, MediaListing, WorkerView};
use transcode_orchestrator::ctl;
use uuid::Uuid;

/// How often `submit --follow` asks for the job.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long `submit --follow` keeps trying an orchestrator that went away.
const RECONNECT_FOR: Duration = Duration::from_secs(30);
/// Environment variable read when `--orchestrator` is not given.
const ORCHESTRATOR_ENV: &str = "TRANSCODE_ORCHESTRATOR";
/// Environment variable holding the API token.
const TOKEN_ENV: &str = "TRANSCODE_TOKEN";

/// Submit, follow, list and cancel transcode jobs on a transcode-worker
/// orchestrator.
#[derive(Parser)]
#[command(name = "transcodectl", version)]
struct Cli {
    /// Base URL of the orchestrator's HTTP API [env: TRANSCODE_ORCHESTRATOR]
    /// [default: http://127.0.0.1:8000]
    #[arg(long, global = true, value_name = "URL")]
    orchestrator: Option<String>,
    /// File holding the API token [env: TRANSCODE_TOKEN holds the token
    /// itself] [default: the orchestrator's state folder on this machine]
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue a transcode; with --follow, show its progress until it ends.
    Submit {
        /// The source file, relative to the media root (see `transcodectl ls`).
        source_path: String,
        /// Target resolution: 480p, 720p, 1080p, 1440p, 2160p or WIDTHxHEIGHT.
        #[arg(long)]
        resolution: Resolution,
        /// Target video bitrate, e.g. 4M or 2500k.
        #[arg(long)]
        bitrate: Bitrate,
        /// Where in the source to start, in seconds.
        #[arg(long, value_name = "SECONDS")]
        start_time: Option<f64>,
        /// Split the job across several workers.
        #[arg(long)]
        mesh: bool,
        /// Use this job id (a UUID) instead of letting the orchestrator pick one.
        #[arg(long, value_name = "UUID", value_parser = ctl::parse_job_id)]
        job_id: Option<Uuid>,
        /// Show a progress bar until the job ends, then the stream URL.
        #[arg(long)]
        follow: bool,
    },
    /// List the jobs.
    Jobs {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the known workers.
    Workers {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List a folder of the orchestrator's media library (media.root).
    Ls {
        /// The folder, relative to the media root [default: the root].
        path: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job.
    Cancel {
        /// The job's full id (a UUID).
        #[arg(value_parser = ctl::parse_job_id)]
        job_id: Uuid,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let raw = cli
        .orchestrator
        .or_else(|| std::env::var(ORCHESTRATOR_ENV).ok())
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| ctl::DEFAULT_ORCHESTRATOR.to_string());
    let base = ctl::base_url(&raw);
    let token = match find_token(cli.token_file.as_deref(), &base) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("transcodectl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let api = Api::new(base, token);
    match run(&api, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("transcodectl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The API token: from `--token-file`, `TRANSCODE_TOKEN`, or the
/// orchestrator's state folder on this machine; with where it came from.
fn find_token(
    file: Option<&std::path::Path>,
    base: &str,
) -> Result<Option<(String, String)>, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the token file {}: {e}", file.display()))?;
        return ctl::token_in(&text)
            .map(|t| Some((t, file.display().to_string())))
            .ok_or_else(|| format!("the token file {} holds no token", file.display()));
    }
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .and_then(|t| ctl::token_in(&t))
    {
        return Ok(Some((t, TOKEN_ENV.to_string())));
    }
    // A token found on this machine goes only to an orchestrator on it.
    if !ctl::is_loopback_url(base) {
        return Ok(None);
    }
    let state = std::env::var("TRANSCODE_STATE__DIR").ok();
    Ok(ctl::token_places(state.as_deref())
        .into_iter()
        .find_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            ctl::token_in(&text).map(|t| (t, p.display().to_string()))
        }))
}

fn run(api: &Api, command: Command) -> Result<ExitCode, ApiError> {
    match command {
        Command::Submit {
            source_path,
            resolution,
            bitrate,
            start_time,
            mesh,
            job_id,
            follow,
        } => {
            let request = JobRequest {
                source_path,
                resolution,
                bitrate,
                start_time: start_time.unwrap_or(0.0),
                is_mesh_mode: mesh,
                job_id,
            };
            let job: JobView = api.read(Method::Post(&request), "/api/jobs", "a job")?;
            println!("job {} {}", job.job_id, job.state.as_str());
            if follow {
                return follow_job(api, job.job_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { json: true } => api.print_json("/api/jobs"),
        Command::Jobs { json: false } => {
            let jobs: Vec<JobView> = api.read(Method::Get, "/api/jobs", "a list of jobs")?;
            print!("{}", ctl::jobs_table(&jobs));
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers { json: true } => api.print_json("/api/workers"),
        Command::Workers { json: false } => {
            let workers: Vec<WorkerView> =
                api.read(Method::Get, "/api/workers", "a list of workers")?;
            print!("{}", ctl::workers_table(&workers));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { path, json } => {
            let query = percent_encoding::utf8_percent_encode(
                path.as_deref().unwrap_or(""),
                percent_encoding::NON_ALPHANUMERIC,
            );
            let path = format!("/api/media?path={query}");
            if json {
                return api.print_json(&path);
            }
            let listing: MediaListing = api.read(Method::Get, &path, "a folder listing")?;
            print!("{}", ctl::media_table(&listing));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { job_id } => {
            // A 2xx is the orchestrator's word that the job is cancelled.
            api.send(Method::Delete, &format!("/api/jobs/{job_id}"))?;
            println!("job {job_id} cancelled");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Polls the job until it is final, drawing its progress (see [`Output`]).
fn follow_job(api: &Api, id: Uuid) -> Result<ExitCode, ApiError> {
    let path = format!("/api/jobs/{id}");
    let mut out = Output::on_stdout();
    let mut stream_shown = false;
    let mut down_since: Option<Instant> = None;
    loop {
        let job: JobView = match api.read(Method::Get, &path, "a job") {
            Ok(job) => {
                down_since = None;
                job
            }
            Err(ApiError::Unreachable { base, reason }) => {
                let since = *down_since.get_or_insert_with(|| {
                    out.message(&format!(
                        "transcodectl: lost the orchestrator at {} ({reason}); retrying for up to {} s",
                        base,
                        RECONNECT_FOR.as_secs()
                    ));
                    Instant::now()
                });
                if since.elapsed() >= RECONNECT_FOR {
                    out.finish();
                    return Err(ApiError::Unreachable { base, reason });
                }
                sleep(POLL_INTERVAL);
                continue;
            }
            Err(other) => {
                out.finish();
                return Err(other);
            }
        };
        out.draw(&job);
        // The player's URL is the orchestrator's playlist: it survives a
        // move of the job to another worker. It plays from the first
        // segment on.
        let stream_url = (job.listed > 0).then(|| format!("{}/stream/{id}/index.m3u8", api.base));
        let new_stream_url = stream_url.filter(|_| !stream_shown);
        if job.state == JobState::Completed {
            // The last line is the stream URL, unless it was already shown.
            out.finish();
            match new_stream_url {
                Some(url) => println!("Stream URL: {url}"),
                None => println!("job {id} completed"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(url) = new_stream_url {
            out.line(&format!("Stream URL: {url}"));
            stream_shown = true;
        }
        if job.state.is_final() {
            out.finish();
            if job.state == JobState::Failed {
                let error = job
                    .error
                    .as_deref()
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .unwrap_or("no reason given");
                eprintln!("job {id} failed: {error}");
            } else {
                eprintln!("job {id} was {}", job.state.as_str());
            }
            return Ok(ExitCode::FAILURE);
        }
        sleep(POLL_INTERVAL);
    }
}

/// The `--follow` display on stdout.
enum Output {
    /// A terminal: `indicatif` redraws one bar in place, with
    /// [`ctl::progress_words`] beside it.
    Bar(ProgressBar),
    /// A pipe or a file (where `indicatif` hides its bars): one
    /// [`ctl::progress_line`] per change, for scripts and logs.
    Lines {
        /// The last line printed, to skip repeats.
        last: String,
    },
}

impl Output {
    fn on_stdout() -> Output {
        let bar = ProgressBar::with_draw_target(Some(ctl::BAR_STEPS), ProgressDrawTarget::stdout());
        if bar.is_hidden() {
            return Output::Lines {
                last: String::new(),
            };
        }
        bar.set_style(ctl::bar_style());
        Output::Bar(bar)
    }

    fn draw(&mut self, job: &JobView) {
        match self {
            Output::Bar(bar) => {
                bar.set_position(ctl::bar_position(job));
                bar.set_message(ctl::progress_words(job));
            }
            Output::Lines { last } => {
                let line = ctl::progress_line(job);
                if line == *last {
                    return;
                }
                // Write errors (a closed pipe) are not worth stopping the
                // follow for.
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
                *last = line;
            }
        }
    }

    /// A whole line on stdout above the bar; the bar goes on underneath.
    fn line(&mut self, text: &str) {
        match self {
            Output::Bar(bar) => bar.println(text),
            Output::Lines { .. } => println!("{text}"),
        }
    }

    /// A line on stderr that must not be glued to the bar.
    fn message(&mut self, text: &str) {
        match self {
            Output::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
            Output::Lines { .. } => eprintln!("{text}"),
        }
    }

    /// Leaves the bar where it stands (a failed job's bar is not filled);
    /// what is printed next goes below it.
    fn finish(&mut self) {
        if let Output::Bar(bar) = self {
            bar.abandon();
        }
    }
}

/// Why a request gave no usable answer.
enum ApiError {
    /// No HTTP answer at all; `--follow` retries these.
    Unreachable {
        /// The orchestrator's base URL, named in the sentence.
        base: String,
        /// Short, e.g. `connection refused`.
        reason: String,
    },
    /// A whole sentence: the API's `error` or what was wrong with its answer.
    Answer(String),
}

/// The sentence printed after `transcodectl: `.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable { base, reason } => {
                f.write_str(&ctl::unreachable_message(base, reason))
            }
            ApiError::Answer(sentence) => f.write_str(sentence),
        }
    }
}

/// The requests `transcodectl` makes.
#[derive(Clone, Copy)]
enum Method<'a> {
    Get,
    Post(&'a JobRequest),
    Delete,
}

impl Method<'_> {
    fn verb(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post(_) => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// The orchestrator's HTTP API.
struct Api {
    /// Base URL without a trailing slash, also named in every error.
    base: String,
    agent: ureq::Agent,
    /// The API token and where it came from.
    token: Option<(String, String)>,
}

impl Api {
    fn new(base: String, token: Option<(String, String)>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Api { base, agent, token }
    }

    /// One request; the body of a 2xx answer, or an error sentence naming
    /// the URL.
    fn send(&self, method: Method, path: &str) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base);
        let bearer = self
            .token
            .as_ref()
            .map(|(t, _)| format!("Bearer {t}"))
            .unwrap_or_default();
        let sent = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &bearer).call(),
            Method::Post(body) => self
                .agent
                .post(&url)
                .header("Authorization", &bearer)
                .send_json(body),
            Method::Delete => self
                .agent
                .delete(&url)
                .header("Authorization", &bearer)
                .call(),
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let reason = describe(&e);
                return Err(match e {
                    ureq::Error::BadUri(_) | ureq::Error::Http(_) => ApiError::Answer(format!(
                        "`{}` is not a usable orchestrator URL ({reason}); try --orchestrator http://HOST:8000",
                        self.base
                    )),
                    _ => ApiError::Unreachable {
                        base: self.base.clone(),
                        reason,
                    },
                });
            }
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Unreachable {
                base: self.base.clone(),
                reason: describe(&e),
            })?;
        if !(200..300).contains(&status) {
            let mut sentence = ctl::api_error_message(&self.base, status, &body);
            if status == 401 {
                sentence.push_str(&match &self.token {
                    Some((_, from)) => format!(" (transcodectl sent the token from {from}, which the orchestrator does not accept)"),
                    None => format!(" (transcodectl found no token: give --token-file FILE or set {TOKEN_ENV})"),
                });
            }
            return Err(ApiError::Answer(sentence));
        }
        Ok(body)
    }

    /// One request whose 2xx answer is `what` (`a job`), read as `T`.
    fn read<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        what: &str,
    ) -> Result<T, ApiError> {
        let body = self.send(method, path)?;
        let request = format!("{} {path}", method.verb());
        ctl::read_answer(&self.base, &request, what, &body).map_err(ApiError::Answer)
    }

    /// `--json`: a GET's answer as the API gave it, indented, whatever its
    /// shape (scripts read fields this tool does not know).
    fn print_json(&self, path: &str) -> Result<ExitCode, ApiError> {
        let answer: serde_json::Value = self.read(Method::Get, path, "JSON")?;
        match serde_json::to_string_pretty(&answer) {
            Ok(text) => println!("{text}"),
            Err(_) => println!("{answer}"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A short reason for a transport error, e.g. `connection refused`.
fn describe(error: &ureq::Error) -> String {
    match error {
        // OS errors read best as their kind (`connection refused`); others,
        // like a failed name lookup, carry their own message.
        ureq::Error::Io(e) if e.raw_os_error().is_some() => e.kind().to_string(),
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        other => other.to_string(),
    }
}
