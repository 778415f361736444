//! What `transcodectl` prints: tables and the progress bar, built without IO.
//!
//! The binary (`src/bin/transcodectl.rs`) only talks HTTP and writes what
//! these functions return. The API's answers are read into the wire types
//! of `transcode_common::wire` ([`JobView`], [`WorkerView`], [`MediaListing`],
//! [`ErrorAnswer`]) by [`read_answer`], which turns an answer it cannot read
//! into a sentence naming the orchestrator.
//!
//! - [`progress_line`], [`progress_words`], [`bar_style`] and [`fmt_eta`]:
//!   the `submit --follow` display (plain lines, or an `indicatif` bar on a
//!   terminal).
//! - [`jobs_table`], [`workers_table`] and [`media_table`]: `transcodectl
//!   jobs` / `workers` / `ls`, laid out by `comfy-table`.
//! - [`base_url`], [`parse_job_id`], [`token_in`], [`token_places`] and
//!   [`is_loopback_url`]: inputs.
//! - [`unreachable_message`], [`api_error_message`] and [`read_answer`]:
//!   error sentences.

use serde::de::DeserializeOwned;
use transcode_common::wire::{ErrorAnswer, JobState, JobView, MediaKind, MediaListing, WorkerView};
use uuid::Uuid;

#[cfg(test)]
mod tests;

/// Default orchestrator address, the same as the orchestrator's default
/// `http.listen` port.
pub const DEFAULT_ORCHESTRATOR: &str = "http://127.0.0.1:8000";

/// Cells in the progress bar.
const BAR_WIDTH: usize = 20;

/// Steps of the terminal bar: a tenth of a percent each.
pub const BAR_STEPS: u64 = 1000;

/// The `--orchestrator` value made usable as a base URL: trimmed, without a
/// trailing slash, and with `http://` when no scheme was given
/// (`10.0.0.5:8000` is what people type).
pub fn base_url(raw: &str) -> String {
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// A job id from the command line, or a sentence saying why it is not one.
pub fn parse_job_id(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        format!(
            "`{raw}` is not a job id; job ids are UUIDs like 3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b"
        )
    })
}

/// The sentence for an orchestrator that could not be reached at all.
pub fn unreachable_message(base: &str, reason: &str) -> String {
    format!(
        "cannot reach the orchestrator at {base} ({reason}); is it running? (--orchestrator URL)"
    )
}

/// The sentence for a non-2xx answer: the API's `error` (an
/// [`ErrorAnswer`]) when it has one, else the status and the URL.
pub fn api_error_message(base: &str, status: u16, body: &str) -> String {
    match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(answer) if !answer.error.trim().is_empty() => answer.error.trim().to_string(),
        _ => format!("the orchestrator at {base} answered HTTP {status}"),
    }
}

/// A 2xx answer's body read as `T`, or a sentence naming the orchestrator,
/// the request (`GET /api/jobs`), what was expected (`a list of jobs`) and
/// the first field that did not fit.
pub fn read_answer<T: DeserializeOwned>(
    base: &str,
    request: &str,
    what: &str,
    body: &str,
) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(&mut json)
        .map_err(|e| {
            let path = e.path().to_string();
            let why = without_position(e.inner());
            if path == "." || path.is_empty() {
                why
            } else {
                format!("{path}: {why}")
            }
        })
        .and_then(|value| json.end().map(|()| value).map_err(|e| without_position(&e)))
        .map_err(|why| {
            format!(
                "the orchestrator at {base} answered {request} with something that is not {what} \
                 ({why}); is transcodectl as new as the orchestrator?"
            )
        })
}

/// serde_json's message without its `at line 1 column 42`: in an answer
/// on one line, the field's path says more.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => text[..i].to_string(),
        _ => text,
    }
}

/// Where `transcodectl` looks for the API token when neither `--token-file`
/// nor `TRANSCODE_TOKEN` gives it: the orchestrator's state folder on this
/// machine (`TRANSCODE_STATE__DIR`, the systemd unit's, the default
/// `./state`).
pub fn token_places(state_dir: Option<&str>) -> Vec<std::path::PathBuf> {
    let file = crate::access::TOKEN_FILE;
    let mut places: Vec<std::path::PathBuf> = state_dir
        .filter(|d| !d.trim().is_empty())
        .map(|d| std::path::Path::new(d).join(file))
        .into_iter()
        .collect();
    places.push(std::path::Path::new("/var/lib/transcode-orchestrator").join(file));
    places.push(std::path::Path::new("state").join(file));
    places
}

