//! A worker's real job: an assignment on its topic, FFmpeg on real media,
//! an HLS stream a player can start while FFmpeg still runs, progress on
//! MQTT, clean failures, cancels, and an HTTP server that serves nothing
//! but the job's own files.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use transcode_tests::mqtt::{self, Watcher};
use transcode_tests::{
    any_children_named, children_named, ffprobe, header, http_raw, make_media, wait_until, System,
};

const JOB: Duration = Duration::from_secs(120);

/// A random UUID without another dependency: from the kernel.
fn new_job_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("kernel uuid")
        .trim()
        .to_string()
}

fn assign(sys: &System, worker: &str, job: &Value) {
    assert!(mqtt::publish(
        sys.broker_port,
        &format!("transcode/workers/{worker}/jobs"),
        job.to_string().as_bytes(),
        false
    ));
}

fn status(sys: &System, job_id: &str) -> Option<Value> {
    mqtt::retained(sys.broker_port, &format!("transcode/jobs/{job_id}/status"))
        .and_then(|p| serde_json::from_str(&p).ok())
}

fn wait_state(sys: &System, job_id: &str, state: &str, timeout: Duration) -> Value {
    wait_until(timeout, &format!("job {job_id} to be {state}"), || {
        let s = status(sys, job_id)?;
        if s["state"] != state
            && ["completed", "failed", "cancelled"].contains(&s["state"].as_str()?)
        {
            panic!("job {job_id} ended {} instead of {state}: {s}", s["state"]);
        }
        (s["state"] == state).then_some(s)
    })
}

fn heartbeat(sys: &System, worker: &str) -> Value {
    mqtt::retained(
        sys.broker_port,
        &format!("transcode/workers/{worker}/heartbeat"),
    )
    .and_then(|p| serde_json::from_str(&p).ok())
    .unwrap_or(Value::Null)
}

/// A watcher on `transcode/#`, up once it has seen the worker's retained
/// heartbeat.
fn watch(sys: &System, worker: &str) -> Watcher {
    Watcher::start_ready(
        sys.broker_port,
        &[],
        "transcode/#",
        &format!("transcode/workers/{worker}/heartbeat"),
        sys.dir.path(),
        "mosquitto_sub",
    )
}

fn statuses(w: &Watcher, job_id: &str) -> Vec<Value> {
    w.messages()
        .iter()
        .filter(|m| m.topic == format!("transcode/jobs/{job_id}/status"))
        .filter_map(|m| serde_json::from_str(&m.payload).ok())
        .collect()
}

