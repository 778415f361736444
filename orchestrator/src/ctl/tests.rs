use super::*;
use serde_json::json;

#[test]
fn fmt_eta_cases() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0:00"),
        (0.4, "0:00"),
        (32.0, "0:32"),
        (32.6, "0:33"),
        (59.5, "1:00"),
        (61.0, "1:01"),
        (600.0, "10:00"),
        (3599.0, "59:59"),
        (3599.6, "1:00:00"),
        (3600.0, "1:00:00"),
        (3661.0, "1:01:01"),
        (36000.0, "10:00:00"),
        (-1.0, "-:--"),
        (f64::NAN, "-:--"),
        (f64::INFINITY, "-:--"),
    ];
    for (seconds, want) in cases {
        assert_eq!(fmt_eta(*seconds), *want, "fmt_eta({seconds})");
    }
}

#[test]
fn progress_line_cases() {
    let cases: &[(Value, &str)] = &[
        (
            json!({"state": "processing", "progress": 50.0, "fps": 48.0, "speed": 1.9,
                   "eta_s": 32.0, "worker_id": "gaming-pc", "attempt": 1}),
            "[##########----------]  50.0%   48.0 fps  1.9x  ETA 0:32  processing on gaming-pc",
        ),
        (
            json!({"state": "queued", "progress": 0, "fps": null, "speed": null,
                   "eta_s": null, "worker_id": null}),
            "[--------------------]   0.0%  queued",
        ),
        (
            json!({"state": "assigned", "worker_id": "nas"}),
            "[--------------------]   0.0%  assigned to nas",
        ),
        (
            json!({"state": "completed", "progress": 100, "worker_id": "nas"}),
            "[####################] 100.0%  completed on nas",
        ),
        (
            json!({"state": "processing", "progress": 150.0}),
            "[####################] 100.0%  processing",
        ),
        (
            json!({"state": "processing", "progress": -3.0}),
            "[--------------------]   0.0%  processing",
        ),
        (
            json!({"state": "processing", "progress": 99.9}),
            "[###################-]  99.9%  processing",
        ),
        (
            json!({"state": "processing", "progress": 12.5, "eta_s": 3725.0,
                   "speed": 0.0, "fps": 0.0}),
            "[##------------------]  12.5%    0.0 fps  0.0x  ETA 1:02:05  processing",
        ),
        (
            json!({"state": "processing", "progress": "half", "fps": "fast",
                   "eta_s": -5.0, "worker_id": ""}),
            "[--------------------]   0.0%  processing",
        ),
        (
            json!({"state": "processing", "progress": 30, "worker_id": "w2", "attempt": 2}),
            "[######--------------]  30.0%  processing on w2 (attempt 2)",
        ),
        (
            json!({"state": "processing", "progress": 40, "worker_id": "w2", "attempt": 7,
                   "chunks": [
                       {"attempt": 5, "worker_id": "w1", "state": "completed"},
                       {"attempt": 6, "worker_id": "w2", "state": "processing"},
                       {"attempt": 7, "worker_id": "w1", "state": "assigned"}]}),
            "[########------------]  40.0%  processing in 3 chunks on w1, w2",
        ),
        (
            json!({"state": "completed", "progress": 100, "chunks": [
                       {"attempt": 1, "worker_id": "w1", "state": "completed"}]}),
            "[####################] 100.0%  completed in 1 chunk",
        ),
        (json!({}), "[--------------------]   0.0%  unknown"),
        (json!(null), "[--------------------]   0.0%  unknown"),
    ];
    for (job, want) in cases {
        assert_eq!(progress_line(job), *want, "job {job}");
    }
}

