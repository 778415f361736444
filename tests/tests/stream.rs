//! The player's stream as the orchestrator writes it: one playlist per job,
//! from the segments the workers report, whose entries redirect to
//! whoever holds each segment now. A viewer keeps watching when the worker
//! that encodes the film dies; what it saw decodes frame for frame.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use transcode_tests::browser::{self, Playback};
use transcode_tests::decode;
use transcode_tests::{get_json, header, http_raw, mqtt, wait_until, System};

const START: Duration = Duration::from_secs(30);
const JOB: Duration = Duration::from_secs(300);
const FPS: f64 = 30.0;

/// The orchestrator's playlist of a job: (status, body).
fn playlist(sys: &System, id: &str) -> (u16, String) {
    let (code, _, body) = http_raw(sys.http_port, &format!("/stream/{id}/index.m3u8"));
    (code, String::from_utf8_lossy(&body).to_string())
}

fn listed(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("seg")).count()
}

/// Waits until the job's holder has `n` segments on the playlist.
fn wait_listed(sys: &System, id: &str, n: usize, timeout: Duration) -> Value {
    wait_until(timeout, &format!("{n} segments of job {id} listed"), || {
        let (code, text) = playlist(sys, id);
        (code == 200 && listed(&text) >= n).then(|| sys.job(id))
    })
}

#[test]
fn the_orchestrator_writes_the_playlist_from_the_first_segment_to_the_end() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 24);
    let _o = sys.start_orchestrator();
    // An unknown job: 404; a queued one: 503 with Retry-After.
    let (code, _) = playlist(&sys, "6f0c6c1e-0000-4000-8000-000000000000");
    assert_eq!(code, 404);
    let id = sys.submit(&json!({"source_path": "film.mkv", "resolution": "480p", "bitrate": "1M"}));
    let (code, headers, _) = http_raw(sys.http_port, &format!("/stream/{id}/index.m3u8"));
    assert_eq!(code, 503);
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));

    let _w = sys.start_online("solo", &[]);
    // The first segment is on the playlist as soon as it exists.
    let job = wait_listed(&sys, &id, 1, JOB);
    let (code, headers, body) = http_raw(sys.http_port, &format!("/stream/{id}/index.m3u8"));
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(code, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    if job["state"] != "completed" {
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{text}");
    }
    // A segment entry redirects to the worker that holds it.
    let (code, headers, body) = http_raw(sys.http_port, &format!("/stream/{id}/seg0.ts"));
    assert_eq!(code, 302, "{}", String::from_utf8_lossy(&body));
    let location = header(&headers, "location").expect("location");
    assert!(
        location.starts_with("http://127.0.0.1:")
            && location.ends_with(&format!("/hls/{id}/seg0.ts")),
        "{location}"
    );
    assert!(
        body.is_empty(),
        "no video byte passes through the orchestrator"
    );

    sys.wait_job(&id, "completed", JOB);
    let (_, text) = playlist(&sys, &id);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    // The player starts on short segments: 1 s, 1 s, 2 s, then 4 s ones.
    let lengths: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    let want = [1.0, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0];
    assert_eq!(lengths.len(), want.len(), "{text}");
    for (got, want) in lengths.iter().zip(want) {
        assert!((got - want).abs() < 0.02, "{got} s where {want} s\n{text}");
    }
    // Nothing beyond the end; nothing that is not a segment.
    assert_eq!(
        http_raw(sys.http_port, &format!("/stream/{id}/seg8.ts")).0,
        404
    );
    assert_eq!(
        http_raw(sys.http_port, &format!("/stream/{id}/..%2fx.ts")).0,
        404
    );
    // The worker's own playlist still works for whoever uses it directly.
    let own = sys.job(&id)["stream_url"].as_str().map(str::to_string);
    let own = own.expect("the worker's stream URL");
    assert!(decode::decode(&own).video.len() >= 700);

    let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
    decode::log_joins(&d);
    decode::assert_seamless(&d, FPS, 720, 0, 24.0);
}

