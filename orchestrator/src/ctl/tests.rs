use super::*;
use transcode_common::wire::{ChunkStatus, Heartbeat, MediaEntry, Os, WorkerStatus};

const ID: &str = "3f2b8c1e-5d4a-4e6f-9a0b-1c2d3e4f5a6b";
const BASE: &str = "http://127.0.0.1:8000";

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("a test id")
}

/// A job in `state` that reports nothing else.
fn job(state: JobState) -> JobView {
    JobView {
        job_id: id(ID),
        state,
        source_path: String::new(),
        progress: 0.0,
        fps: None,
        speed: None,
        eta_s: None,
        worker_id: None,
        attempt: 0,
        error: None,
        listed: 0,
        chunks: Vec::new(),
    }
}

fn chunk(attempt: u32, worker_id: &str, state: JobState) -> ChunkStatus {
    ChunkStatus {
        attempt,
        worker_id: worker_id.into(),
        first_segment: 0,
        end_segment: None,
        state,
        progress: 0.0,
        fps: 0.0,
        error: None,
    }
}

fn heartbeat(ip_address: &str, status: WorkerStatus, cpu_usage: f64) -> Heartbeat {
    Heartbeat {
        worker_id: "w".into(),
        ip_address: ip_address.into(),
        port: 8080,
        os: Os::Linux,
        hw_accel: Vec::new(),
        status,
        cpu_usage,
        hostname: None,
        version: None,
        cpu_cores: None,
        memory_total_mb: None,
        memory_available_mb: None,
        max_jobs: None,
        active_jobs: Vec::new(),
        encoders: Vec::new(),
        weight: None,
        interval_s: None,
        timestamp: None,
        finished_runs: Vec::new(),
    }
}

fn worker(worker_id: &str, online: bool, heartbeat: Option<Heartbeat>) -> WorkerView {
    WorkerView {
        worker_id: worker_id.into(),
        online,
        last_seen: None,
        heartbeat,
        jobs: Vec::new(),
    }
}

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
    use JobState::*;
    let cases: &[(JobView, &str)] = &[
        (
            JobView {
                progress: 50.0,
                fps: Some(48.0),
                speed: Some(1.9),
                eta_s: Some(32.0),
                worker_id: Some("gaming-pc".into()),
                attempt: 1,
                ..job(Processing)
            },
            "[##########----------]  50.0%   48.0 fps  1.9x  ETA 0:32  processing on gaming-pc",
        ),
        (job(Queued), "[--------------------]   0.0%  queued"),
        (
            // What the orchestrator sends for a job a worker was just given.
            JobView {
                fps: Some(0.0),
                worker_id: Some("nas".into()),
                attempt: 1,
                ..job(Assigned)
            },
            "[--------------------]   0.0%    0.0 fps  assigned to nas",
        ),
        (
            JobView {
                progress: 100.0,
                worker_id: Some("nas".into()),
                ..job(Completed)
            },
            "[####################] 100.0%  completed on nas",
        ),
        (
            JobView {
                progress: 150.0,
                ..job(Processing)
            },
            "[####################] 100.0%  processing",
        ),
        (
            JobView {
                progress: -3.0,
                ..job(Processing)
            },
            "[--------------------]   0.0%  processing",
        ),
        (
            JobView {
                progress: 99.9,
                ..job(Processing)
            },
            "[###################-]  99.9%  processing",
        ),
        (
            JobView {
                progress: 12.5,
                eta_s: Some(3725.0),
                speed: Some(0.0),
                fps: Some(0.0),
                ..job(Processing)
            },
            "[##------------------]  12.5%    0.0 fps  0.0x  ETA 1:02:05  processing",
        ),
        (
            // Nonsense numbers and a blank worker show nothing.
            JobView {
                progress: f64::NAN,
                fps: Some(-1.0),
                speed: Some(f64::NAN),
                eta_s: Some(-5.0),
                worker_id: Some("  ".into()),
                ..job(Processing)
            },
            "[--------------------]   0.0%  processing",
        ),
        (
            JobView {
                progress: 30.0,
                worker_id: Some("w2".into()),
                attempt: 2,
                ..job(Processing)
            },
            "[######--------------]  30.0%  processing on w2 (attempt 2)",
        ),
        (
            // A split job names the workers running a chunk now, not its
            // own worker_id or attempt.
            JobView {
                progress: 40.0,
                worker_id: Some("w2".into()),
                attempt: 7,
                chunks: vec![
                    chunk(5, "w1", Completed),
                    chunk(6, "w2", Processing),
                    chunk(7, "w1", Assigned),
                ],
                ..job(Processing)
            },
            "[########------------]  40.0%  processing in 3 chunks on w1, w2",
        ),
        (
            JobView {
                progress: 100.0,
                chunks: vec![chunk(1, "w1", Completed)],
                ..job(Completed)
            },
            "[####################] 100.0%  completed in 1 chunk",
        ),
        (
            JobView {
                chunks: vec![chunk(1, "w1", Failed), chunk(2, "w2", Cancelled)],
                ..job(Cancelled)
            },
            "[--------------------]   0.0%  cancelled in 2 chunks",
        ),
    ];
    for (job, want) in cases {
        assert_eq!(progress_line(job), *want, "job {job:?}");
        // A terminal shows the same words beside indicatif's bar.
        assert!(want.ends_with(&format!("] {}", progress_words(job))));
    }
}