#[test]
fn jobs_table_cases() {
    let cases: &[(Vec<Value>, &str)] = &[
        (vec![], "no jobs\n"),
        (
            vec![json!({
                "job_id": "3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b", "state": "processing",
                "progress": 45.0, "worker_id": "gaming-pc", "attempt": 1,
                "source_path": "movies/a.mkv"
            })],
            "JOB       STATE       PROGRESS  WORKER     ATTEMPT  SOURCE\n\
             3f2b8c1e  processing   45.0%    gaming-pc  1        movies/a.mkv\n",
        ),
        (
            // Missing and null fields become `-`; 0 and 100% keep their width.
            vec![
                json!({"job_id": "aaaaaaaa-0000-0000-0000-000000000000", "state": "queued",
                       "progress": 0, "worker_id": null, "attempt": 0,
                       "source_path": "a.mkv"}),
                json!({"job_id": "bbbbbbbb-0000-0000-0000-000000000000",
                       "state": "completed", "progress": 100, "worker_id": "a-very-long-worker-name",
                       "attempt": 3, "source_path": "b.mkv"}),
                json!({"unknown_field": true}),
            ],
            "JOB       STATE      PROGRESS  WORKER                   ATTEMPT  SOURCE\n\
             aaaaaaaa  queued       0.0%    -                        0        a.mkv\n\
             bbbbbbbb  completed  100.0%    a-very-long-worker-name  3        b.mkv\n\
             -         -          -         -                        -        -\n",
        ),
        (
            // A short id is shown whole; ids are cut by characters, not bytes.
            vec![json!({"job_id": "ééé", "state": "failed", "progress": 7.24,
                        "attempt": 2, "source_path": "c.mkv"})],
            "JOB  STATE   PROGRESS  WORKER  ATTEMPT  SOURCE\n\
             ééé  failed    7.2%    -       2        c.mkv\n",
        ),
    ];
    for (jobs, want) in cases {
        assert_eq!(jobs_table(jobs), *want, "jobs {jobs:?}");
    }
}

#[test]
fn workers_table_cases() {
    let cases: &[(Vec<Value>, &str)] = &[
        (vec![], "no workers\n"),
        (
            vec![
                json!({
                    "worker_id": "gaming-pc", "online": true, "last_seen": 1700000000000u64,
                    "jobs": ["3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b"],
                    "heartbeat": {
                        "worker_id": "gaming-pc", "ip_address": "192.168.1.20", "port": 8080,
                        "os": "linux", "hw_accel": ["nvenc"], "status": "working",
                        "cpu_usage": 12.5, "encoders": ["h264_nvenc", "libx264"]
                    }
                }),
                json!({
                    "worker_id": "a-much-longer-worker-name", "online": false,
                    "last_seen": null, "heartbeat": null, "jobs": []
                }),
            ],
            "WORKER                     ONLINE  STATUS   CPU    JOBS  ENCODERS            ADDRESS\n\
             gaming-pc                  yes     working  12.5%  1     h264_nvenc,libx264  192.168.1.20:8080\n\
             a-much-longer-worker-name  no      -        -      0     -                   -\n",
        ),
        (
            // No `encoders`: fall back to `hw_accel`; IPv6 gets brackets;
            // a missing `jobs` counts as none.
            vec![json!({
                "worker_id": "nas", "online": true,
                "heartbeat": {"ip_address": "fe80::1", "port": 8080, "hw_accel": ["vaapi", "qsv"],
                              "status": "idle", "cpu_usage": 0}
            })],
            "WORKER  ONLINE  STATUS  CPU   JOBS  ENCODERS   ADDRESS\n\
             nas     yes     idle    0.0%  0     vaapi,qsv  [fe80::1]:8080\n",
        ),
        (
            vec![json!({"heartbeat": "garbage", "online": "yes"})],
            "WORKER  ONLINE  STATUS  CPU  JOBS  ENCODERS  ADDRESS\n\
             -       no      -       -    0     -         -\n",
        ),
    ];
    for (workers, want) in cases {
        assert_eq!(workers_table(workers), *want, "workers {workers:?}");
    }
}