/// The scenario of a film night: a 4-minute 1080p film plays in hls.js
/// through the orchestrator's URL; the worker encoding it is killed 14 s
/// into playback. The viewer does not notice, and the film decodes whole.
#[test]
fn the_holder_dies_during_playback_and_the_viewer_does_not_notice() {
    browser::require_browser();
    let sys = System::new();
    let film = sys.dir.path().join("media/film.mkv");
    decode::make_film(&film, 240);
    let source_frames = decode::video_frames(&film) as usize;
    let _o = sys.start_orchestrator();
    let mut first = sys.start_online("first", &[]);
    let id = sys.submit(&json!({"source_path": "film.mkv", "resolution": "480p", "bitrate": "1M"}));
    wait_listed(&sys, &id, 1, JOB);
    let _second = sys.start_online("second", &[]);

    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    // Twice real time, so the test takes two minutes, not four.
    let player = browser::start_play(&url, 2.0, Duration::from_secs(400), sys.dir.path());
    wait_until(Duration::from_secs(60), "14 s of playback", || {
        player.current_time().filter(|t| *t >= 14.0)
    });
    let holder = sys.job(&id)["worker_id"].as_str().map(str::to_string);
    assert_eq!(holder.as_deref(), Some("first"));
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let killed_at = player.current_time().unwrap_or(0.0);
    let played: Playback = player.wait(Duration::from_secs(400));
    eprintln!(
        "killed at {killed_at:.1} s of playback; ended {} at {:.1} s, stalled {:.2} s, errors {:?}",
        played.ended, played.current_time, played.stall_s, played.errors
    );
    assert!(played.fatal_errors.is_empty(), "{:?}", played.fatal_errors);
    assert!(
        played.ended,
        "playback stopped at {:.1} s",
        played.current_time
    );
    assert!((played.duration - 240.0).abs() < 1.0, "{}", played.duration);
    assert!(
        played.stall_s <= 5.0,
        "the viewer stalled {:.2} s in total",
        played.stall_s
    );

    let done = sys.wait_job(&id, "completed", JOB);
    assert_eq!(done["workers"][0], "first");
    assert!(
        done["workers"]
            .as_array()
            .is_some_and(|w| w.iter().skip(1).all(|w| w == "second")),
        "{done}"
    );
    assert_eq!(
        done["failures"], 1,
        "the lost run counts, the refill does not"
    );
    let d = decode::decode(&url);
    decode::log_joins(&d);
    // Two joins at most: the replacement run's start, and the refill's end.
    decode::assert_seamless(&d, FPS, source_frames, 2, 240.0);
}

/// A job that starts 60 s into the source keeps its timestamps from 0
/// across a move: the resumed run neither jumps forward nor repeats.
#[test]
fn a_job_from_sixty_seconds_survives_its_holder_and_decodes_whole() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/film.mkv"), 100);
    let _o = sys.start_orchestrator();
    let mut first = sys.start_online("first", &[]);
    let id = sys.submit(&json!({"source_path": "film.mkv", "resolution": "480p",
        "bitrate": "1M", "start_time": 60}));
    wait_listed(&sys, &id, 3, JOB);
    let _second = sys.start_online("second", &[]);
    // A viewer fetched up to segment 1 through the orchestrator.
    for n in 0..2 {
        assert_eq!(
            http_raw(sys.http_port, &format!("/stream/{id}/seg{n}.ts")).0,
            302
        );
    }
    let killed = Instant::now();
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    // The replacement starts where the viewer is: segment 1's successor
    // exists again before the segments behind the viewer.
    let moved = wait_until(
        Duration::from_secs(20),
        "the run on the second worker",
        || {
            let j = sys.job(&id);
            (j["worker_id"] == "second" && j["attempt"] == 2).then_some(j)
        },
    );
    assert_eq!(moved["run_from"], 1, "{moved}");
    let (code, headers, _) = http_raw(sys.http_port, &format!("/stream/{id}/seg1.ts"));
    assert_eq!(code, 302, "a lost segment is answered once it exists again");
    assert!(header(&headers, "location").is_some_and(|l| l.contains(":")));
    eprintln!("segment 1 back after {:?}", killed.elapsed());

    sys.wait_job(&id, "completed", JOB);
    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    let d = decode::decode(&url);
    decode::log_joins(&d);
    decode::assert_seamless(&d, FPS, 1200, 2, 40.0);
    // Timestamps start at the same base as any job, not 60 s later.
    let first_pts = d.video.first().copied().unwrap_or_default();
    assert!(first_pts < 15.0, "first frame at {first_pts} s");
}

