//! Where a run reads its source: its own copy under `media.root` when that
//! holds the file (with the orchestrator's size), else the URL the
//! orchestrator signed for the run. Either way FFmpeg and ffprobe get one
//! input they may open with one protocol family only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
pub use transcode_common::media::{resolve, SourceError};
use transcode_common::wire::{ErrorKind, JobAssignment};

/// Bytes read from a source's start to refuse playlists before probing.
pub const HEAD_BYTES: u64 = 512;
/// How often the first request of a run's source URL is tried, how long
/// each may take, and the pause between two (after a server error or no
/// answer; any other answer is final).
const TRIES: usize = 3;
const TRY_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest pause FFmpeg's reconnection waits (it tries at once, then after
/// 1, 3 and 7 s): a network drop of up to about 10 s costs the run nothing.
const RECONNECT_DELAY_MAX_S: &str = "8";
/// A read that gets no byte for this long is a dropped connection, which
/// FFmpeg then reconnects (microseconds).
const READ_TIMEOUT_US: &str = "15000000";
/// The socket's receive buffer (Linux doubles it): FFmpeg seeks by closing
/// the connection, and what the network delivered ahead of its reads is
/// thrown away. Still a full gigabit at 1 ms of round trip.
const RECEIVE_BUFFER: &str = "65536";

/// A run's source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The worker's own copy (canonical, under its media root).
    Local(PathBuf),
    /// The orchestrator's copy, over HTTP.
    Remote { url: String },
}

/// Picks the source of a run: the local copy when the media root holds the
/// file (of the orchestrator's size, when it said), else the orchestrator's
/// URL. Also says why a local copy was passed over. Errors carry the kind
/// the run fails with. Resolving and measuring the local copy touches the
/// file system: it runs on tokio's blocking threads.
pub async fn locate(
    root: Option<PathBuf>,
    a: &JobAssignment,
    worker_id: &str,
) -> Result<(Source, Option<String>), (ErrorKind, String)> {
    let (owned, id) = (a.clone(), worker_id.to_string());
    tokio::task::spawn_blocking(move || pick(root.as_deref(), &owned, &id))
        .await
        .unwrap_or_else(|e| {
            Err((
                ErrorKind::Worker,
                format!(
                    "worker {worker_id} could not look for the source of job {}: {e}",
                    a.job_id
                ),
            ))
        })
}

/// [`locate`]'s choice, made where blocking is allowed.
fn pick(
    root: Option<&Path>,
    a: &JobAssignment,
    worker_id: &str,
) -> Result<(Source, Option<String>), (ErrorKind, String)> {
    let url = a.source_url.as_ref();
    let remote = |why: String| {
        url.map(|u| (Source::Remote { url: u.clone() }, Some(why)))
            .ok_or(())
    };
    let Some(root) = root else {
        return remote("this worker has no media.root".into()).map_err(|_| {
            (
                ErrorKind::Worker,
                format!(
                    "worker {worker_id} has no media folder (media.root is empty) and the orchestrator serves none for job {}: set media.root here, or media.root on the orchestrator",
                    a.job_id
                ),
            )
        });
    };
    let refused = |e: SourceError| {
        (
            ErrorKind::Input,
            format!("worker {worker_id} cannot use the source: {e}"),
        )
    };
    match resolve(root, &a.source_path) {
        Ok(path) => {
            let len = std::fs::metadata(&path).map(|m| m.len()).ok();
            match (a.source_size, len) {
                (Some(want), Some(have)) if want != have => remote(format!(
                    "the local copy {} has {have} bytes, the orchestrator's {want}",
                    path.display()
                ))
                .or(Ok((Source::Local(path), None))),
                _ => Ok((Source::Local(path), None)),
            }
        }
        Err(e @ SourceError::Unsafe(_)) => Err(refused(e)),
        Err(e) => {
            let why = e.to_string();
            remote(why).map_err(|_| match e {
                // This machine's folder is the problem (an unmounted
                // share): another worker may have the file.
                SourceError::BadRoot { .. } => (
                    ErrorKind::Worker,
                    format!("worker {worker_id} cannot use the source: {e}"),
                ),
                e => refused(e),
            })
        }
    }
}

/// What FFmpeg and ffprobe are given for a source: options that only let
/// them open it, then the URL itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Input options, placed before the URL (`-i` for FFmpeg).
    pub options: Vec<String>,
    pub url: String,
}