/// Draws the `--follow` bar as on a terminal and returns the screen.
fn on_a_terminal(job: &JobView) -> String {
    let term = indicatif::InMemoryTerm::new(2, 120);
    let target = indicatif::ProgressDrawTarget::term_like(Box::new(term.clone()));
    let bar = indicatif::ProgressBar::with_draw_target(Some(BAR_STEPS), target);
    bar.set_style(bar_style());
    bar.set_position(bar_position(job));
    bar.set_message(progress_words(job));
    bar.abandon();
    term.contents()
}

#[test]
fn the_terminal_bar_looks_like_the_plain_line() {
    assert!(indicatif::ProgressStyle::with_template(&format!(
        "[{{bar:{BAR_WIDTH}}}] {{wide_msg}}"
    ))
    .is_ok());
    for (progress, state) in [
        (0.0, JobState::Queued),
        (37.5, JobState::Processing),
        (51.0, JobState::Processing),
        (99.9, JobState::Processing),
        (100.0, JobState::Completed),
    ] {
        let job = JobView {
            progress,
            fps: Some(48.0),
            eta_s: Some(32.0),
            worker_id: Some("gaming-pc".into()),
            ..job(state)
        };
        assert_eq!(on_a_terminal(&job), progress_line(&job), "{progress}%");
    }
}

#[test]
fn jobs_table_cases() {
    use JobState::*;
    let cases: &[(Vec<JobView>, &str)] = &[
        (vec![], "no jobs\n"),
        (
            vec![JobView {
                progress: 45.0,
                worker_id: Some("gaming-pc".into()),
                attempt: 1,
                source_path: "movies/a.mkv".into(),
                ..job(Processing)
            }],
            "JOB       STATE       PROGRESS  WORKER     ATTEMPT  SOURCE\n\
             3f2b8c1e  processing   45.0%    gaming-pc  1        movies/a.mkv\n",
        ),
        (
            // A job without a worker or a source gets `-`; 0 and 100% keep
            // their width; columns are as wide as their widest cell.
            vec![
                JobView {
                    job_id: id("aaaaaaaa-0000-0000-0000-000000000000"),
                    source_path: "a.mkv".into(),
                    ..job(Queued)
                },
                JobView {
                    job_id: id("bbbbbbbb-0000-0000-0000-000000000000"),
                    progress: 100.0,
                    worker_id: Some("a-very-long-worker-name".into()),
                    attempt: 3,
                    source_path: "b.mkv".into(),
                    ..job(Completed)
                },
                JobView {
                    job_id: id("cccccccc-0000-0000-0000-000000000000"),
                    progress: 7.24,
                    worker_id: Some(" ".into()),
                    attempt: 2,
                    source_path: " ".into(),
                    ..job(Failed)
                },
            ],
            "JOB       STATE      PROGRESS  WORKER                   ATTEMPT  SOURCE\n\
             aaaaaaaa  queued       0.0%    -                        0        a.mkv\n\
             bbbbbbbb  completed  100.0%    a-very-long-worker-name  3        b.mkv\n\
             cccccccc  failed       7.2%    -                        2        -\n",
        ),
        (
            // A split job lists the workers running its chunks; once none
            // runs, the job's own worker.
            vec![
                JobView {
                    worker_id: Some("w9".into()),
                    attempt: 3,
                    source_path: "m.mkv".into(),
                    chunks: vec![chunk(2, "w2", Processing), chunk(3, "w1", Assigned)],
                    ..job(Processing)
                },
                JobView {
                    worker_id: Some("w9".into()),
                    attempt: 3,
                    source_path: "m.mkv".into(),
                    chunks: vec![chunk(3, "w1", Completed)],
                    ..job(Completed)
                },
            ],
            "JOB       STATE       PROGRESS  WORKER  ATTEMPT  SOURCE\n\
             3f2b8c1e  processing    0.0%    w1, w2  3        m.mkv\n\
             3f2b8c1e  completed     0.0%    w9      3        m.mkv\n",
        ),
    ];
    for (jobs, want) in cases {
        assert_eq!(jobs_table(jobs), *want, "jobs {jobs:?}");
    }
}