#[test]
fn outputs_live_while_they_are_watched_and_go_after() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/clip.mkv"), 8);
    let _o = sys.start_orchestrator();
    let _w = sys.start_online("w", &[("TRANSCODE_TRANSCODE__KEEP_OUTPUTS_S", "6")]);
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", JOB);
    let folder = sys.dir.path().join("out-w").join(&id);
    assert!(folder.join("seg0.ts").is_file());
    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    // Watched for 20 s, three times the retention: still there, still plays.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(20) {
        let (code, text) = playlist(&sys, &id);
        assert_eq!(code, 200);
        assert!(text.contains("#EXT-X-ENDLIST"));
        std::thread::sleep(Duration::from_secs(2));
    }
    let d = decode::decode(&url);
    assert_eq!(
        d.video.len(),
        240,
        "the output plays after 20 s of watching"
    );
    let last_request = Instant::now();
    wait_until(Duration::from_secs(10), "the output to be deleted", || {
        (!folder.exists()).then_some(())
    });
    eprintln!(
        "deleted {:?} after the last request",
        last_request.elapsed()
    );
    // The worker said so: the finished job's segments are gone for good.
    wait_until(Duration::from_secs(10), "the segment to be gone", || {
        (http_raw(sys.http_port, &format!("/stream/{id}/seg0.ts")).0 == 410).then_some(())
    });
}

#[test]
fn bad_segment_reports_are_refused_and_logged() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/clip.mkv"), 8);
    let mut o = sys.start_orchestrator();
    let _w = sys.start_online("w", &[]);
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", JOB);
    let (_, before) = playlist(&sys, &id);
    // The job's grid: 4 s segments, the first cut into 1 s, 1 s and 2 s.
    let grid = json!({"segment_frames": 120, "fps_num": 30, "fps_den": 1, "lead": 3});
    let report = |worker: &str, job: &str, segs: Value| {
        json!({"worker_id": worker, "job_id": job, "attempt": 1, "segments": segs,
            "grid": grid, "encoding": "libx264 854x480 1000k aac"})
        .to_string()
    };
    let unknown = "6f0c6c1e-0000-4000-8000-000000000001";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "w",
            report("w", unknown, json!([{"index": 0, "duration": 4.0}])),
            "no such job",
        ),
        (
            "intruder",
            report("intruder", &id, json!([{"index": 2, "duration": 4.0}])),
            "does not hold",
        ),
        (
            "w",
            report("w", &id, json!([{"index": 2, "duration": -4.0}])),
            "lasts -4",
        ),
        (
            "w",
            report("w", &id, json!([{"index": 2, "duration": 1e9}])),
            "lasts 1000000000",
        ),
        (
            "w",
            report(
                "w",
                &id,
                json!([{"index": 3, "duration": 4.0}, {"index": 2, "duration": 4.0}]),
            ),
            "increasing order",
        ),
        ("w", "{\"worker_id\": 7}".into(), "segment report refused"),
        ("w", "\u{0}\u{1}garbage".into(), "segment report refused"),
    ];
    for (worker, payload, needle) in &cases {
        let topic = format!("transcode/workers/{worker}/segments");
        assert!(mqtt::publish(
            sys.broker_port,
            &topic,
            payload.as_bytes(),
            false
        ));
        wait_until(
            Duration::from_secs(10),
            &format!("a log line saying {needle:?}"),
            || (o.log_lines_with(&["segment report refused", needle]) > 0).then_some(()),
        );
    }
    assert!(o.is_running(), "the orchestrator survived");
    assert_eq!(playlist(&sys, &id).1, before, "the playlist did not change");
    assert!(get_json(&sys.api("/healthz")).is_some());
}

