//! `transcodectl`, the API from a shell, against the running system.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use transcode_tests::{bin, make_media, System};

fn ctl(sys: &System, args: &[&str]) -> Output {
    Command::new(bin("transcodectl"))
        .arg("--orchestrator")
        .arg(sys.api(""))
        .arg("--token-file")
        .arg(sys.state_dir().join("api-token"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("transcodectl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn submit_follow_shows_progress_and_the_stream_url_and_tables_are_readable() {
    let sys = System::new();
    make_media(
        &sys.dir.path().join("media/movie.mkv"),
        1920,
        1080,
        20,
        true,
    );
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 60, false);
    let _o = sys.start_orchestrator();
    let _w = sys.start_worker("desk", &[]);
    sys.wait_online("desk", true, Duration::from_secs(30));

    let out = ctl(
        &sys,
        &[
            "submit",
            "movie.mkv",
            "--resolution",
            "720p",
            "--bitrate",
            "2M",
            "--follow",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let bars: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains('%'))
        .collect();
    assert!(bars.len() >= 2, "a progress bar that moves:\n{stdout}");
    assert!(
        bars.iter().any(|l| l.contains("fps") && l.contains("ETA")),
        "{stdout}"
    );
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Stream URL: "))
        .expect("the stream URL");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/index.m3u8"),
        "{url}"
    );
    let (streams, _) = transcode_tests::ffprobe(url);
    assert!(
        streams.iter().any(|s| s.0 == "video" && s.2 == 1280),
        "{streams:?}"
    );

    // A split job: its chunks show on the progress line.
    let out = ctl(
        &sys,
        &[
            "submit",
            "movie.mkv",
            "--resolution",
            "480p",
            "--bitrate",
            "1M",
            "--mesh",
            "--follow",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('[') && l.contains(" chunk") && l.contains("desk")),
        "{stdout}"
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("job ")?.split_whitespace().next())
        .expect("job id")
        .to_string();
    let job = sys.job(&id);
    assert_eq!(job["is_mesh_mode"], true, "{job}");
    assert!(
        job["chunks"].as_array().is_some_and(|c| !c.is_empty()),
        "{job}"
    );

    let jobs = text(&ctl(&sys, &["jobs"]).stdout);
    let header = jobs.lines().next().unwrap_or_default();
    for column in ["JOB", "STATE", "PROGRESS", "WORKER", "SOURCE"] {
        assert!(header.contains(column), "{jobs}");
    }
    assert!(
        jobs.contains("completed") && jobs.contains("desk") && jobs.contains("movie.mkv"),
        "{jobs}"
    );

    let workers = text(&ctl(&sys, &["workers"]).stdout);
    assert!(
        workers
            .lines()
            .next()
            .is_some_and(|h| h.contains("WORKER") && h.contains("ONLINE")),
        "{workers}"
    );
    assert!(
        workers.contains("desk") && workers.contains("libx264") && workers.contains("yes"),
        "{workers}"
    );

    // A job that fails gives a non-zero exit and the reason.
    let out = ctl(
        &sys,
        &[
            "submit",
            "missing.mkv",
            "--resolution",
            "720p",
            "--bitrate",
            "1M",
            "--follow",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("failed") && stderr.contains("missing.mkv") && stderr.contains("desk"),
        "{stderr}"
    );

    // Cancel by id.
    let out = ctl(
        &sys,
        &[
            "submit",
            "long.mkv",
            "--resolution",
            "720p",
            "--bitrate",
            "1M",
        ],
    );
    let line = text(&out.stdout);
    let id = line.split_whitespace().nth(1).expect("job id").to_string();
    sys.wait_job(&id, "processing", Duration::from_secs(60));
    let out = ctl(&sys, &["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sys.job(&id)["state"], "cancelled");
    let out = ctl(&sys, &["cancel", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already cancelled"),
        "{}",
        text(&out.stderr)
    );

    // A bad request is refused with the API's sentence.
    let out = ctl(
        &sys,
        &[
            "submit",
            "../etc/passwd",
            "--resolution",
            "720p",
            "--bitrate",
            "1M",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("source_path"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unreachable_orchestrator_is_named() {
    let port = transcode_tests::free_port();
    let out = Command::new(bin("transcodectl"))
        .args([
            "--orchestrator",
            &format!("http://127.0.0.1:{port}"),
            "jobs",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("transcodectl runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("cannot reach"),
        "{stderr}"
    );
}

#[test]
fn ls_lists_the_orchestrators_media_library() {
    let mut sys = System::new();
    let library = sys.dir.path().join("library");
    make_media(&library.join("films/Heat (1995).mkv"), 320, 240, 3, true);
    std::fs::create_dir_all(library.join("films/old")).expect("folder");
    std::fs::write(library.join("films/notes.txt"), b"hello").expect("notes");
    sys.orchestrator_env.push(transcode_tests::env(
        "TRANSCODE_MEDIA__ROOT",
        library.display().to_string(),
    ));
    let _o = sys.start_orchestrator();

    let out = ctl(&sys, &["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME    KIND    SIZE  LENGTH\nfilms/  folder  -     -\n"
    );

    let out = ctl(&sys, &["ls", "films"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[1].starts_with("old/ ") && lines[1].contains("folder"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("Heat (1995).mkv  video"), "{stdout}");
    assert!(lines[2].ends_with("0:03"), "the film's length: {stdout}");
    assert!(
        lines[3].starts_with("notes.txt") && lines[3].contains("5 B"),
        "{stdout}"
    );

    let out = ctl(&sys, &["ls", "films", "--json"]);
    let listing: transcode_common::wire::MediaListing =
        serde_json::from_slice(&out.stdout).expect("the API's listing");
    assert_eq!(listing.entries[1].path, "films/Heat (1995).mkv");

    // Outside the library, or not there: a sentence and a failure.
    for (path, needle) in [("../", "'..'"), ("films/nope", "does not exist")] {
        let out = ctl(&sys, &["ls", path]);
        assert!(!out.status.success(), "{path}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("transcodectl: ") && stderr.contains(needle),
            "{path}: {stderr}"
        );
    }
}
