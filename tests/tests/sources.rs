//! Sources without shared storage: a worker without the film reads it from
//! the orchestrator's media root over HTTP, through a URL signed for its
//! run, seeking by byte ranges; a worker with its own copy reads that; the
//! URL opens nothing else and nothing after its run; a short network drop
//! costs the run nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use transcode_tests::proxy::Proxy;
use transcode_tests::split::{self, ONE_THREAD};
use transcode_tests::{
    decode, env, ffprobe, free_port, get_json, header, http_json, http_request, make_heavy_media,
    make_media, mqtt, simulated_worker, wait_until, System,
};

const JOB: Duration = Duration::from_secs(180);
/// A worker with no media of its own.
const NO_MEDIA: (&str, &str) = ("TRANSCODE_MEDIA__ROOT", "");

/// The orchestrator's media root in a test system.
fn library(sys: &System) -> PathBuf {
    sys.dir.path().join("library")
}

/// Makes the orchestrator serve `library(sys)`.
fn serve_library(sys: &mut System) {
    std::fs::create_dir_all(library(sys)).expect("library");
    let root = library(sys).display().to_string();
    sys.orchestrator_env
        .push(env("TRANSCODE_MEDIA__ROOT", root));
}

/// The orchestrator's source serving counters: bytes, served, refused.
fn served(sys: &System) -> (u64, u64, u64) {
    let (status, text) = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut r = agent
            .get(&sys.api("/metrics"))
            .call()
            .expect("GET /metrics");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().expect("metrics"),
        )
    };
    assert_eq!(status, 200);
    let find = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}")) as u64
    };
    (
        find("transcode_source_bytes_total "),
        find("transcode_source_requests_total{answer=\"served\"} "),
        find("transcode_source_requests_total{answer=\"refused\"} "),
    )
}

fn request(source: &str) -> Value {
    json!({"source_path": source, "resolution": "480p", "bitrate": "500k"})
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("file").len()
}

#[test]
fn a_worker_without_media_reads_the_film_over_http_from_the_start_time_on() {
    let mut sys = System::new();
    serve_library(&mut sys);
    let film = library(&sys).join("films/four minutes.mkv");
    make_heavy_media(&film, 640, 360, 240);
    let size = file_len(&film);
    let _o = sys.start_orchestrator();
    let w = sys.start_online("w", &[NO_MEDIA]);

    let mut req = request("films/four minutes.mkv");
    req["start_time"] = json!(120);
    let id = sys.submit(&req);
    let job = sys.wait_job(&id, "completed", JOB);
    assert_eq!(job["attempt"], 1, "{job}");

    // The stream is the film's second half, transcoded.
    let (streams, duration) = ffprobe(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert!(
        streams.iter().any(|s| s.0 == "video" && s.1 == "h264"),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s.0 == "audio"), "{streams:?}");
    assert!((duration - 120.0).abs() < 1.5, "{duration} s");
    assert!(w.log().contains("reading the source from the orchestrator"));

    // Byte ranges: the worker seeks to 2:00 instead of reading from the
    // start (half the file, plus what probing reads).
    let (bytes, requests, refused) = served(&sys);
    let share = bytes as f64 / size as f64;
    eprintln!(
        "sent {bytes} of {size} bytes ({:.1} %) in {requests} requests",
        share * 100.0
    );
    assert!(share < 0.6, "sent {:.1} % of the file", share * 100.0);
    assert!(share > 0.45, "sent only {:.1} % of the file", share * 100.0);
    assert_eq!(refused, 0);
}

