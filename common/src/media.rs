//! The media library on disk: turning a relative path into a file (or
//! folder) that may be opened, under the media root only, after following
//! every symlink, and refusing files that would make FFmpeg read others.
//! The worker resolves its job's source here; the orchestrator resolves the
//! files it serves and the folders it lists.

use std::path::{Path, PathBuf};

use crate::validate;

/// Why a source cannot be used. Every variant is the input's fault: another
/// worker with the same media would fail the same way.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SourceError {
    #[error("source_path {0}")]
    Unsafe(String),
    #[error("folder {0}")]
    UnsafeFolder(String),
    #[error("source file {path:?} does not exist under the media root {root}")]
    NotFound { path: String, root: String },
    #[error("source {path:?} leads outside the media root {root} (through a symlink)")]
    OutsideRoot { path: String, root: String },
    #[error("source {path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("{path:?} is not a folder")]
    NotAFolder { path: String },
    #[error("source file {path:?} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the media root {root} cannot be used: {reason} (check media.root)")]
    BadRoot { root: String, reason: String },
}

/// The canonical root.
fn canonical_root(root: &Path) -> Result<PathBuf, SourceError> {
    root.canonicalize().map_err(|e| SourceError::BadRoot {
        root: root.display().to_string(),
        reason: e.to_string(),
    })
}

/// The canonical path of `relative` (already validated) under the
/// canonical `root`, after following every symlink, refused if it leads out.
fn confine(root: &Path, canonical: &Path, relative: &str) -> Result<PathBuf, SourceError> {
    let real = match canonical.join(relative).canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::NotFound {
                path: relative.to_string(),
                root: root.display().to_string(),
            })
        }
        Err(e) => {
            return Err(SourceError::Unreadable {
                path: relative.to_string(),
                reason: e.to_string(),
            })
        }
    };
    if !real.starts_with(canonical) {
        return Err(SourceError::OutsideRoot {
            path: relative.to_string(),
            root: root.display().to_string(),
        });
    }
    Ok(real)
}

/// Resolves `source_path` under `root`. The result is absolute and
/// canonical (symlinks followed), inside the canonical root, a regular file
/// that this process can open.
pub fn resolve(root: &Path, source_path: &str) -> Result<PathBuf, SourceError> {
    let relative = validate::source_path(source_path)
        .map_err(|e| SourceError::Unsafe(e.trim_start_matches("source_path ").to_string()))?;
    let real = confine(root, &canonical_root(root)?, &relative)?;
    let meta = std::fs::metadata(&real).map_err(|e| SourceError::Unreadable {
        path: relative.clone(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(SourceError::NotAFile { path: relative });
    }
    std::fs::File::open(&real).map_err(|e| SourceError::Unreadable {
        path: relative,
        reason: e.to_string(),
    })?;
    Ok(real)
}

/// Resolves a folder of the library: `""` (or `"."`) is the root itself.
/// Returns the canonical folder and its path relative to the root, in the
/// normalized form (`a/b`, empty for the root).
pub fn resolve_dir(root: &Path, dir: &str) -> Result<(PathBuf, String), SourceError> {
    let canonical = canonical_root(root)?;
    let trimmed = dir.trim_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok((canonical, String::new()));
    }
    let relative = validate::source_path(trimmed).map_err(|e| {
        SourceError::UnsafeFolder(
            e.replacen("source_path ", "", 1)
                .replace("source_path", "path"),
        )
    })?;
    let real = confine(root, &canonical, &relative)?;
    if !real.is_dir() {
        return Err(SourceError::NotAFolder { path: relative });
    }
    Ok((real, relative))
}

/// Refuses a source whose first bytes show a text playlist or list, before
/// ffprobe would follow what it names.
pub fn sniff(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let signs = [
        ("#EXTM3U", "an HLS playlist"),
        ("ffconcat", "an FFmpeg concat list"),
        ("v=0", "an SDP session description"),
        ("<?xml", "an XML manifest"),
        ("<MPD", "a DASH manifest"),
    ];
    for (sign, what) in signs {
        if text.starts_with(sign) {
            return Err(format!(
                "it is {what}, which can point at files outside the media root; give the media file itself"
            ));
        }
    }
    Ok(())
}

/// The first bytes of a file (empty when it cannot be read).
pub fn read_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = vec![0u8; 512];
    match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => {
            head.truncate(n);
            head
        }
        Err(_) => Vec::new(),
    }
}

