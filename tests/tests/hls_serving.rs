//! The worker's HLS server under load and to the letter of HTTP: a real
//! 1080p job's segment of more than 20 MB downloaded by 200 players at once,
//! every copy whole while the worker's memory stays flat (files are streamed
//! from disk, never read whole); then ranges, entity tags, conditional
//! requests and `HEAD` on the same segment and on the playlist.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use transcode_tests::{header, http_request, make_noisy_media, wait_until, System};

const JOB: Duration = Duration::from_secs(240);
/// Players downloading the segment at once.
const DOWNLOADS: usize = 200;
/// The segment must be at least this big for the figure to mean anything.
const SEGMENT_BYTES: u64 = 20_000_000;
/// The worker's resident memory may not pass this while they download.
const RSS_LIMIT_KB: u64 = 100 * 1024;

/// The worker's resident memory in KiB, from `/proc/<pid>/status`.
fn rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// One player's download of `path`: the status, the body's length and its
/// SHA-256, read as it arrives (the body is never held whole).
fn download(port: u16, path: &str) -> Result<(u16, u64, Vec<u8>), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    write!(
        writer,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("status line: {e}"))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {line:?}"))?;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("headers: {e}"))?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("body: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((status, len, hasher.finalize().to_vec()))
}

#[test]
fn two_hundred_players_get_a_20_mb_segment_whole_while_the_worker_stays_small() {
    let sys = System::new();
    // 8 s of noise at 1080p, encoded at 50 Mbit/s: 1 s, 1 s and 2 s
    // segments (the short ones a player starts on), then a 4 s one of
    // about 26 MB.
    make_noisy_media(&sys.dir.path().join("media/noisy.mkv"), 1920, 1080, 8);
    let _o = sys.start_orchestrator();
    let worker = sys.start_online("w1", &[]);
    let id =
        sys.submit(&json!({"source_path": "noisy.mkv", "resolution": "1080p", "bitrate": "50M"}));
    sys.wait_job(&id, "completed", JOB);
    let port = sys.worker("w1").expect("listed")["heartbeat"]["port"]
        .as_u64()
        .expect("port") as u16;
    let folder = sys.dir.path().join("out-w1").join(&id);
    let segment = std::fs::read(folder.join("seg3.ts")).expect("the job's first full segment");
    let len = segment.len() as u64;
    assert!(
        len >= SEGMENT_BYTES,
        "the segment has {len} bytes, fewer than the {SEGMENT_BYTES} this test is about"
    );
    let want: Vec<u8> = Sha256::digest(&segment).to_vec();
    let seg_path = format!("/hls/{id}/seg3.ts");

    // 200 downloads at once, the worker's memory sampled all the while.
    let pid = worker.pid().as_raw();
    let before = rss_kb(pid).expect("the worker's VmRSS");
    let peak = AtomicU64::new(before);
    let done = AtomicBool::new(false);
    let start = Barrier::new(DOWNLOADS + 1);
    let (results, took) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let players: Vec<_> = (0..DOWNLOADS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    download(port, &seg_path)
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let results: Vec<_> = players
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|_| Err("the player panicked".into()))
            })
            .collect();
        let took = began.elapsed();
        done.store(true, Ordering::Relaxed);
        (results, took)
    });
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "{DOWNLOADS} concurrent downloads of a {:.1} MB segment: {:.2} s in all ({:.0} MB/s); worker VmRSS {:.1} MB before, peak {:.1} MB",
        len as f64 / 1e6,
        took.as_secs_f64(),
        (len * DOWNLOADS as u64) as f64 / 1e6 / took.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok((status, got_len, digest)) => {
                assert_eq!(*status, 200, "download {i}");
                assert_eq!(*got_len, len, "download {i} got {got_len} of {len} bytes");
                assert!(
                    digest == &want,
                    "download {i}: the bytes differ from the file's"
                );
            }
            Err(e) => panic!("download {i} failed: {e}"),
        }
    }
    assert!(
        peak < RSS_LIMIT_KB,
        "the worker's VmRSS peaked at {peak} kB while serving {DOWNLOADS} downloads (limit {RSS_LIMIT_KB} kB)"
    );

    check_ranges_and_conditions(port, &seg_path, &segment);
    check_playlist(port, &id, &folder);
}