#[test]
fn a_restarted_worker_keeps_its_outputs_and_says_what_it_holds() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/clip.mkv"), 8);
    let _o = sys.start_orchestrator();
    let mut w = sys.start_online("w", &[]);
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", JOB);
    let out = sys.dir.path().join("out-w");
    // A folder of a job the orchestrator no longer lists (pruned while the
    // worker was away): a copy of the real one under another id.
    let forgotten = "6f0c6c1e-0000-4000-8000-00000000000f";
    std::fs::create_dir_all(out.join(forgotten)).expect("folder");
    for file in ["seg0.ts", "seg1.ts", "segments.json"] {
        std::fs::copy(out.join(&id).join(file), out.join(forgotten).join(file)).expect("copy");
    }
    w.signal(Signal::SIGKILL);
    w.wait_exit(Duration::from_secs(5));
    sys.wait_online("w", false, START);

    let _w = sys.start_online("w", &[]);
    assert!(
        out.join(&id).join("seg0.ts").is_file(),
        "kept across the restart"
    );
    // The orchestrator leads players to the restarted worker (a new port).
    let port = sys
        .worker("w")
        .and_then(|v| v["heartbeat"]["port"].as_u64());
    let port = port.expect("the worker's port");
    wait_until(
        Duration::from_secs(10),
        "segment 1 on the restarted worker",
        || {
            let (code, headers, _) = http_raw(sys.http_port, &format!("/stream/{id}/seg1.ts"));
            (code == 302 && header(&headers, "location")?.contains(&format!(":{port}/")))
                .then_some(())
        },
    );
    let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
    assert_eq!(d.video.len(), 240);
    // The forgotten job's output goes: the orchestrator said so.
    wait_until(
        Duration::from_secs(10),
        "the forgotten output to go",
        || (!out.join(forgotten).exists()).then_some(()),
    );
}