/// File name extensions of the video files a library holds.
const VIDEO_EXTENSIONS: [&str; 17] = [
    "mkv", "mp4", "m4v", "mov", "avi", "ts", "m2ts", "mts", "webm", "wmv", "flv", "mpg", "mpeg",
    "ogv", "3gp", "vob", "divx",
];

/// Whether a file name looks like a video (by its extension).
pub fn is_video_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("movies")).unwrap();
        std::fs::write(root.join("movies/a.mkv"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.mkv"), b"x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.mkv"), root.join("escape.mkv"))
                .unwrap();
            std::os::unix::fs::symlink(root.join("movies/a.mkv"), root.join("inside.mkv")).unwrap();
            std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        }
        let ok = |p: &str| resolve(&root, p).map(|r| r.ends_with("movies/a.mkv"));
        assert_eq!(ok("movies/a.mkv"), Ok(true));
        assert_eq!(ok("./movies//a.mkv"), Ok(true));
        #[cfg(unix)]
        assert_eq!(ok("inside.mkv"), Ok(true));

        let cases: &[(&str, &str)] = &[
            ("missing.mkv", "does not exist"),
            ("movies", "not a regular file"),
            ("../secret.mkv", "'..'"),
            ("/etc/passwd", "absolute"),
            ("-i.mkv", "option"),
            ("concat:a|b", "protocol"),
            #[cfg(unix)]
            ("escape.mkv", "outside the media root"),
            #[cfg(unix)]
            ("up/secret.mkv", "outside the media root"),
        ];
        for (path, needle) in cases {
            let err = resolve(&root, path).expect_err(path);
            assert!(err.to_string().contains(needle), "{path}: {err}");
        }
        let err = resolve(&dir.path().join("nope"), "a.mkv").expect_err("bad root");
        assert!(err.to_string().contains("media.root"), "{err}");
    }

    #[test]
    fn folder_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("movies/old")).unwrap();
        std::fs::write(root.join("movies/a.mkv"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let ok = |d: &str| resolve_dir(&root, d).map(|(_, rel)| rel);
        let good = [
            ("", ""),
            (".", ""),
            ("/", ""),
            ("movies", "movies"),
            ("movies/", "movies"),
            ("./movies//old", "movies/old"),
        ];
        for (d, want) in good {
            assert_eq!(ok(d).as_deref(), Ok(want), "{d:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("missing", "does not exist"),
            ("movies/a.mkv", "not a folder"),
            ("../", "'..'"),
            ("movies/../..", "'..'"),
            ("a\u{0}b", "control"),
            ("http://x", "protocol"),
            #[cfg(unix)]
            ("up", "outside the media root"),
        ];
        for (d, needle) in bad {
            let err = resolve_dir(&root, d).expect_err(d);
            assert!(err.to_string().contains(needle), "{d:?}: {err}");
            assert!(!err.to_string().contains("source_path"), "{d:?}: {err}");
        }
    }

    #[test]
    fn sniffed_lists() {
        let cases: &[(&[u8], bool)] = &[
            (b"#EXTM3U\n#EXTINF:4,\n../secret.ts\n", false),
            (b"\xef\xbb\xbf  #EXTM3U", false),
            (b"ffconcat version 1.0\nfile ../x.mkv", false),
            (b"v=0\no=- 0 0 IN IP4 127.0.0.1", false),
            (b"<MPD xmlns=", false),
            (b"\x1aE\xdf\xa3matroska", true),
            (b"\x00\x00\x00\x20ftypisom", true),
            (b"", true),
        ];
        for (head, ok) in cases {
            assert_eq!(
                sniff(head).is_ok(),
                *ok,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn video_names() {
        let cases = [
            ("a.mkv", true),
            ("Film (2001).MP4", true),
            ("x.m2ts", true),
            (".mkv", false),
            ("notes.txt", false),
            ("mkv", false),
            ("a.mkv.part", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_video_name(name), want, "{name}");
        }
    }
}