/// Ranges, entity tags, dates and `HEAD` on the segment.
fn check_ranges_and_conditions(port: u16, path: &str, segment: &[u8]) {
    let len = segment.len();
    let (code, h, body) = http_request(port, "GET", path, &[("Range", "bytes=0-99")]);
    assert_eq!(code, 206, "{h:?}");
    assert_eq!(body, &segment[..100]);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    assert_eq!(header(&h, "content-length"), Some("100"));
    assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    assert_eq!(header(&h, "content-type"), Some("video/mp2t"));
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));

    let (code, h, body) = http_request(port, "GET", path, &[("Range", "bytes=-10")]);
    assert_eq!(code, 206, "{h:?}");
    assert_eq!(body, &segment[len - 10..]);
    let last = format!("bytes {}-{}/{len}", len - 10, len - 1);
    assert_eq!(header(&h, "content-range"), Some(last.as_str()));

    let past = format!("bytes={len}-");
    let (code, h, _) = http_request(port, "GET", path, &[("Range", &past)]);
    assert_eq!(code, 416, "{h:?}");
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // HEAD: the length and the validators, no body.
    let (code, h, body) = http_request(port, "HEAD", path, &[]);
    assert_eq!(code, 200, "{h:?}");
    assert_eq!(header(&h, "content-length"), Some(len.to_string().as_str()));
    assert!(body.is_empty(), "a HEAD answer has no body");
    let etag = header(&h, "etag").expect("an entity tag").to_string();

    let (code, h, body) = http_request(port, "GET", path, &[("If-None-Match", &etag)]);
    assert_eq!(code, 304, "{h:?}");
    assert!(body.is_empty());
    assert_eq!(header(&h, "etag"), Some(etag.as_str()));
    let other = format!("\"x{}", &etag[1..]);
    let (code, h, _) = http_request(port, "HEAD", path, &[("If-None-Match", &other)]);
    assert_eq!(code, 200, "{h:?}");

    // A range of the version the player has; the whole file otherwise.
    let (code, h, _) = http_request(
        port,
        "HEAD",
        path,
        &[("Range", "bytes=0-99"), ("If-Range", &etag)],
    );
    assert_eq!(code, 206, "{h:?}");
    let (code, h, _) = http_request(
        port,
        "HEAD",
        path,
        &[("Range", "bytes=0-99"), ("If-Range", &other)],
    );
    assert_eq!(
        (code, header(&h, "content-length")),
        (200, Some(len.to_string().as_str()))
    );
    // A range it cannot read is ignored, not an error.
    let (code, _, _) = http_request(port, "HEAD", path, &[("Range", "bytes=abc")]);
    assert_eq!(code, 200);

    // The date, once a second has surely passed since the file was written.
    let modified = wait_until(
        Duration::from_secs(5),
        "the segment's Last-Modified",
        || {
            let (_, h, _) = http_request(port, "HEAD", path, &[]);
            header(&h, "last-modified").map(str::to_string)
        },
    );
    let (code, h, _) = http_request(port, "GET", path, &[("If-Modified-Since", &modified)]);
    assert_eq!(code, 304, "{h:?}");
    let (code, _, _) = http_request(
        port,
        "HEAD",
        path,
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    );
    assert_eq!(code, 200);
}

/// The playlist: asked every time, `304` only for the version the player
/// has, even when FFmpeg renames a new one of the same length over it within
/// the same second.
fn check_playlist(port: u16, id: &str, folder: &Path) {
    let path = format!("/hls/{id}/index.m3u8");
    let (code, h, body) = http_request(port, "GET", &path, &[]);
    assert_eq!(code, 200, "{h:?}");
    assert_eq!(
        header(&h, "content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    let etag = header(&h, "etag")
        .expect("the playlist's entity tag")
        .to_string();
    let (code, _, _) = http_request(port, "GET", &path, &[("If-None-Match", &etag)]);
    assert_eq!(code, 304);

    // FFmpeg's way of writing it: a new file renamed over the old one.
    let text = String::from_utf8(body).expect("a text playlist");
    let changed = text.replacen("#EXTM3U", "#extm3u", 1);
    assert_eq!(changed.len(), text.len());
    let tmp = folder.join("index.m3u8.tmp");
    std::fs::write(&tmp, &changed).expect("a new playlist");
    std::fs::rename(&tmp, folder.join("index.m3u8")).expect("renamed over the old one");
    let (code, h, body) = http_request(port, "GET", &path, &[("If-None-Match", &etag)]);
    assert_eq!(code, 200, "the playlist changed: {h:?}");
    assert_eq!(String::from_utf8_lossy(&body), changed);
    assert_ne!(header(&h, "etag"), Some(etag.as_str()));
}