/// Makes a source with FFmpeg's generators: `rate` frames per second (any
/// expression `-r` takes), or a variable rate when `variable` (30 fps, then
/// 20 fps after 10 s), with a tone, in Matroska (millisecond timestamps).
fn make_source(path: &std::path::Path, rate: &str, variable: bool, seconds: u32) {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(format!(
        "testsrc2=size=640x360:rate={rate}:duration={seconds}"
    ))
    .args(["-f", "lavfi", "-i"])
    .arg(format!(
        "sine=frequency=440:sample_rate=44100:duration={seconds}"
    ));
    if variable {
        cmd.args([
            "-vf",
            "setpts='if(lt(N,300),N/30/TB,(300+(N-300)*1.5)/30/TB)'",
            "-fps_mode",
            "vfr",
        ]);
    }
    cmd.args([
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
    ])
    .args([
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-shortest",
    ])
    .arg(path);
    let out = cmd.output().expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// NTSC film rate, a variable rate and 44.1 kHz audio: a run moved to
/// another worker still joins without a duplicated or missing frame.
#[test]
fn other_and_variable_frame_rates_join_across_a_move() {
    let sys = System::new();
    let media = sys.dir.path().join("media");
    std::fs::create_dir_all(&media).expect("media");
    make_source(&media.join("ntsc.mkv"), "24000/1001", false, 30);
    make_source(&media.join("vfr.mkv"), "30", true, 30);
    let _o = sys.start_orchestrator();
    let mut workers = vec![sys.start_online("w0", &[])];
    for (n, source) in ["ntsc.mkv", "vfr.mkv"].into_iter().enumerate() {
        let spare = format!("w{}", n + 1);
        workers.push(sys.start_online(&spare, &[]));
        let id =
            sys.submit(&json!({"source_path": source, "resolution": "640x360", "bitrate": "800k"}));
        let job = wait_listed(&sys, &id, 2, JOB);
        let holder = job["worker_id"].as_str().unwrap_or_default().to_string();
        let fps = job["grid"]["fps_num"].as_f64().unwrap_or(1.0)
            / job["grid"]["fps_den"].as_f64().unwrap_or(1.0);
        for w in workers
            .iter()
            .filter(|w| w.name == format!("worker-{holder}"))
        {
            w.signal(Signal::SIGKILL);
        }
        let done = sys.wait_job(&id, "completed", JOB);
        assert!(
            done["workers"].as_array().is_some_and(|w| w.len() >= 2),
            "{done}"
        );
        let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
        decode::log_joins(&d);
        let (max_step, min_step) = d.video_steps();
        assert!(
            min_step > 0.0 && max_step <= 1.5 / fps,
            "{source}: steps {min_step}..{max_step}"
        );
        let bad = d.audio_joins(0.030);
        assert!(
            bad.is_empty(),
            "{source}: audio gaps or overlaps over 30 ms: {bad:?}"
        );
        // The source's pictures, at the job's constant rate.
        let src = decode::decode(&media.join(source).display().to_string());
        let span = src.video.last().copied().unwrap_or_default()
            - src.video.first().copied().unwrap_or_default();
        let expected = (span * fps).round() as usize + 1;
        assert!(
            d.video.len().abs_diff(expected) <= 2,
            "{source}: {} frames at {fps:.3} fps, {expected} expected",
            d.video.len()
        );
        let video = d.video_duration(fps);
        assert!(
            (video - span).abs() <= 0.2,
            "{source}: {video} s of video, the source {span}"
        );
        assert!(
            (d.audio_duration() - 30.0).abs() <= 0.2,
            "{source}: {}",
            d.audio_duration()
        );
    }
}

/// A finished film being watched loses the only worker that holds it: the
/// segments the viewer needs are encoded again on another worker.
#[test]
fn a_watched_finished_job_outlives_its_holder() {
    let sys = System::new();
    decode::make_film(&sys.dir.path().join("media/clip.mkv"), 12);
    let _o = sys.start_orchestrator();
    let mut first = sys.start_online("first", &[]);
    let id = sys.submit(&json!({"source_path": "clip.mkv", "resolution": "480p", "bitrate": "1M"}));
    sys.wait_job(&id, "completed", JOB);
    let _second = sys.start_online("second", &[]);
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    sys.wait_online("first", false, START);
    // The viewer asks for segment 1: a slow answer, then the new holder.
    let asked = Instant::now();
    let location = wait_until(Duration::from_secs(30), "segment 1 again", || {
        let (code, headers, _) = http_raw(sys.http_port, &format!("/stream/{id}/seg1.ts"));
        (code == 302).then(|| header(&headers, "location").map(str::to_string))?
    });
    eprintln!("segment 1 back on {location} after {:?}", asked.elapsed());
    let second_port = sys
        .worker("second")
        .and_then(|w| w["heartbeat"]["port"].as_u64());
    assert!(
        location.contains(&format!(":{}/", second_port.unwrap_or_default())),
        "{location}"
    );
    // The playlist stayed complete; the job is complete again, whole.
    assert!(playlist(&sys, &id).1.ends_with("#EXT-X-ENDLIST\n"));
    let done = sys.wait_job(&id, "completed", JOB);
    assert_eq!(done["failures"], 0, "{done}");
    let d = decode::decode(&sys.api(&format!("/stream/{id}/index.m3u8")));
    decode::log_joins(&d);
    decode::assert_seamless(&d, FPS, 360, 1, 12.0);
}