#[test]
fn workers_table_cases() {
    let gaming = Heartbeat {
        hw_accel: vec!["nvenc".into()],
        encoders: vec!["h264_nvenc".into(), "libx264".into()],
        ..heartbeat("192.168.1.20", WorkerStatus::Working, 12.5)
    };
    let nas = Heartbeat {
        hw_accel: vec!["vaapi".into(), "qsv".into()],
        ..heartbeat("fe80::1", WorkerStatus::Idle, 0.0)
    };
    let cases: &[(Vec<WorkerView>, &str)] = &[
        (vec![], "no workers\n"),
        (
            vec![
                WorkerView {
                    last_seen: Some(1_700_000_000_000),
                    jobs: vec![ID.into()],
                    ..worker("gaming-pc", true, Some(gaming))
                },
                worker("a-much-longer-worker-name", false, None),
            ],
            "WORKER                     ONLINE  STATUS   CPU    JOBS  ENCODERS            ADDRESS\n\
             gaming-pc                  yes     working  12.5%  1     h264_nvenc,libx264  192.168.1.20:8080\n\
             a-much-longer-worker-name  no      -        -      0     -                   -\n",
        ),
        (
            // No `encoders`: fall back to `hw_accel`; IPv6 gets brackets.
            vec![worker("nas", true, Some(nas))],
            "WORKER  ONLINE  STATUS  CPU   JOBS  ENCODERS   ADDRESS\n\
             nas     yes     idle    0.0%  0     vaapi,qsv  [fe80::1]:8080\n",
        ),
        (
            // Software only, no address, a load that is not a number.
            vec![worker(
                "pi",
                false,
                Some(heartbeat(" ", WorkerStatus::Draining, f64::NAN)),
            )],
            "WORKER  ONLINE  STATUS    CPU  JOBS  ENCODERS  ADDRESS\n\
             pi      no      draining  -    0     -         -\n",
        ),
    ];
    for (workers, want) in cases {
        assert_eq!(workers_table(workers), *want, "workers {workers:?}");
    }
}

#[test]
fn answers_the_orchestrator_gives_are_read() {
    // The orchestrator's own job record, as `GET /api/jobs/{id}` sends
    // it, reads as a view: a plain job and a split one.
    let request: transcode_common::wire::JobRequest = serde_json::from_str(
        r#"{"source_path": "films/a.mkv", "resolution": "720p", "bitrate": "2M"}"#,
    )
    .expect("a request");
    let mut record = crate::job::Job::from_request(&request, id(ID), 1, 1_700_000_000_000);
    record.state = JobState::Processing;
    record.worker_id = Some("desk".into());
    record.attempt = 2;
    record.progress = 12.0;
    record.listed = 3;
    let body = serde_json::to_string(&record).expect("a job serializes");
    let view: JobView = read_answer(BASE, "GET /api/jobs/x", "a job", &body).expect("a view");
    assert_eq!(
        (view.job_id, view.state, view.worker_id.as_deref()),
        (id(ID), JobState::Processing, Some("desk"))
    );
    assert_eq!((view.attempt, view.listed, view.fps), (2, 3, Some(0.0)));
    assert_eq!(view.source_path, "films/a.mkv");
    record.is_mesh_mode = true;
    record.chunks = vec![crate::job::Chunk::new(4, "nas", 10, Some(20), 1)];
    let body = serde_json::to_string(&[&record]).expect("jobs serialize");
    let views: Vec<JobView> =
        read_answer(BASE, "GET /api/jobs", "a list of jobs", &body).expect("a list of views");
    assert_eq!(views[0].chunks, vec![record.chunks[0].view()]);

    // What the orchestrator's registry lists reads back unchanged.
    let listed = vec![WorkerView {
        last_seen: Some(5),
        jobs: vec![ID.into()],
        ..worker(
            "nas",
            true,
            Some(heartbeat("10.0.0.2", WorkerStatus::Idle, 3.0)),
        )
    }];
    let body = serde_json::to_string(&listed).expect("workers serialize");
    let back: Vec<WorkerView> =
        read_answer(BASE, "GET /api/workers", "a list of workers", &body).expect("workers");
    assert_eq!(back, listed);
}

