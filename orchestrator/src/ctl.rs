//! What `transcodectl` prints: tables and the progress bar, built without IO.
//!
//! The binary (`src/bin/transcodectl.rs`) only talks HTTP and writes what
//! these functions return. Everything here reads the API's JSON as
//! [`serde_json::Value`] and tolerates missing, null or unknown fields, so an
//! orchestrator newer or older than the tool never breaks it.
//!
//! - [`progress_line`] and [`fmt_eta`]: the `submit --follow` bar.
//! - [`jobs_table`] and [`workers_table`]: `transcodectl jobs` / `workers`.
//! - [`base_url`], [`parse_job_id`], [`unreachable_message`] and
//!   [`api_error_message`]: inputs and error sentences.

use serde_json::Value;
use transcode_common::wire::{MediaKind, MediaListing};
use uuid::Uuid;

#[cfg(test)]
mod tests;

/// Default orchestrator address, the same as the orchestrator's default
/// `http.listen` port.
pub const DEFAULT_ORCHESTRATOR: &str = "http://127.0.0.1:8000";

/// Cells in the progress bar.
const BAR_WIDTH: usize = 20;

/// Job states after which nothing changes any more.
pub const FINAL_STATES: [&str; 3] = ["completed", "failed", "cancelled"];

/// Whether `state` is one where `--follow` stops.
pub fn is_final(state: &str) -> bool {
    FINAL_STATES.contains(&state)
}

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

/// The sentence for a non-2xx answer: the API's `error` field when there is
/// one, else the status and the URL.
pub fn api_error_message(base: &str, status: u16, body: &Value) -> String {
    match body.get("error").and_then(Value::as_str).map(str::trim) {
        Some(error) if !error.is_empty() => error.to_string(),
        _ => format!("the orchestrator at {base} answered HTTP {status}"),
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

/// One line of the `--follow` display, e.g.
/// `[##########----------]  50.0%   48.0 fps  1.9x  ETA 0:32  processing on gaming-pc`.
/// fps, speed, ETA and worker appear only when the job reports them.
pub fn progress_line(job: &Value) -> String {
    let progress = num(job, "progress").unwrap_or(0.0).clamp(0.0, 100.0);
    let filled = ((progress / 100.0 * BAR_WIDTH as f64).floor() as usize).min(BAR_WIDTH);
    let mut line = format!(
        "[{}{}] {progress:5.1}%",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    );
    if let Some(fps) = num(job, "fps").filter(|v| *v >= 0.0) {
        line.push_str(&format!("  {fps:5.1} fps"));
    }
    if let Some(speed) = num(job, "speed").filter(|v| *v >= 0.0) {
        line.push_str(&format!("  {speed:.1}x"));
    }
    if let Some(eta) = num(job, "eta_s").filter(|v| *v >= 0.0) {
        line.push_str(&format!("  ETA {}", fmt_eta(eta)));
    }
    let state = text(job, "state").unwrap_or("unknown");
    line.push_str("  ");
    line.push_str(state);
    if let Some((workers, chunks)) = mesh_workers(job) {
        let plural = if chunks == 1 { "" } else { "s" };
        line.push_str(&format!(" in {chunks} chunk{plural}"));
        if !workers.is_empty() {
            line.push_str(&format!(" on {workers}"));
        }
        return line;
    }
    if let Some(worker) = text(job, "worker_id") {
        let preposition = if state == "assigned" { "to" } else { "on" };
        line.push_str(&format!(" {preposition} {worker}"));
    }
    if let Some(attempt) = num(job, "attempt").filter(|a| *a > 1.0) {
        line.push_str(&format!(" (attempt {attempt})"));
    }
    line
}

/// A split job's workers running a chunk now (`a, b`) and how many chunks
/// it ran; `None` for a plain job.
fn mesh_workers(job: &Value) -> Option<(String, usize)> {
    let chunks = job.get("chunks")?.as_array()?;
    if chunks.is_empty() {
        return None;
    }
    let mut running: Vec<&str> = chunks
        .iter()
        .filter(|c| matches!(text(c, "state"), Some("assigned" | "processing")))
        .filter_map(|c| text(c, "worker_id"))
        .collect();
    running.sort_unstable();
    running.dedup();
    let count = chunks.iter().filter_map(|c| num(c, "attempt")).count();
    Some((running.join(", "), count))
}

/// The `transcodectl jobs` table, or `no jobs`.
pub fn jobs_table(jobs: &[Value]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_string();
    }
    let rows = jobs.iter().map(|job| {
        vec![
            text(job, "job_id").map_or_else(dash, |id| id.chars().take(8).collect()),
            text(job, "state").map_or_else(dash, str::to_string),
            num(job, "progress").map_or_else(dash, |p| format!("{:5.1}%", p.clamp(0.0, 100.0))),
            match mesh_workers(job) {
                Some((running, _)) if !running.is_empty() => running,
                _ => text(job, "worker_id").map_or_else(dash, str::to_string),
            },
            number_cell(job.get("attempt")),
            text(job, "source_path").map_or_else(dash, str::to_string),
        ]
    });
    table(
        &["JOB", "STATE", "PROGRESS", "WORKER", "ATTEMPT", "SOURCE"],
        rows,
    )
}

/// The `transcodectl workers` table, or `no workers`.
pub fn workers_table(workers: &[Value]) -> String {
    if workers.is_empty() {
        return "no workers\n".to_string();
    }
    let rows = workers.iter().map(|worker| {
        let hb = worker.get("heartbeat").filter(|h| h.is_object());
        let hb_text = |key| hb.and_then(|h| text(h, key));
        let online = worker.get("online").and_then(Value::as_bool) == Some(true);
        let jobs = worker
            .get("jobs")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        // `encoders` names the FFmpeg encoders that passed the probe; older
        // heartbeats only carry the `hw_accel` families.
        let encoders = hb
            .map(|h| strings(h, "encoders"))
            .filter(|e| !e.is_empty())
            .or_else(|| hb.map(|h| strings(h, "hw_accel")))
            .filter(|e| !e.is_empty())
            .map_or_else(dash, |e| e.join(","));
        let address = match (hb_text("ip_address"), hb.and_then(|h| h.get("port"))) {
            (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{}", cell(port)),
            (Some(ip), Some(port)) => format!("{ip}:{}", cell(port)),
            (Some(ip), None) => ip.to_string(),
            _ => dash(),
        };
        vec![
            text(worker, "worker_id").map_or_else(dash, str::to_string),
            if online { "yes" } else { "no" }.to_string(),
            hb_text("status").map_or_else(dash, str::to_string),
            hb.and_then(|h| num(h, "cpu_usage"))
                .map_or_else(dash, |c| format!("{c:.1}%")),
            jobs.to_string(),
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

/// Left-aligned columns two spaces apart, each as wide as its widest cell;
/// the last column is not padded, so lines carry no trailing spaces.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    all.extend(rows);
    let mut widths = vec![0; header.len()];
    for row in &all {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

fn dash() -> String {
    "-".to_string()
}

/// A non-empty string field; null, missing, empty or non-string give `None`.
fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A finite number field.
fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|n| n.is_finite())
}

/// The strings of an array field, skipping anything else.
fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A number (or string) field as typed, `-` when absent or null.
fn number_cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => dash(),
        Some(v) => cell(v),
    }
}

/// A scalar without JSON quoting.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