/// Whether an orchestrator URL is on this machine (a token found in the
/// local state folder is sent only there).
pub fn is_loopback_url(base: &str) -> bool {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token in a token file: its first line, trimmed.
pub fn token_in(text: &str) -> Option<String> {
    text.lines()
        .next()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
}

/// `eta_s` as `m:ss` below an hour and `h:mm:ss` above; `-:--` when it is
/// not a usable number.
pub fn fmt_eta(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-:--".to_string();
    }
    // `as` saturates, so an absurd estimate cannot overflow.
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// The job's progress as a percentage the bar can show: 0-100.
pub fn progress_percent(job: &JobView) -> f64 {
    if job.progress.is_finite() {
        job.progress.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// Where the terminal bar stands, out of [`BAR_STEPS`].
pub fn bar_position(job: &JobView) -> u64 {
    (progress_percent(job) * BAR_STEPS as f64 / 100.0).round() as u64
}

/// How the terminal bar looks: [`progress_line`]'s bar drawn by
/// `indicatif`, then [`progress_words`] (cut to the terminal's width).
pub fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(&format!("[{{bar:{BAR_WIDTH}}}] {{wide_msg}}"))
        .map(|style| style.progress_chars("#-"))
        // The template is ours and tested; should it ever be refused, a
        // bar without a style still moves.
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// One line of the `--follow` display on a pipe or a file, e.g.
/// `[##########----------]  50.0%   48.0 fps  1.9x  ETA 0:32  processing on gaming-pc`.
pub fn progress_line(job: &JobView) -> String {
    let filled =
        ((progress_percent(job) / 100.0 * BAR_WIDTH as f64).floor() as usize).min(BAR_WIDTH);
    format!(
        "[{}{}] {}",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        progress_words(job)
    )
}

/// The words after the bar: the percentage, then fps, speed, ETA (when the
/// job reports them), the state and where the job runs.
pub fn progress_words(job: &JobView) -> String {
    let mut line = format!("{:5.1}%", progress_percent(job));
    if let Some(fps) = job.fps.filter(|v| *v >= 0.0) {
        line.push_str(&format!("  {fps:5.1} fps"));
    }
    if let Some(speed) = job.speed.filter(|v| *v >= 0.0) {
        line.push_str(&format!("  {speed:.1}x"));
    }
    if let Some(eta) = job.eta_s.filter(|v| *v >= 0.0) {
        line.push_str(&format!("  ETA {}", fmt_eta(eta)));
    }
    line.push_str("  ");
    line.push_str(job.state.as_str());
    if let Some((workers, chunks)) = mesh_workers(job) {
        let plural = if chunks == 1 { "" } else { "s" };
        line.push_str(&format!(" in {chunks} chunk{plural}"));
        if !workers.is_empty() {
            line.push_str(&format!(" on {workers}"));
        }
        return line;
    }
    if let Some(worker) = non_empty(&job.worker_id) {
        let preposition = if job.state == JobState::Assigned {
            "to"
        } else {
            "on"
        };
        line.push_str(&format!(" {preposition} {worker}"));
    }
    if job.attempt > 1 {
        line.push_str(&format!(" (attempt {})", job.attempt));
    }
    line
}

/// A split job's workers running a chunk now (`a, b`) and how many chunks
/// it ran; `None` for a plain job.
fn mesh_workers(job: &JobView) -> Option<(String, usize)> {
    if job.chunks.is_empty() {
        return None;
    }
    let mut running: Vec<&str> = job
        .chunks
        .iter()
        .filter(|c| matches!(c.state, JobState::Assigned | JobState::Processing))
        .map(|c| c.worker_id.trim())
        .filter(|w| !w.is_empty())
        .collect();
    running.sort_unstable();
    running.dedup();
    Some((running.join(", "), job.chunks.len()))
}

/// The `transcodectl jobs` table, or `no jobs`.
pub fn jobs_table(jobs: &[JobView]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_string();
    }
    let rows = jobs.iter().map(|job| {
        vec![
            job.job_id.to_string().chars().take(8).collect(),
            job.state.as_str().to_string(),
            format!("{:5.1}%", progress_percent(job)),
            match mesh_workers(job) {
                Some((running, _)) if !running.is_empty() => running,
                _ => non_empty(&job.worker_id).map_or_else(dash, str::to_string),
            },
            job.attempt.to_string(),
            Some(job.source_path.trim())
                .filter(|s| !s.is_empty())
                .map_or_else(dash, str::to_string),
        ]
    });
    table(
        &["JOB", "STATE", "PROGRESS", "WORKER", "ATTEMPT", "SOURCE"],
        rows,
    )
}

/// The `transcodectl workers` table, or `no workers`.
pub fn workers_table(workers: &[WorkerView]) -> String {
    if workers.is_empty() {
        return "no workers\n".to_string();
    }
    let rows = workers.iter().map(|worker| {
        let hb = worker.heartbeat.as_ref();
        // `encoders` names the FFmpeg encoders that passed the probe; older
        // heartbeats only carry the `hw_accel` families.
        let encoders = hb
            .map(|h| &h.encoders)
            .filter(|e| !e.is_empty())
            .or_else(|| hb.map(|h| &h.hw_accel))
            .filter(|e| !e.is_empty())
            .map_or_else(dash, |e| e.join(","));
        let address = match hb.map(|h| (h.ip_address.trim(), h.port)) {
            Some((ip, port)) if ip.contains(':') => format!("[{ip}]:{port}"),
            Some((ip, port)) if !ip.is_empty() => format!("{ip}:{port}"),
            _ => dash(),
        };
        vec![
            worker.worker_id.clone(),
            if worker.online { "yes" } else { "no" }.to_string(),
            hb.map_or_else(dash, |h| h.status.as_str().to_string()),
            hb.map(|h| h.cpu_usage)
                .filter(|c| c.is_finite())
                .map_or_else(dash, |c| format!("{c:.1}%")),
            worker.jobs.len().to_string(),
            encoders,
            address,
        ]
    });
    table(
        &[
            "WORKER", "ONLINE", "STATUS", "CPU", "JOBS", "ENCODERS", "ADDRESS",
        ],
        rows,
    )
}

/// The `transcodectl ls` table: folders (with a trailing `/`) first, then
/// files with their size and, for videos, their length.
pub fn media_table(listing: &MediaListing) -> String {
    let folder = if listing.path.is_empty() {
        "the media root".to_string()
    } else {
        listing.path.clone()
    };
    if listing.entries.is_empty() {
        return format!("{folder} is empty\n");
    }
    let rows = listing.entries.iter().map(|e| {
        vec![
            match e.kind {
                MediaKind::Directory => format!("{}/", e.name),
                _ => e.name.clone(),
            },
            match e.kind {
                MediaKind::Directory => "folder",
                MediaKind::Video => "video",
                MediaKind::Other => "other",
            }
            .to_string(),
            e.size.map_or_else(dash, human_bytes),
            e.duration.map_or_else(dash, fmt_length),
        ]
    });
    let mut out = table(&["NAME", "KIND", "SIZE", "LENGTH"], rows);
    if listing.truncated {
        out.push_str(&format!(
            "(only the first {} entries of {folder} are shown)\n",
            listing.entries.len()
        ));
    }
    out
}

/// `1.5 GB`, `700 MB`, `12 kB`, `512 B` (powers of 1000, as file managers show).
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", units[unit])
    } else {
        format!("{value:.0} {}", units[unit])
    }
}

/// A film's length: `1:32:05`, `4:10`, `0:07`.
pub fn fmt_length(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A header and rows laid out by `comfy-table` without any border (its
/// `NOTHING` preset), so the output stays greppable and cuttable: columns
/// flush left, two spaces apart, each as wide as its widest cell, and no
/// trailing spaces.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows);
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}

fn dash() -> String {
    "-".to_string()
}

/// The text of an optional field, trimmed; `None` when absent or blank.
fn non_empty(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