#[test]
fn base_url_cases() {
    let cases = [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        (" https://orch.lan// ", "https://orch.lan"),
        ("10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("orch", "http://orch"),
    ];
    for (raw, want) in cases {
        assert_eq!(base_url(raw), want, "base_url({raw:?})");
    }
}

#[test]
fn parse_job_id_cases() {
    let id = "3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b";
    let cases: &[(&str, bool)] = &[
        (id, true),
        (" 3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b ", true),
        ("3f2b8c1e5d4a4e6f9a0b1c2d3e4f5a6b", true),
        ("3f2b8c1e", false),
        ("", false),
        ("not-a-uuid", false),
    ];
    for (raw, ok) in cases {
        let got = parse_job_id(raw);
        assert_eq!(got.is_ok(), *ok, "parse_job_id({raw:?}) = {got:?}");
        if let Err(sentence) = got {
            assert!(sentence.contains("is not a job id"), "{sentence}");
        }
    }
}

#[test]
fn error_sentences() {
    let base = "http://127.0.0.1:8000";
    assert_eq!(
        unreachable_message(base, "connection refused"),
        "cannot reach the orchestrator at http://127.0.0.1:8000 (connection refused); \
         is it running? (--orchestrator URL)"
    );
    let cases: &[(u16, Value, &str)] = &[
        (404, json!({"error": "no job 42"}), "no job 42"),
        (
            409,
            json!({"error": " job already finished "}),
            "job already finished",
        ),
        (
            500,
            json!({"error": ""}),
            "the orchestrator at http://127.0.0.1:8000 answered HTTP 500",
        ),
        (
            502,
            json!(null),
            "the orchestrator at http://127.0.0.1:8000 answered HTTP 502",
        ),
        (
            400,
            json!({"error": 3}),
            "the orchestrator at http://127.0.0.1:8000 answered HTTP 400",
        ),
    ];
    for (status, body, want) in cases {
        assert_eq!(
            api_error_message(base, *status, body),
            *want,
            "{status} {body}"
        );
    }
}

#[test]
fn final_states() {
    for (state, want) in [
        ("queued", false),
        ("assigned", false),
        ("processing", false),
        ("completed", true),
        ("failed", true),
        ("cancelled", true),
        ("", false),
    ] {
        assert_eq!(is_final(state), want, "{state}");
    }
}

#[test]
fn media_listings() {
    let entry = |name: &str, kind, size, duration| transcode_common::wire::MediaEntry {
        name: name.into(),
        path: format!("films/{name}"),
        kind,
        size,
        duration,
    };
    let listing = MediaListing {
        path: "films".into(),
        entries: vec![
            entry("old", MediaKind::Directory, None, None),
            entry(
                "Heat.mkv",
                MediaKind::Video,
                Some(1_530_000_000),
                Some(10_218.4),
            ),
            entry("short.mp4", MediaKind::Video, Some(7_340_032), Some(67.0)),
            entry("notes.txt", MediaKind::Other, Some(512), None),
        ],
        truncated: true,
    };
    assert_eq!(
        media_table(&listing),
        "NAME       KIND    SIZE    LENGTH\n\
         old/       folder  -       -\n\
         Heat.mkv   video   1.5 GB  2:50:18\n\
         short.mp4  video   7.3 MB  1:07\n\
         notes.txt  other   512 B   -\n\
         (only the first 4 entries of films are shown)\n"
    );
    let empty = MediaListing {
        path: String::new(),
        entries: vec![],
        truncated: false,
    };
    assert_eq!(media_table(&empty), "the media root is empty\n");
    for (n, want) in [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (64_000_000, "64 MB"),
    ] {
        assert_eq!(human_bytes(n), want);
    }
    for (s, want) in [
        (0.0, "0:00"),
        (7.4, "0:07"),
        (250.0, "4:10"),
        (5525.0, "1:32:05"),
    ] {
        assert_eq!(fmt_length(s), want);
    }
}

#[test]
fn token_files_and_places() {
    let cases = [
        ("abc123\n", Some("abc123")),
        ("  abc123  \nrest", Some("abc123")),
        ("", None),
        ("\n", None),
        ("a b\n", None),
    ];
    for (text, want) in cases {
        assert_eq!(token_in(text).as_deref(), want, "{text:?}");
    }
    for (url, local) in [
        ("http://127.0.0.1:8000", true),
        ("http://localhost:8000/", true),
        ("http://[::1]:8000", true),
        ("http://127.0.0.5", true),
        ("http://udoo:8000", false),
        ("http://192.168.1.10:8000", false),
        ("http://[2001:db8::1]:8000", false),
    ] {
        assert_eq!(is_loopback_url(url), local, "{url}");
    }
    let places = token_places(Some("/srv/state"));
    assert_eq!(places[0], std::path::Path::new("/srv/state/api-token"));
    assert_eq!(places.len(), 3);
    assert_eq!(token_places(None).len(), 2);
}
