//! The orchestrator's media library: the files under `media.root`, served to
//! the workers that have no copy of their own, and listed for people.
//!
//! A worker gets a job's source through a URL signed for that job and run
//! (`/source/{job_id}/{attempt}/{path}?sig=...`, HMAC-SHA256 with a key kept
//! in `state.dir`). The signature proves the orchestrator wrote the URL (job
//! ids and attempts are readable on retained topics); the core checks that
//! the run is still going, so a URL expires when its run ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use transcode_common::media::{self, SourceError};
use transcode_common::metrics::{self as m, Registry};
use transcode_common::validate;
use uuid::Uuid;

use crate::secrets;

pub mod listing;

/// The key file's name in `state.dir`.
pub const KEY_FILE: &str = "source-signing.key";
/// Bytes of the signing key.
const KEY_LEN: usize = 32;

/// What a path segment keeps unencoded in a source URL (RFC 3986's
/// unreserved characters).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The media root and, when it serves, how its URLs are signed.
pub struct Media {
    /// The canonical media root.
    root: PathBuf,
    /// Whether workers get the files over HTTP (`media.serve`).
    serve: bool,
    key: [u8; KEY_LEN],
    /// `http://host:port`: where workers reach our HTTP listener.
    base_url: String,
    pub counters: Counters,
}

/// What serving costs, for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes of files sent to workers.
    pub bytes: AtomicU64,
    /// Requests answered with (a part of) a file.
    pub served: AtomicU64,
    /// Requests refused (bad or expired signature, escapes, missing files).
    pub refused: AtomicU64,
}

/// Why a source request gets nothing. `Forbidden` is a 403, `NotFound` a
/// 404, `Unusable` a 415 (a playlist or list, which names other files); the
/// sentence says which check failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unusable(String),
}