#[test]
fn a_1080p_source_streams_at_720p_from_six_seconds_while_ffmpeg_runs() {
    let sys = System::new();
    make_media(
        &sys.dir.path().join("media/movies/big.mkv"),
        1920,
        1080,
        24,
        true,
    );
    let _o = sys.start_orchestrator();
    let worker = sys.start_online("w1", &[]);
    let watcher = watch(&sys, "w1");

    let job_id = new_job_id();
    assign(
        &sys,
        "w1",
        &json!({"job_id": job_id, "source_path": "movies/big.mkv", "resolution": "720p",
                "bitrate": "1M", "start_time": 6, "is_mesh_mode": false}),
    );

    // The player can start while FFmpeg is still writing.
    let hb_port = heartbeat(&sys, "w1")["port"].as_u64().expect("port") as u16;
    let playlist_path = format!("/hls/{job_id}/index.m3u8");
    let live = wait_until(JOB, "a playlist with a segment and no end yet", || {
        let (code, headers, body) = http_raw(hb_port, &playlist_path);
        let text = String::from_utf8_lossy(&body).to_string();
        if code == 200 && text.contains(".ts") {
            return Some((headers, text));
        }
        None
    });
    let (headers, text) = live;
    assert!(
        !text.contains("#EXT-X-ENDLIST"),
        "the playlist was already closed:\n{text}"
    );
    assert!(
        !children_named(worker.pid(), "ffmpeg").is_empty(),
        "FFmpeg still runs"
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(header(&headers, "cache-control").is_some_and(|c| c.contains("no-cache")));
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{text}");
    let (code, headers, body) = http_raw(hb_port, &format!("/hls/{job_id}/seg0.ts"));
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-type"), Some("video/mp2t"));
    assert_eq!(
        body.first(),
        Some(&0x47),
        "an MPEG-TS packet starts with 0x47"
    );

    let done = wait_state(&sys, &job_id, "completed", JOB);
    assert_eq!(done["progress"], 100.0);
    assert_eq!(done["worker_id"], "w1");
    let url = done["stream_url"].as_str().expect("stream_url").to_string();
    assert_eq!(
        url,
        format!("http://127.0.0.1:{hb_port}/hls/{job_id}/index.m3u8")
    );

    let (streams, duration) = ffprobe(&url);
    assert!(
        streams.contains(&("video".into(), "h264".into(), 1280, 720)),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.0 == "audio" && s.1 == "aac"),
        "{streams:?}"
    );
    assert!((duration - 18.0).abs() <= 0.5, "duration {duration}");

    // Progress rose, with a stream URL once the first segment existed, and
    // ended at completed 100.
    let seen = statuses(&watcher, &job_id);
    let processing: Vec<f64> = seen
        .iter()
        .filter(|s| s["state"] == "processing")
        .filter_map(|s| s["progress"].as_f64())
        .collect();
    assert!(processing.len() >= 2, "{seen:?}");
    assert!(
        processing.windows(2).all(|w| w[0] <= w[1]),
        "progress went down: {processing:?}"
    );
    assert!(
        processing.iter().any(|p| *p > 0.0 && *p < 100.0),
        "{processing:?}"
    );
    assert!(seen
        .iter()
        .any(|s| s["state"] == "processing" && s["stream_url"] == url.as_str()));
    let last = seen.last().expect("statuses");
    assert_eq!(last["state"], "completed");
    for s in &seen {
        for key in ["job_id", "state", "progress", "fps"] {
            assert!(s.get(key).is_some(), "{key} missing in {s}");
        }
    }
}

#[test]
fn sources_without_audio_portrait_or_smaller_than_asked() {
    let sys = System::new();
    let media = sys.dir.path().join("media");
    make_media(&media.join("silent.mkv"), 640, 360, 6, false);
    make_media(&media.join("portrait.mp4"), 720, 1280, 6, true);
    make_media(&media.join("small.mkv"), 640, 360, 6, true);
    // A leftover of an earlier run, and a file that is not ours.
    let out = sys.dir.path().join("out-w2");
    let stale = out.join("00000000-0000-4000-8000-000000000000");
    std::fs::create_dir_all(&stale).expect("stale dir");
    std::fs::write(out.join("notes.txt"), "mine").expect("file");
    let _o = sys.start_orchestrator();
    let _w = sys.start_online(
        "w2",
        &[
            ("TRANSCODE_TRANSCODE__MAX_JOBS", "3"),
            ("TRANSCODE_TRANSCODE__KEEP_OUTPUTS_S", "2"),
        ],
    );
    // A leftover the orchestrator does not list goes once unused for
    // transcode.keep_outputs_s; files that are not job folders stay.
    wait_until(Duration::from_secs(10), "the stale output to go", || {
        (!stale.exists()).then_some(())
    });
    assert!(
        out.join("notes.txt").exists(),
        "only job folders are deleted"
    );

    let cases: Vec<(&str, &str, (u64, u64), bool)> = vec![
        ("silent.mkv", "720p", (640, 360), false),
        ("portrait.mp4", "720p", (404, 720), true),
        ("small.mkv", "1280x720", (640, 360), true),
    ];
    let ids: Vec<String> = cases.iter().map(|_| new_job_id()).collect();
    for ((source, resolution, _, _), id) in cases.iter().zip(&ids) {
        assign(
            &sys,
            "w2",
            &json!({"job_id": id, "source_path": source, "resolution": resolution, "bitrate": 800000, "start_time": 0, "is_mesh_mode": false}),
        );
    }
    for ((source, _, (w, h), audio), id) in cases.iter().zip(&ids) {
        let done = wait_state(&sys, id, "completed", JOB);
        let url = done["stream_url"].as_str().expect("stream_url");
        let (streams, duration) = ffprobe(url);
        assert!(
            streams.contains(&("video".into(), "h264".into(), *w, *h)),
            "{source}: {streams:?}"
        );
        assert_eq!(
            streams.iter().any(|s| s.0 == "audio"),
            *audio,
            "{source}: {streams:?}"
        );
        assert!((duration - 6.0).abs() <= 0.5, "{source}: {duration}");
    }
    // Outputs are deleted after transcode.keep_outputs_s.
    for id in &ids {
        let dir = out.join(id);
        wait_until(
            Duration::from_secs(20),
            &format!("{} to be deleted", dir.display()),
            || (!dir.exists()).then_some(()),
        );
    }
}