#[test]
fn answers_are_read_leniently_where_they_may_differ() {
    // Unknown fields are ignored; optional ones may be null or missing.
    let body = format!(
        r#"{{"job_id": "{ID}", "state": "queued", "fps": null, "worker_id": null,
             "added_later": {{"x": 1}}}}"#
    );
    let view: JobView = read_answer(BASE, "GET /api/jobs/x", "a job", &body).expect("read");
    assert_eq!(view, job(JobState::Queued));
    let workers: Vec<WorkerView> = read_answer(
        BASE,
        "GET /api/workers",
        "a list of workers",
        r#"[{"worker_id": "nas", "heartbeat": null}]"#,
    )
    .expect("read");
    assert_eq!(workers, vec![worker("nas", false, None)]);
}

#[test]
fn answers_that_cannot_be_read_are_sentences() {
    let job_a = format!(r#"{{"job_id": "{ID}", "state": "queued"}}"#);
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"[{{"job_id": "{ID}", "state": "paused"}}]"#),
            "[0].state: unknown variant `paused`",
        ),
        (
            format!(r#"[{job_a}, {{"job_id": "{ID}", "state": "queued", "progress": "half"}}]"#),
            "[1].progress: invalid type: string \"half\", expected f64",
        ),
        (
            r#"[{"state": "queued"}]"#.into(),
            "[0]: missing field `job_id`",
        ),
        (
            r#"{"jobs": []}"#.into(),
            "invalid type: map, expected a sequence",
        ),
        ("<html>bad gateway</html>".into(), "expected value"),
        ("".into(), "EOF while parsing"),
        (format!("[{job_a}] [{job_a}]"), "trailing characters"),
    ];
    for (body, why) in cases {
        let got = read_answer::<Vec<JobView>>(BASE, "GET /api/jobs", "a list of jobs", &body);
        let Err(sentence) = got else {
            panic!("{body} was read");
        };
        assert!(
            sentence.starts_with(
                "the orchestrator at http://127.0.0.1:8000 answered GET /api/jobs \
                 with something that is not a list of jobs ("
            ) && sentence.contains(why)
                && sentence.ends_with("); is transcodectl as new as the orchestrator?")
                && !sentence.contains("at line"),
            "{body}: {sentence}"
        );
    }
    let got = read_answer::<WorkerView>(
        BASE,
        "GET /api/workers",
        "a list of workers",
        r#"{"worker_id": "nas", "heartbeat": "garbage"}"#,
    );
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("(heartbeat: invalid type: string \"garbage\"")),
        "{got:?}"
    );
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
    let cases: &[(&str, bool)] = &[
        (ID, true),
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
    assert_eq!(
        unreachable_message(BASE, "connection refused"),
        "cannot reach the orchestrator at http://127.0.0.1:8000 (connection refused); \
         is it running? (--orchestrator URL)"
    );
    // What the orchestrator sends is what it would say.
    let sent = serde_json::to_string(&ErrorAnswer {
        error: "job 42 does not exist".into(),
    })
    .expect("serializes");
    let fallback =
        |status| format!("the orchestrator at http://127.0.0.1:8000 answered HTTP {status}");
    let cases: &[(u16, &str, String)] = &[
        (404, &sent, "job 42 does not exist".into()),
        (
            409,
            r#"{"error": " job already finished "}"#,
            "job already finished".into(),
        ),
        (
            429,
            r#"{"error": "too many", "retry_after": 3}"#,
            "too many".into(),
        ),
        (500, r#"{"error": ""}"#, fallback(500)),
        (502, "null", fallback(502)),
        (502, "<html>Bad Gateway</html>", fallback(502)),
        (503, "", fallback(503)),
        (400, r#"{"error": 3}"#, fallback(400)),
    ];
    for (status, body, want) in cases {
        assert_eq!(
            api_error_message(BASE, *status, body),
            *want,
            "{status} {body}"
        );
    }
}

#[test]
fn media_listings() {
    let entry = |name: &str, kind, size, duration| MediaEntry {
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