impl Source {
    pub fn input(&self) -> Input {
        let own = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        match self {
            // The `file:` protocol with an absolute path: no part of it is
            // read as an option or another protocol, and only files open.
            Source::Local(path) => Input {
                options: own(&["-protocol_whitelist", "file"]),
                url: format!("file:{}", path.display()),
            },
            // HTTP only (and TCP under it), no redirect elsewhere, and a
            // dropped connection is opened again where it stopped.
            Source::Remote { url } => Input {
                options: own(&[
                    "-protocol_whitelist",
                    "http,tcp",
                    "-max_redirects",
                    "0",
                    "-reconnect",
                    "1",
                    "-reconnect_on_network_error",
                    "1",
                    "-reconnect_delay_max",
                    RECONNECT_DELAY_MAX_S,
                    "-rw_timeout",
                    READ_TIMEOUT_US,
                    "-recv_buffer_size",
                    RECEIVE_BUFFER,
                ]),
                url: url.clone(),
            },
        }
    }

    /// How logs and errors name it (a URL without its signature).
    pub fn shown(&self) -> String {
        match self {
            Source::Local(path) => path.display().to_string(),
            Source::Remote { url } => url.split('?').next().unwrap_or_default().to_string(),
        }
    }
}

/// What the first bytes of a source URL told.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub bytes: Vec<u8>,
    /// The file's size, from `Content-Range`.
    pub size: Option<u64>,
}

/// Reads the first bytes of a run's source URL, which also proves the
/// orchestrator answers and still signs the run. A missing (`404`) or
/// unusable (`415`: a playlist) file fails the job (`input`); anything else
/// fails the run only (`worker`): another worker may reach the orchestrator.
pub async fn fetch_head(
    url: &str,
    job: &str,
    worker_id: &str,
) -> Result<Head, (ErrorKind, String)> {
    let shown = url.split('?').next().unwrap_or_default().to_string();
    let pauses = ConstantBuilder::new()
        .with_delay(RETRY_AFTER)
        .with_max_times(TRIES - 1);
    let answer = (|| async {
        let owned = url.to_string();
        tokio::task::spawn_blocking(move || get_head(&owned))
            .await
            .unwrap_or_else(|e| Err(Fetch::Network(e.to_string())))
    })
    .retry(pauses)
    .when(Fetch::may_pass)
    .await;
    match answer {
        Ok(head) => Ok(head),
        Err(Fetch::Status(404, body)) => Err((
            ErrorKind::Input,
            format!("worker {worker_id}: the orchestrator has no source file for job {job} at {shown} (404: {body})"),
        )),
        // 416: an empty file has no first bytes.
        Err(Fetch::Status(code @ (415 | 416), body)) => Err((
            ErrorKind::Input,
            format!("worker {worker_id}: the source of job {job} at {shown} cannot be transcoded ({code}: {body})"),
        )),
        Err(Fetch::Status(code, body)) if code < 500 => Err((
            ErrorKind::Worker,
            format!("worker {worker_id}: the orchestrator refused the source of job {job} at {shown} ({code}: {body})"),
        )),
        Err(last) => {
            let last = match last {
                Fetch::Status(code, body) => format!("{code}: {body}"),
                Fetch::Network(e) => e,
            };
            Err((
                ErrorKind::Worker,
                format!("worker {worker_id} cannot reach the source of job {job} at {shown} after {TRIES} tries: {last}"),
            ))
        }
    }
}

enum Fetch {
    Status(u16, String),
    Network(String),
}

impl Fetch {
    /// Whether another try may pass: the server failed, or nothing
    /// answered.
    fn may_pass(&self) -> bool {
        match self {
            Fetch::Status(code, _) => *code >= 500,
            Fetch::Network(_) => true,
        }
    }
}