#[test]
fn bad_sources_fail_with_clear_errors_and_the_worker_carries_on() {
    let sys = System::new();
    let media = sys.dir.path().join("media");
    std::fs::create_dir_all(&media).expect("media");
    std::fs::write(
        media.join("noise.mkv"),
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("noise");
    // A playlist inside the media root that names a file outside it.
    std::fs::write(sys.dir.path().join("secret.ts"), b"TOPSECRET").expect("secret");
    std::fs::write(
        media.join("list.mkv"),
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nfile:{}\n#EXT-X-ENDLIST\n",
            sys.dir.path().join("secret.ts").display()
        ),
    )
    .expect("playlist");
    let _o = sys.start_orchestrator();
    let worker = sys.start_online("w3", &[]);

    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!("movies/missing.mkv"),
            &["w3", "movies/missing.mkv", "does not exist"],
        ),
        (json!("../../etc/passwd"), &["w3", "'..'"]),
        (json!("-i.mkv"), &["w3", "option"]),
        (json!("concat:a|b"), &["w3", "protocol"]),
        (json!("noise.mkv"), &["w3", "noise.mkv", "not a media file"]),
        (
            json!("list.mkv"),
            &["w3", "list.mkv", "HLS playlist", "outside the media root"],
        ),
        (json!(42), &["w3", "source_path"]),
    ];
    for (source, needles) in &cases {
        let id = new_job_id();
        assign(
            &sys,
            "w3",
            &json!({"job_id": id, "source_path": source, "resolution": "720p", "bitrate": "1M", "start_time": 0, "is_mesh_mode": false}),
        );
        let failed = wait_state(&sys, &id, "failed", JOB);
        let error = failed["error"].as_str().expect("an error sentence");
        for n in *needles {
            assert!(error.contains(n), "{source}: {error:?} should mention {n}");
        }
        assert_eq!(failed["error_kind"], "input", "{failed}");
    }
    // An assignment with a bad field but a readable id is answered too.
    let id = new_job_id();
    assign(
        &sys,
        "w3",
        &json!({"job_id": id, "source_path": "a.mkv", "resolution": "999p", "bitrate": "1M"}),
    );
    let failed = wait_state(&sys, &id, "failed", JOB);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("resolution")),
        "{failed}"
    );
    // Garbage without an id crashes nothing.
    assert!(mqtt::publish(
        sys.broker_port,
        "transcode/workers/w3/jobs",
        b"\xff\x00 not json",
        false
    ));

    // The worker still heartbeats, serves, and transcodes.
    assert!(worker_alive(&sys, "w3"));
    make_media(&media.join("fine.mkv"), 320, 240, 2, true);
    let id = new_job_id();
    assign(
        &sys,
        "w3",
        &json!({"job_id": id, "source_path": "fine.mkv", "resolution": "480p", "bitrate": "500k"}),
    );
    wait_state(&sys, &id, "completed", JOB);
    assert_eq!(any_children_named(worker.pid(), "ffmpeg"), 0);
}

