//! The browser harness itself: hls.js in headless Chromium plays a short
//! HLS stream made here with FFmpeg and served, as the worker serves its
//! streams, from another origin with CORS headers.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use transcode_tests::{browser, children_named, free_port, require_tools, wait_until};

/// A 20 s, 640x360 VOD stream in 4 s segments: `dir/index.m3u8`.
fn make_hls(dir: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30:duration=20",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=20",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", "60", "-c:a", "aac", "-ac", "2"])
        .args(["-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod"])
        .arg(dir.join("index.m3u8"))
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `root` on a free loopback port, from a thread that lives as long
/// as the test process: `/x` with `Access-Control-Allow-Origin: *`,
/// `/plain/x` the same file without it.
fn serve(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || respond(stream, &root));
        }
    });
    port
}

fn respond(mut stream: TcpStream, root: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let (cors, path) = match path.strip_prefix("/plain") {
        Some(rest) => (false, rest),
        None => (true, path),
    };
    let cors = if cors {
        "Access-Control-Allow-Origin: *\r\n"
    } else {
        ""
    };
    let file = path.trim_start_matches('/');
    let body = if file.is_empty() || file.contains("..") {
        None
    } else {
        std::fs::read(root.join(file)).ok()
    };
    let head = |status: &str, kind: &str, len: usize| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\n{cors}Connection: close\r\n\r\n"
        )
    };
    let _ = match (method, body) {
        ("OPTIONS", _) => stream.write_all(head("204 No Content", "text/plain", 0).as_bytes()),
        ("GET", Some(body)) => {
            let kind = if file.ends_with(".m3u8") {
                "application/vnd.apple.mpegurl"
            } else {
                "video/mp2t"
            };
            stream
                .write_all(head("200 OK", kind, body.len()).as_bytes())
                .and_then(|_| stream.write_all(&body))
        }
        _ => stream.write_all(head("404 Not Found", "text/plain", 0).as_bytes()),
    };
}

fn stream_dir() -> (tempfile::TempDir, u16) {
    require_tools();
    browser::require_browser();
    let dir = tempfile::tempdir().expect("temp dir");
    let media = dir.path().join("hls");
    std::fs::create_dir_all(&media).expect("hls folder");
    make_hls(&media);
    let port = serve(media);
    (dir, port)
}

#[test]
fn a_vod_stream_plays_to_its_end_without_stalls() {
    let (dir, port) = stream_dir();
    let url = format!("http://127.0.0.1:{port}/index.m3u8");
    let started = Instant::now();
    let p = browser::play(&url, 4.0, Duration::from_secs(60), dir.path());
    eprintln!("played 20 s at 4x in {:?}: {p:?}", started.elapsed());
    assert!(p.ended, "{p:?}");
    assert_eq!(p.reason, "ended", "{p:?}");
    assert!(p.fatal_errors.is_empty(), "{p:?}");
    assert!((p.duration - 20.0).abs() < 0.5, "{p:?}");
    assert!((p.current_time - p.duration).abs() < 0.5, "{p:?}");
    assert!(p.stall_s < 2.0, "{p:?}");
    assert!(p.started_after_s.is_some_and(|s| s < 10.0), "{p:?}");
    assert_eq!(p.events.last().unwrap()["event"], "summary");
    assert!(p.events.iter().any(|e| e["event"] == "progress"), "{p:?}");
}

#[test]
fn the_playback_can_be_followed_while_it_goes_on() {
    let (dir, port) = stream_dir();
    let url = format!("http://127.0.0.1:{port}/index.m3u8");
    let mut handle = browser::start_play(&url, 2.0, Duration::from_secs(60), dir.path());
    let t = wait_until(Duration::from_secs(30), "8 s of the stream played", || {
        handle.current_time().filter(|t| *t >= 8.0)
    });
    assert!(t < 20.0, "{t}");
    assert!(handle.is_running(), "the browser stopped early");
    let p = handle.wait(Duration::from_secs(60));
    assert!(p.ended, "{p:?}");
    assert!(p.fatal_errors.is_empty(), "{p:?}");
}

/// Whether `pid` is gone (or a zombie, dead but not yet reaped).
fn is_dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        let close = stat.rfind(')').unwrap_or(0);
        stat[close + 1..].split_whitespace().next() == Some("Z")
    })
}

#[test]
fn dropping_the_handle_closes_the_browser() {
    let (dir, port) = stream_dir();
    let url = format!("http://127.0.0.1:{port}/index.m3u8");
    let handle = browser::start_play(&url, 1.0, Duration::from_secs(60), dir.path());
    wait_until(Duration::from_secs(30), "the playback to start", || {
        handle.current_time().filter(|t| *t > 0.0)
    });
    let node = handle.pid().expect("running");
    let chromium = children_named(node, "chromium");
    assert!(!chromium.is_empty(), "no chromium under node {node}");
    drop(handle);
    assert!(is_dead(node.as_raw()));
    wait_until(Duration::from_secs(10), "chromium to exit", || {
        chromium.iter().all(|p| is_dead(*p)).then_some(())
    });
    // The script closed the browser itself: its summary is in the log.
    let log: String = std::fs::read_dir(dir.path())
        .expect("the test folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("browser-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(log.contains("\"reason\":\"signal SIGTERM\""), "{log}");
}

#[test]
fn a_stream_without_cors_headers_does_not_play() {
    let (dir, port) = stream_dir();
    let url = format!("http://127.0.0.1:{port}/plain/index.m3u8");
    let started = Instant::now();
    let p = browser::play(&url, 1.0, Duration::from_secs(30), dir.path());
    assert!(!p.ended, "{p:?}");
    assert_eq!(p.reason, "fatal_error", "{p:?}");
    assert!(
        p.fatal_errors
            .iter()
            .any(|e| e.contains("manifestLoadError")),
        "{p:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{p:?}");
}

#[test]
fn nothing_listening_is_a_fatal_error_at_once() {
    require_tools();
    browser::require_browser();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}/index.m3u8", free_port());
    let started = Instant::now();
    let p = browser::play(&url, 4.0, Duration::from_secs(60), dir.path());
    assert!(!p.ended, "{p:?}");
    assert!(!p.fatal_errors.is_empty(), "{p:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{p:?}");
}