#[test]
fn a_worker_with_its_own_copy_reads_it_and_another_size_is_read_over_http() {
    let mut sys = System::new();
    serve_library(&mut sys);
    make_media(&library(&sys).join("same.mkv"), 640, 360, 4, true);
    make_media(&library(&sys).join("changed.mkv"), 640, 360, 4, true);
    // The worker's own media folder: the same file, and an older, shorter
    // version of the other.
    let own = sys.dir.path().join("media");
    std::fs::create_dir_all(&own).expect("media");
    std::fs::copy(library(&sys).join("same.mkv"), own.join("same.mkv")).expect("copy");
    make_media(&own.join("changed.mkv"), 640, 360, 2, true);
    let _o = sys.start_orchestrator();
    let w = sys.start_online("local", &[]);

    let id = sys.submit(&request("same.mkv"));
    sys.wait_job(&id, "completed", JOB);
    assert_eq!(served(&sys), (0, 0, 0), "a local copy was read over HTTP");

    let id = sys.submit(&request("changed.mkv"));
    let job = sys.wait_job(&id, "completed", JOB);
    let (bytes, requests, _) = served(&sys);
    assert!(bytes > 0 && requests > 0, "{job}");
    let (_, duration) = ffprobe(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert!(
        (duration - 4.0).abs() < 0.5,
        "the old copy was read: {duration} s"
    );
    let why = format!(
        "the local copy {} has {} bytes, the orchestrator's {}",
        own.join("changed.mkv")
            .canonicalize()
            .expect("path")
            .display(),
        file_len(&own.join("changed.mkv")),
        file_len(&library(&sys).join("changed.mkv"))
    );
    assert!(w.log().contains(&why), "{why}");
}

/// `(status, body)` of a raw request to the orchestrator.
fn raw(
    sys: &System,
    method: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
    http_request(sys.http_port, method, path, &headers)
}

#[test]
fn a_source_url_opens_its_file_during_its_run_and_nothing_else() {
    let mut sys = System::new();
    serve_library(&mut sys);
    // Assignments stay open: the simulated worker never answers.
    sys.orchestrator_env
        .push(env("TRANSCODE_SCHEDULER__ASSIGN_TIMEOUT_S", "600"));
    let lib = library(&sys);
    make_media(&lib.join("films/a.mkv"), 320, 240, 2, true);
    make_media(&lib.join("films/b.mkv"), 320, 240, 2, true);
    std::fs::write(sys.dir.path().join("secret.mkv"), b"SECRET").expect("secret");
    let film = std::fs::read(lib.join("films/a.mkv")).expect("film");
    let _o = sys.start_orchestrator();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _sim = runtime.spawn(simulated_worker("sim".into(), sys.broker_port));
    sys.wait_online("sim", true, Duration::from_secs(20));
    // Subscribed once the retained availability arrives: assignments are
    // not retained.
    let watcher = mqtt::Watcher::start_ready(
        sys.broker_port,
        &[],
        "transcode/#",
        "transcode/orchestrator/availability",
        sys.dir.path(),
        "assignments",
    );
    let id = sys.submit(&request("films/a.mkv"));

    let assignment: Value = wait_until(Duration::from_secs(20), "the assignment", || {
        watcher
            .messages()
            .into_iter()
            .filter(|m| m.topic == "transcode/workers/sim/jobs")
            .find_map(|m| serde_json::from_str::<Value>(&m.payload).ok())
    });
    assert_eq!(assignment["source_size"], json!(film.len()), "{assignment}");
    let url = assignment["source_url"].as_str().expect("source_url");
    let base = format!("http://127.0.0.1:{}", sys.http_port);
    let path = url.strip_prefix(&base).expect("a URL on the orchestrator");
    assert_eq!(
        path.split('?').next(),
        Some(format!("/source/{id}/1/films/a.mkv").as_str())
    );

    // The run's own file: ranges, the end, the size.
    let (status, headers, body) = raw(&sys, "GET", path, Some("bytes=0-99"));
    assert_eq!(status, 206);
    assert_eq!(body, film[..100]);
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 0-99/{}", film.len()).as_str())
    );
    let (status, _, body) = raw(&sys, "GET", path, Some("bytes=-10"));
    assert_eq!((status, body.as_slice()), (206, &film[film.len() - 10..]));
    let (status, headers, body) = raw(&sys, "HEAD", path, None);
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(
        header(&headers, "content-length"),
        Some(film.len().to_string().as_str())
    );
    let past = format!("bytes={}-", film.len());
    assert_eq!(raw(&sys, "GET", path, Some(&past)).0, 416);
    let (sent, _, _) = served(&sys);
    assert_eq!(sent, 110, "bytes sent for 100 + 10 asked");

    // Everything else: refused, and not one byte of any file.
    let sig = url.split("sig=").nth(1).expect("sig");
    let mut flipped = sig.to_string();
    let first = if flipped.starts_with('0') { "1" } else { "0" };
    flipped.replace_range(0..1, first);
    let other_job = uuid_like();
    let forged = [
        path.replace(sig, &flipped),
        path.split('?').next().unwrap_or_default().to_string(),
        path.replace("films/a.mkv", "films/b.mkv"),
        path.replace(&format!("{id}/1/"), &format!("{id}/2/")),
        path.replace(&id, &other_job),
        path.replace("films/a.mkv", "films/../../secret.mkv"),
        path.replace("films/a.mkv", "films/%2e%2e%2f%2e%2e%2fsecret.mkv"),
        path.replace("films/a.mkv", "%2e%2e%2fsecret.mkv"),
        path.replace("films/a.mkv", "films/a.mkv%00"),
        path.replace("films/a.mkv", "films%2fa.mkv"),
    ];
    for p in &forged {
        let (status, _, body) = raw(&sys, "GET", p, Some("bytes=0-"));
        assert!(matches!(status, 403 | 404), "{p}: {status}");
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(
            answer["error"].is_string(),
            "{p}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!body.windows(6).any(|w| w == b"SECRET"), "{p}");
    }
    let (sent, _, refused) = served(&sys);
    assert_eq!(sent, 110, "a refused request sent bytes");
    assert_eq!(refused, forged.len() as u64);

    // The run ends: its URL with it.
    let (status, _) = http_json("DELETE", &sys.api(&format!("/api/jobs/{id}")), None);
    assert_eq!(status, 200);
    let (status, _, body) = raw(&sys, "GET", path, Some("bytes=0-99"));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    assert_eq!(served(&sys).0, 110);
}

/// A job id that is not the test's.
fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

#[test]
fn a_three_second_network_drop_mid_job_costs_the_run_nothing() {
    let mut sys = System::new();
    serve_library(&mut sys);
    make_heavy_media(&library(&sys).join("film.mkv"), 320, 240, 60);
    // Workers reach the orchestrator's HTTP port through a link that
    // carries 2 MB/s: reading the film takes about 8 s.
    let link = Proxy::start(sys.http_port, 2_000_000);
    sys.orchestrator_env.push(env(
        "TRANSCODE_HTTP__PUBLIC_URL",
        format!("http://127.0.0.1:{}", link.port()),
    ));
    let _o = sys.start_orchestrator();
    let w = sys.start_online("w", &[NO_MEDIA]);
    let id = sys.submit(&request("film.mkv"));
    wait_until(Duration::from_secs(60), "the job to be under way", || {
        let job = sys.job(&id);
        (job["state"] == "processing" && job["progress"].as_f64().unwrap_or(0.0) > 3.0)
            .then_some(())
    });
    let before = link.accepted();
    let cut_at = Instant::now();
    link.cut(Duration::from_secs(3));
    let job = sys.job(&id);
    assert_eq!(
        job["state"], "processing",
        "the job ended before the drop: {job}"
    );

    let job = sys.wait_job(&id, "completed", JOB);
    assert_eq!(
        (job["attempt"].as_u64(), job["failures"].as_u64()),
        (Some(1), Some(0)),
        "{job}"
    );
    assert!(link.accepted() > before, "FFmpeg never connected again");
    assert!(
        w.log().contains("reconnecting"),
        "no reconnection in the worker's log"
    );
    eprintln!(
        "completed {:.1} s after the drop",
        cut_at.elapsed().as_secs_f64()
    );
    // The whole film: every frame, no gap in picture or sound.
    let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
    decode::assert_seamless(&d, 30.0, 1800, 0, 60.0);
}

#[test]
fn an_orchestrator_out_of_reach_fails_the_run_and_the_library_is_listed() {
    let mut sys = System::new();
    serve_library(&mut sys);
    make_media(&library(&sys).join("films/a.mkv"), 320, 240, 2, true);
    std::fs::create_dir_all(library(&sys).join("films/old")).expect("folder");
    let nobody = free_port();
    sys.orchestrator_env.push(env(
        "TRANSCODE_HTTP__PUBLIC_URL",
        format!("http://127.0.0.1:{nobody}"),
    ));
    sys.orchestrator_env
        .push(env("TRANSCODE_SCHEDULER__MAX_ATTEMPTS", "2"));
    let _o = sys.start_orchestrator();

    // The library, as the dashboard and `transcodectl ls` see it.
    // A length is probed once; a listing waits for it at most 1.5 s.
    let listing = wait_until(Duration::from_secs(20), "the listing with a length", || {
        get_json(&sys.api("/api/media?path=films"))
            .filter(|l| l["entries"][1]["duration"].is_number())
    });
    assert_eq!(listing["path"], "films");
    let entries = listing["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["name"], "old");
    assert_eq!(entries[0]["kind"], "directory");
    assert_eq!(entries[1]["path"], "films/a.mkv");
    assert_eq!(entries[1]["kind"], "video");
    let length = entries[1]["duration"].as_f64().expect("a length");
    assert!((length - 2.0).abs() < 0.2, "{length}");
    for (query, want) in [
        ("path=..%2F", 403),
        ("path=films%2F..%2F..", 403),
        ("path=nope", 404),
    ] {
        let (status, body) = http_json("GET", &sys.api(&format!("/api/media?{query}")), None);
        assert_eq!(status, want, "{query}: {body}");
        assert!(body["error"].is_string());
    }
    // A job for a file the library lacks, or for a playlist in disguise
    // (it names files outside the library), is refused at once.
    std::fs::write(
        library(&sys).join("films/list.mkv"),
        b"#EXTM3U\n../../x.ts\n",
    )
    .expect("list");
    for (file, needle) in [
        ("films/missing.mkv", "media.root"),
        ("films/list.mkv", "HLS playlist"),
    ] {
        let (status, body) = http_json(
            "POST",
            &sys.api("/api/jobs"),
            Some(request(file).to_string().as_bytes()),
        );
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{body}");
    }

    let _w = sys.start_online("w", &[NO_MEDIA]);
    let id = sys.submit(&request("films/a.mkv"));
    let job = sys.wait_job(&id, "failed", JOB);
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("worker w cannot reach the source"), "{job}");
    assert_eq!(job["failures"], 2, "{job}");
    assert_eq!(job["error_kind"], "worker", "{job}");
}

#[test]
fn a_split_job_over_http_reads_each_chunk_from_its_own_url() {
    let mut sys = System::new();
    serve_library(&mut sys);
    decode::make_film(&library(&sys).join("film.mkv"), 40);
    let _o = sys.start_orchestrator();
    let _a = sys.start_online("a", &[NO_MEDIA, ONE_THREAD[0]]);
    let _b = sys.start_online("b", &[NO_MEDIA, ONE_THREAD[0]]);
    let id = sys.submit(&split::request("film.mkv", true));
    let job = sys.wait_job(&id, "completed", split::JOB);
    let parts = split::chunks(&job);
    assert!(parts.len() >= 3, "{job}");
    assert_eq!(split::chunk_workers(&job).len(), 2, "{job}");
    // Each chunk's worker fetched its own run's URL (its first bytes, then
    // FFmpeg's ranges), and nothing was refused.
    let (bytes, requests, refused) = served(&sys);
    assert!(
        requests as usize >= 2 * parts.len(),
        "{requests} requests for {} chunks",
        parts.len()
    );
    assert!(bytes > 0);
    assert_eq!(refused, 0);
    let completed = parts.iter().filter(|c| c["state"] == "completed").count();
    split::assert_stream_whole(&sys, &id, 40, completed.saturating_sub(1));
}