/// The worker's heartbeat keeps advancing and its HTTP server answers.
fn worker_alive(sys: &System, id: &str) -> bool {
    let first = heartbeat(sys, id)["timestamp"].as_u64();
    let port = heartbeat(sys, id)["port"].as_u64().unwrap_or(0) as u16;
    wait_until(Duration::from_secs(10), "a newer heartbeat", || {
        (heartbeat(sys, id)["timestamp"].as_u64() > first).then_some(())
    });
    http_raw(port, "/healthz").0 == 200
}

#[test]
fn cancel_stops_ffmpeg_within_two_seconds_and_the_worker_is_idle_again() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 120, true);
    let _o = sys.start_orchestrator();
    let worker = sys.start_online("w4", &[]);

    for (n, cancel) in [(0, None), (1, Some("CANCEL"))] {
        let id = new_job_id();
        assign(
            &sys,
            "w4",
            &json!({"job_id": id, "source_path": "long.mkv", "resolution": "720p", "bitrate": "2M"}),
        );
        wait_until(JOB, "progress above 0", || {
            let s = status(&sys, &id)?;
            (s["state"] == "processing" && s["progress"].as_f64()? > 0.0).then_some(())
        });
        // The heartbeat flipped to working at once.
        let hb = heartbeat(&sys, "w4");
        assert_eq!(hb["status"], "working", "{hb}");
        assert_eq!(hb["active_jobs"], json!([id]), "{hb}");
        assert_eq!(children_named(worker.pid(), "ffmpeg").len(), 1);

        let payload = match cancel {
            Some(word) => word.to_string(),
            None => json!({"job_id": id}).to_string(),
        };
        let asked = Instant::now();
        assert!(mqtt::publish(
            sys.broker_port,
            "transcode/workers/w4/cancel",
            payload.as_bytes(),
            false
        ));
        let s = wait_state(&sys, &id, "cancelled", Duration::from_secs(2));
        eprintln!("cancel #{n} took {:?}", asked.elapsed());
        assert!(
            s["progress"].as_f64().is_some_and(|p| p > 0.0 && p < 100.0),
            "{s}"
        );
        wait_until(
            Duration::from_secs(2),
            "no FFmpeg process, not even a zombie",
            || (any_children_named(worker.pid(), "ffmpeg") == 0).then_some(()),
        );
        wait_until(Duration::from_secs(5), "the heartbeat to say idle", || {
            let hb = heartbeat(&sys, "w4");
            (hb["status"] == "idle" && hb["active_jobs"] == json!([])).then_some(())
        });
    }
    // FFmpeg stopped on its `q` each time; the kill after the grace period
    // was never needed.
    assert_eq!(worker.log_lines_with(&["did not stop after `q`"]), 0);
}

#[test]
fn one_ffmpeg_per_assignment_and_a_full_worker_refuses_with_a_status() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 60, false);
    let _o = sys.start_orchestrator();
    let worker = sys.start_online("w5", &[]);

    let id = new_job_id();
    let job = json!({"job_id": id, "source_path": "long.mkv", "resolution": "720p", "bitrate": "2M", "attempt": 1});
    assign(&sys, "w5", &job);
    assign(&sys, "w5", &job);
    wait_state(&sys, &id, "processing", JOB);
    wait_until(JOB, "the duplicate to be noticed", || {
        (worker.log_lines_with(&["delivered again"]) >= 1).then_some(())
    });
    // However long we look, one FFmpeg.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(children_named(worker.pid(), "ffmpeg").len() <= 1);
        std::thread::sleep(Duration::from_millis(100));
    }

    let other = new_job_id();
    assign(
        &sys,
        "w5",
        &json!({"job_id": other, "source_path": "long.mkv", "resolution": "480p", "bitrate": "1M"}),
    );
    let refused = wait_state(&sys, &other, "failed", JOB);
    assert_eq!(refused["error_kind"], "busy", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("w5") && e.contains("busy")),
        "{refused}"
    );
    // The running job is untouched.
    assert_eq!(status(&sys, &id).expect("status")["state"], "processing");
    assert_eq!(children_named(worker.pid(), "ffmpeg").len(), 1);
}