impl Media {
    /// The library at `root` (which must be a folder), with the signing key
    /// from `state_dir` (made on first use).
    pub fn open(
        root: &Path,
        serve: bool,
        state_dir: &Path,
        base_url: String,
    ) -> anyhow::Result<Media> {
        let shown = root.display();
        let canonical = root.canonicalize().map_err(|e| {
            anyhow::anyhow!("the media root {shown} cannot be used: {e} (check media.root)")
        })?;
        if !canonical.is_dir() {
            anyhow::bail!("the media root {shown} is not a folder (check media.root)");
        }
        let key = load_or_make_key(state_dir)?;
        Ok(Media {
            root: canonical,
            serve,
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
            counters: Counters::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn serves(&self) -> bool {
        self.serve
    }

    /// The file a job's `source_path` names under the root, with its size.
    pub fn file(&self, source_path: &str) -> Result<(PathBuf, u64), SourceError> {
        let path = media::resolve(&self.root, source_path)?;
        let len = std::fs::metadata(&path)
            .map_err(|e| SourceError::Unreadable {
                path: source_path.to_string(),
                reason: e.to_string(),
            })?
            .len();
        Ok((path, len))
    }

    /// The signature of one run's source.
    fn mac(&self, job_id: Uuid, attempt: u32, path: &str) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(format!("{job_id}\n{attempt}\n{path}").as_bytes());
        mac
    }

    /// The URL a worker reads run `attempt` of `job_id` from; `None` when
    /// the library does not serve.
    pub fn source_url(&self, job_id: Uuid, attempt: u32, source_path: &str) -> Option<String> {
        if !self.serve {
            return None;
        }
        let path = validate::source_path(source_path).ok()?;
        let sig = secrets::hex(&self.mac(job_id, attempt, &path).finalize().into_bytes());
        let encoded: Vec<String> = path
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        Some(format!(
            "{}/source/{job_id}/{attempt}/{}?sig={sig}",
            self.base_url,
            encoded.join("/")
        ))
    }

    /// Checks a source request before anything is opened: the path in the
    /// URL (still percent-encoded) and the signature. Returns the file's
    /// path relative to the root; the caller still checks that the run is
    /// going and that it is the job's source.
    pub fn check(
        &self,
        job_id: Uuid,
        attempt: u32,
        raw_path: &str,
        sig: Option<&str>,
    ) -> Result<String, Refusal> {
        if !self.serve {
            return Err(Refusal::NotFound(
                "this orchestrator does not serve its media (media.serve = false)".into(),
            ));
        }
        let path = decode_path(raw_path).map_err(Refusal::Forbidden)?;
        let Some(sig) = sig.and_then(secrets::unhex) else {
            return Err(Refusal::Forbidden(format!(
                "the source URL of job {job_id} has no valid signature"
            )));
        };
        self.mac(job_id, attempt, &path)
            .verify_slice(&sig)
            .map_err(|_| {
                Refusal::Forbidden(format!(
                    "the signature does not match this file and run of job {job_id} (attempt {attempt})"
                ))
            })?;
        Ok(path)
    }

    /// The serving figures, for `/metrics`.
    pub fn register_metrics(&self, r: &mut Registry) {
        let c = &self.counters;
        m::counter(
            r,
            "transcode_source_bytes_total",
            "Bytes of source files sent to workers.",
            c.bytes.load(Ordering::Relaxed),
        );
        m::counters(
            r,
            "transcode_source_requests_total",
            "Source requests, by answer.",
            &[
                ([("answer", "served")], c.served.load(Ordering::Relaxed)),
                ([("answer", "refused")], c.refused.load(Ordering::Relaxed)),
            ],
        );
    }
}

/// Decodes the file path of a source URL, segment by segment. Refused: a
/// segment that decodes to a separator, a NUL or another control character,
/// `.` or `..`, bytes that are not UTF-8, and whatever `validate::source_path`
/// refuses. The result is in the normalized form the signature covers.
pub fn decode_path(raw: &str) -> Result<String, String> {
    let shown = validate::truncate(raw, 120);
    let mut parts = Vec::new();
    for segment in raw.split('/') {
        let decoded = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| format!("the source path {shown:?} is not UTF-8"))?;
        if decoded.contains(['/', '\\']) || decoded.chars().any(char::is_control) {
            return Err(format!(
                "the source path {shown:?} hides a separator or a control character in an escape"
            ));
        }
        if decoded == "." || decoded == ".." || decoded.is_empty() {
            return Err(format!(
                "the source path {shown:?} has an empty, '.' or '..' part"
            ));
        }
        parts.push(decoded.into_owned());
    }
    let path = parts.join("/");
    validate::source_path(&path)
}

/// The signing key in `state_dir`, made (random, readable by us only) when
/// there is none.
fn load_or_make_key(state_dir: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    let bytes = secrets::load_or_make(state_dir, KEY_FILE, KEY_LEN, "the source signing key")?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(serve: bool) -> (tempfile::TempDir, Media) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("films")).unwrap();
        std::fs::write(root.join("films/a b.mkv"), b"0123456789").unwrap();
        let m = Media::open(
            &root,
            serve,
            &dir.path().join("state"),
            "http://udoo:8000/".into(),
        )
        .unwrap();
        (dir, m)
    }

    /// The path and signature of a source URL.
    fn parts(url: &str) -> (String, String) {
        let rest = url.split_once("/source/").unwrap().1;
        let (path, sig) = rest.split_once("?sig=").unwrap();
        let path = path.splitn(3, '/').nth(2).unwrap().to_string();
        (path, sig.to_string())
    }

    #[test]
    fn a_signed_url_opens_its_file_and_run_only() {
        let (_dir, m) = library(true);
        let job = Uuid::new_v4();
        let url = m.source_url(job, 2, "films/./a b.mkv").unwrap();
        assert!(
            url.starts_with(&format!(
                "http://udoo:8000/source/{job}/2/films/a%20b.mkv?sig="
            )),
            "{url}"
        );
        let (path, sig) = parts(&url);
        assert_eq!(
            m.check(job, 2, &path, Some(&sig)),
            Ok("films/a b.mkv".into())
        );

        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let forbidden = [
            // Another run, another job, another file, another signature.
            (job, 3, path.as_str(), Some(sig.as_str()), "does not match"),
            (Uuid::new_v4(), 2, &path, Some(&sig), "does not match"),
            (job, 2, "films/b.mkv", Some(&sig), "does not match"),
            (job, 2, &path, Some(&flipped), "does not match"),
            (job, 2, &path, Some("zz"), "no valid signature"),
            (job, 2, &path, None, "no valid signature"),
            // Escapes, whatever the signature.
            (job, 2, "films/../a b.mkv", Some(&sig), "'..'"),
            (job, 2, "films/%2e%2e/a%20b.mkv", Some(&sig), "'..'"),
            (job, 2, "%2e%2e%2fetc%2fpasswd", Some(&sig), "separator"),
            (job, 2, "films%5ca.mkv", Some(&sig), "separator"),
            (job, 2, "films/a%00.mkv", Some(&sig), "control"),
            (job, 2, "films/%ff.mkv", Some(&sig), "UTF-8"),
            (job, 2, "films//a.mkv", Some(&sig), "empty"),
        ];
        for (id, attempt, p, s, needle) in forbidden {
            match m.check(id, attempt, p, s) {
                Err(Refusal::Forbidden(e)) => assert!(e.contains(needle), "{p}: {e}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_library_that_does_not_serve_signs_nothing() {
        let (_dir, m) = library(false);
        let job = Uuid::new_v4();
        assert_eq!(m.source_url(job, 1, "films/a b.mkv"), None);
        assert!(matches!(
            m.check(job, 1, "films/a%20b.mkv", Some("00")),
            Err(Refusal::NotFound(_))
        ));
    }
}
