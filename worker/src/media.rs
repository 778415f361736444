//! Turning a job's `source_path` into a file FFmpeg may open: under the media
//! root only, after following every symlink, and in a form FFmpeg cannot
//! mistake for an option or a protocol.

use std::path::{Path, PathBuf};

use transcode_common::validate;

/// Why a source cannot be used. Every variant is the input's fault: another
/// worker with the same media would fail the same way.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SourceError {
    #[error("source_path {0}")]
    Unsafe(String),
    #[error("source file {path:?} does not exist under the media root {root}")]
    NotFound { path: String, root: String },
    #[error("source {path:?} leads outside the media root {root} (through a symlink)")]
    OutsideRoot { path: String, root: String },
    #[error("source {path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("source file {path:?} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the media root {root} cannot be used: {reason} (check media.root)")]
    BadRoot { root: String, reason: String },
}

/// Resolves `source_path` under `root`. The result is absolute and
/// canonical (symlinks followed), inside the canonical root, a regular file
/// that this process can open.
pub fn resolve(root: &Path, source_path: &str) -> Result<PathBuf, SourceError> {
    let relative = validate::source_path(source_path)
        .map_err(|e| SourceError::Unsafe(e.trim_start_matches("source_path ").to_string()))?;
    let shown_root = root.display().to_string();
    let root = root.canonicalize().map_err(|e| SourceError::BadRoot {
        root: shown_root.clone(),
        reason: e.to_string(),
    })?;
    let candidate = root.join(&relative);
    let real = match candidate.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::NotFound {
                path: relative,
                root: shown_root,
            })
        }
        Err(e) => {
            return Err(SourceError::Unreadable {
                path: relative,
                reason: e.to_string(),
            })
        }
    };
    if !real.starts_with(&root) {
        return Err(SourceError::OutsideRoot {
            path: relative,
            root: shown_root,
        });
    }
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

/// How FFmpeg and ffprobe get the file: the `file:` protocol with an
/// absolute path, so no part of it is read as an option or another protocol.
pub fn ffmpeg_input(path: &Path) -> String {
    format!("file:{}", path.display())
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
    fn ffmpeg_gets_a_file_url() {
        assert_eq!(
            ffmpeg_input(Path::new("/srv/media/-x.mkv")),
            "file:/srv/media/-x.mkv"
        );
    }
}