#[test]
fn encoded_traversal_never_leaves_the_job_folder() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/clip.mkv"), 320, 240, 2, false);
    let _o = sys.start_orchestrator();
    let _w = sys.start_online("w6", &[]);
    let id = new_job_id();
    assign(
        &sys,
        "w6",
        &json!({"job_id": id, "source_path": "clip.mkv", "resolution": "480p", "bitrate": "500k"}),
    );
    wait_state(&sys, &id, "completed", JOB);
    // Secrets next to and above the job folder.
    let out = sys.dir.path().join("out-w6");
    std::fs::write(out.join("secret.txt"), "TOPSECRET").expect("secret");
    std::fs::write(out.join(&id).join("secret.txt"), "TOPSECRET").expect("secret");
    std::fs::write(sys.dir.path().join("secret.txt"), "TOPSECRET").expect("secret");

    let port = heartbeat(&sys, "w6")["port"].as_u64().expect("port") as u16;
    assert_eq!(http_raw(port, &format!("/hls/{id}/index.m3u8")).0, 200);
    let attacks = [
        "/hls/../secret.txt".to_string(),
        "/hls/../../etc/passwd".to_string(),
        "/hls/%2e%2e/%2e%2e/etc/passwd".to_string(),
        format!("/hls/{id}/secret.txt"),
        format!("/hls/{id}/../secret.txt"),
        format!("/hls/{id}/..%2Fsecret.txt"),
        format!("/hls/{id}/..%2F..%2Fsecret.txt"),
        format!("/hls/{id}/%2e%2e%2f%2e%2e%2fsecret.txt"),
        format!("/hls/{id}/%252e%252e%252fsecret.txt"),
        format!("/hls/{id}/..%5csecret.txt"),
        format!("/hls/{id}/..\\..\\secret.txt"),
        format!("/hls/{id}/seg0.ts%00.m3u8"),
        format!("/hls/{id}/index.m3u8/../../secret.txt"),
        format!("/hls/{id}%2F..%2F/secret.txt"),
        format!("/hls/..%2F{id}/index.m3u8"),
        "/hls/%2e%2e/secret.txt".to_string(),
        "/hls/secret.txt/index.m3u8".to_string(),
        "/hls/00000000-0000-0000-0000-000000000000/index.m3u8".to_string(),
        "/hls//etc/passwd".to_string(),
        "/%2e%2e/%2e%2e/etc/passwd".to_string(),
    ];
    for path in &attacks {
        let (code, _, body) = http_raw(port, path);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("TOPSECRET") && !text.contains("root:"),
            "{path} leaked: {text}"
        );
        assert!(code == 404 || code == 400, "{path}: {code}");
    }
}

/// An assignment sent by hand with a `duration` (the seed's split-job
/// field) and a `segment_offset` encodes whole segments from there; as a
/// part of a split job it reports on its chunk's topic. (The grid its run
/// decides cuts the first 4 s into 1 s, 1 s and 2 s: segment 3 is the
/// first full one.)
#[test]
fn a_hand_sent_part_encodes_the_segments_its_duration_covers() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/part.mkv"), 640, 360, 24, true);
    let _o = sys.start_orchestrator();
    let _w = sys.start_online("w", &[]);
    let id = new_job_id();
    assign(
        &sys,
        "w",
        &json!({"job_id": id, "source_path": "part.mkv", "resolution": "480p", "bitrate": "1M",
            "start_time": 0, "is_mesh_mode": true, "segment_offset": 3, "duration": 7.5}),
    );
    let topic = format!("transcode/jobs/{id}/chunks/1");
    let done = wait_until(JOB, "the part's completed status", || {
        mqtt::retained(sys.broker_port, &topic)
            .and_then(|p| serde_json::from_str::<Value>(&p).ok())
            .filter(|s| s["state"] == "completed")
    });
    assert_eq!(done["segments_done"], 5, "{done}");
    assert!(
        status(&sys, &id).is_none(),
        "the job's topic is the orchestrator's"
    );
    let url = done["stream_url"].as_str().expect("stream_url");
    let (_, duration) = ffprobe(url);
    assert!(
        (duration - 8.0).abs() <= 0.2,
        "two segments of 4 s: {duration}"
    );
}