fn get_head(url: &str) -> Result<Head, Fetch> {
    use std::io::Read;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TRY_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .user_agent(format!("transcode-worker/{}", transcode_common::VERSION))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("Range", format!("bytes=0-{}", HEAD_BYTES - 1))
        .call()
        .map_err(|e| Fetch::Network(e.to_string()))?;
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    let read = resp
        .body_mut()
        .as_reader()
        .take(if status < 300 { HEAD_BYTES } else { 300 })
        .read_to_end(&mut bytes);
    if !(200..300).contains(&status) {
        let body = String::from_utf8_lossy(&bytes);
        let sentence = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        return Err(Fetch::Status(status, sentence));
    }
    read.map_err(|e| Fetch::Network(e.to_string()))?;
    let size = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, total)| total.trim().parse().ok());
    Ok(Head { bytes, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(url: Option<&str>, size: Option<u64>) -> JobAssignment {
        let mut a: JobAssignment = transcode_common::wire::decode(
            br#"{"job_id":"550e8400-e29b-41d4-a716-446655440000","source_path":"films/a.mkv","resolution":"720p","bitrate":"2M"}"#,
        )
        .unwrap();
        a.source_url = url.map(str::to_string);
        a.source_size = size;
        a
    }

    #[test]
    fn the_local_copy_wins_when_it_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("films")).unwrap();
        std::fs::write(root.join("films/a.mkv"), b"0123456789").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let url = "http://udoo:8000/source/x/1/films/a.mkv?sig=00";
        let remote = Some(url);
        let local = || root.join("films/a.mkv").canonicalize().unwrap();
        // (media root, source URL, orchestrator's size) -> source or kind
        type Case<'a> = (
            Option<&'a Path>,
            Option<&'a str>,
            Option<u64>,
            Result<Source, ErrorKind>,
        );
        let cases: &[Case] = &[
            (Some(&root), remote, Some(10), Ok(Source::Local(local()))),
            (Some(&root), None, None, Ok(Source::Local(local()))),
            (Some(&root), None, Some(11), Ok(Source::Local(local()))),
            // Another size: the orchestrator's copy.
            (
                Some(&root),
                remote,
                Some(11),
                Ok(Source::Remote { url: url.into() }),
            ),
            (
                Some(&empty),
                remote,
                Some(10),
                Ok(Source::Remote { url: url.into() }),
            ),
            (
                None,
                remote,
                Some(10),
                Ok(Source::Remote { url: url.into() }),
            ),
            (
                Some(&dir.path().join("gone")),
                remote,
                None,
                Ok(Source::Remote { url: url.into() }),
            ),
            (Some(&empty), None, None, Err(ErrorKind::Input)),
            (
                Some(&dir.path().join("gone")),
                None,
                None,
                Err(ErrorKind::Worker),
            ),
            (None, None, None, Err(ErrorKind::Worker)),
        ];
        for (i, (root, url, size, want)) in cases.iter().enumerate() {
            let got = pick(*root, &assignment(*url, *size), "w1")
                .map(|(s, _)| s)
                .map_err(|(k, _)| k);
            assert_eq!(&got, want, "case {i}");
        }
        let (_, why) = pick(Some(&root), &assignment(remote, Some(11)), "w1").unwrap();
        assert!(why.unwrap().contains("10 bytes, the orchestrator's 11"));
        let (_, e) = pick(None, &assignment(None, None), "w1").unwrap_err();
        assert!(e.contains("worker w1") && e.contains("media.root"), "{e}");
    }

    /// Answers each connection on a free loopback port with the next of
    /// `answers` (raw HTTP), then closes.
    fn server(answers: Vec<&'static str>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut c, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(answer.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/source/j/1/films/a.mkv?sig=00")
    }

    #[tokio::test]
    async fn a_source_url_fails_the_job_only_when_the_file_is_missing() {
        let partial = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/1000\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd";
        let head = fetch_head(&server(vec![partial]), "j", "w1").await.unwrap();
        assert_eq!(
            head,
            Head {
                bytes: b"abcd".to_vec(),
                size: Some(1000)
            }
        );

        let missing = "HTTP/1.1 404 Not Found\r\nContent-Length: 28\r\nConnection: close\r\n\r\n{\"error\":\"no such film here\"}";
        let (kind, e) = fetch_head(&server(vec![missing]), "j", "w1")
            .await
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Input);
        assert!(
            e.contains("worker w1") && e.contains("no such film here") && !e.contains("sig="),
            "{e}"
        );

        let playlist =
            "HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (kind, _) = fetch_head(&server(vec![playlist]), "j", "w1")
            .await
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Input);

        let expired = "HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"error\":\"x\"}";
        let (kind, _) = fetch_head(&server(vec![expired]), "j", "w1")
            .await
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Worker);

        // A server error, then an answer: tried again.
        let busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let head = fetch_head(&server(vec![busy, partial]), "j", "w1")
            .await
            .unwrap();
        assert_eq!(head.size, Some(1000));

        // Nobody listens: the run fails, another worker may reach it.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{closed}/source/j/1/a.mkv?sig=00");
        let (kind, e) = fetch_head(&url, "j", "w1").await.unwrap_err();
        assert_eq!(kind, ErrorKind::Worker);
        assert!(e.contains("cannot reach") && e.contains("3 tries"), "{e}");
    }

    #[test]
    fn inputs_open_one_protocol_family() {
        let local = Source::Local(PathBuf::from("/srv/media/-x.mkv")).input();
        assert_eq!(local.url, "file:/srv/media/-x.mkv");
        assert_eq!(local.options, ["-protocol_whitelist", "file"]);
        let remote = Source::Remote {
            url: "http://udoo:8000/source/j/1/a.mkv?sig=ab".into(),
        };
        let input = remote.input();
        let at = |k: &str| {
            let i = input.options.iter().position(|o| o == k).unwrap();
            input.options[i + 1].as_str()
        };
        assert_eq!(at("-protocol_whitelist"), "http,tcp");
        assert_eq!(at("-max_redirects"), "0");
        assert_eq!(at("-reconnect"), "1");
        assert_eq!(at("-reconnect_on_network_error"), "1");
        assert_eq!(remote.shown(), "http://udoo:8000/source/j/1/a.mkv");
    }
}
