//! Listing a folder of the media root: names, sizes, kinds, and the length
//! of each video when it is cheap to know. Lengths come from ffprobe reading
//! the file's header, two at a time, kept per file while its size and time
//! stay the same; a listing waits for them at most `PROBE_WAIT`, the rest
//! are probed on and shown by the next listing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::process::Command;
use tokio::sync::Semaphore;
use transcode_common::media::{self, SourceError};
use transcode_common::wire::{MediaEntry, MediaKind, MediaListing};

/// Most entries one listing holds.
pub const MAX_ENTRIES: usize = 5_000;
/// How long a listing waits for the lengths it lacks.
const PROBE_WAIT: Duration = Duration::from_millis(1_500);
/// ffprobe runs at once (the small server has few cores).
const PROBES_AT_ONCE: usize = 2;
/// Files one listing sends to ffprobe at most.
const PROBES_PER_LISTING: usize = 200;
/// How long one ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lengths kept.
const KEEP: usize = 20_000;

/// A file as the file system describes it: a length is kept while this
/// stays the same.
type Stamp = (PathBuf, u64, Option<SystemTime>);

/// The lengths of the library's videos.
pub struct Durations {
    ffprobe: String,
    known: Mutex<HashMap<Stamp, Option<f64>>>,
    pending: Mutex<HashSet<Stamp>>,
    slots: Arc<Semaphore>,
    /// ffprobe could not be started: no more tries.
    missing: AtomicBool,
}

impl Durations {
    pub fn new(ffprobe: &str) -> Arc<Durations> {
        Arc::new(Durations {
            ffprobe: ffprobe.to_string(),
            known: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            slots: Arc::new(Semaphore::new(PROBES_AT_ONCE)),
            missing: AtomicBool::new(false),
        })
    }

    fn known(&self, stamp: &Stamp) -> Option<Option<f64>> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stamp)
            .copied()
    }

    /// Probes `stamp`'s file unless it is known or being probed; the
    /// handle ends when the length is known.
    fn probe(self: &Arc<Self>, stamp: Stamp) -> Option<tokio::task::JoinHandle<()>> {
        if self.missing.load(Ordering::Relaxed) || self.known(&stamp).is_some() {
            return None;
        }
        if !self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stamp.clone())
        {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let Ok(_slot) = this.slots.clone().acquire_owned().await else {
                return;
            };
            let length = this.run_ffprobe(&stamp.0).await;
            let mut known = this.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() >= KEEP {
                known.clear();
            }
            known.insert(stamp.clone(), length);
            drop(known);
            this.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&stamp);
        }))
    }

    /// The container's length in seconds, or `None` when ffprobe cannot
    /// tell (or the file is a playlist in disguise, which is never probed).
    async fn run_ffprobe(&self, path: &Path) -> Option<f64> {
        let owned = path.to_path_buf();
        let head = tokio::task::spawn_blocking(move || media::read_head(&owned))
            .await
            .unwrap_or_default();
        media::sniff(&head).ok()?;
        let run = Command::new(&self.ffprobe)
            .args([
                "-v",
                "error",
                "-protocol_whitelist",
                "file",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(format!("file:{}", path.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(PROBE_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d > 0.0),
            Ok(Ok(_)) | Err(_) => None,
            Ok(Err(e)) => {
                if !self.missing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(ffprobe = %self.ffprobe, "media listings show no lengths: ffprobe cannot be run ({e}); install FFmpeg or set media.ffprobe");
                }
                None
            }
        }
    }
}

/// One entry as read from the folder, before lengths.
struct Found {
    entry: MediaEntry,
    stamp: Option<Stamp>,
}

/// Lists `dir` (relative to `root`, empty for the root).
pub async fn list(
    root: &Path,
    dir: &str,
    durations: &Arc<Durations>,
) -> Result<MediaListing, SourceError> {
    let (root, dir) = (root.to_path_buf(), dir.to_string());
    let (path, mut found, truncated) = tokio::task::spawn_blocking(move || read(&root, &dir))
        .await
        .map_err(|e| SourceError::Unreadable {
            path: String::new(),
            reason: e.to_string(),
        })??;
    let probes: Vec<_> = found
        .iter()
        .filter_map(|f| f.stamp.clone())
        .take(PROBES_PER_LISTING)
        .filter_map(|s| durations.probe(s))
        .collect();
    if !probes.is_empty() {
        let all = async {
            for p in probes {
                let _ = p.await;
            }
        };
        let _ = tokio::time::timeout(PROBE_WAIT, all).await;
    }
    for f in &mut found {
        if let Some(stamp) = &f.stamp {
            f.entry.duration = durations.known(stamp).flatten();
        }
    }
    Ok(MediaListing {
        path,
        entries: found.into_iter().map(|f| f.entry).collect(),
        truncated,
    })
}

/// Reads a folder: hidden entries, names that are not UTF-8 and links that
/// lead out of the root are left out.
fn read(root: &Path, dir: &str) -> Result<(String, Vec<Found>, bool), SourceError> {
    let (folder, relative) = media::resolve_dir(root, dir)?;
    let canonical_root = root.canonicalize().map_err(|e| SourceError::BadRoot {
        root: root.display().to_string(),
        reason: e.to_string(),
    })?;
    let unreadable = |e: std::io::Error| SourceError::Unreadable {
        path: relative.clone(),
        reason: e.to_string(),
    };
    let mut found = Vec::new();
    let mut truncated = false;
    for item in std::fs::read_dir(&folder).map_err(unreadable)? {
        let Ok(item) = item else { continue };
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = item.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if item.file_type().is_ok_and(|t| t.is_symlink())
            && !path
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&canonical_root))
        {
            continue;
        }
        if found.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let entry_path = if relative.is_empty() {
            name.clone()
        } else {
            format!("{relative}/{name}")
        };
        let (kind, size, stamp) = if meta.is_dir() {
            (MediaKind::Directory, None, None)
        } else if meta.is_file() && media::is_video_name(&name) {
            let stamp = (path.clone(), meta.len(), meta.modified().ok());
            (MediaKind::Video, Some(meta.len()), Some(stamp))
        } else if meta.is_file() {
            (MediaKind::Other, Some(meta.len()), None)
        } else {
            continue;
        };
        found.push(Found {
            entry: MediaEntry {
                name,
                path: entry_path,
                kind,
                size,
                duration: None,
            },
            stamp,
        });
    }
    found.sort_by(|a, b| {
        let dir = |f: &Found| f.entry.kind != MediaKind::Directory;
        dir(a).cmp(&dir(b)).then_with(|| {
            a.entry
                .name
                .to_lowercase()
                .cmp(&b.entry.name.to_lowercase())
                .then_with(|| a.entry.name.cmp(&b.entry.name))
        })
    });
    Ok((relative, found, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_lists_folders_first_and_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("films/Zeta")).unwrap();
        std::fs::create_dir_all(root.join("films/alpha")).unwrap();
        std::fs::write(root.join("films/b.mkv"), b"not really a film").unwrap();
        std::fs::write(root.join("films/A.MP4"), b"#EXTM3U\n../../secret.ts\n").unwrap();
        std::fs::write(root.join("films/notes.txt"), b"hello").unwrap();
        std::fs::write(root.join("films/.hidden.mkv"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.mkv"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.mkv"), root.join("films/out.mkv"))
            .unwrap();
        // No ffprobe here: lengths stay unknown, the listing still comes.
        let durations = Durations::new("/nonexistent/ffprobe");
        let listing = list(&root, "films/", &durations).await.unwrap();
        assert_eq!(listing.path, "films");
        let shown: Vec<(&str, &str, MediaKind, Option<u64>)> = listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.path.as_str(), e.kind, e.size))
            .collect();
        assert_eq!(
            shown,
            [
                ("alpha", "films/alpha", MediaKind::Directory, None),
                ("Zeta", "films/Zeta", MediaKind::Directory, None),
                ("A.MP4", "films/A.MP4", MediaKind::Video, Some(24)),
                ("b.mkv", "films/b.mkv", MediaKind::Video, Some(17)),
                ("notes.txt", "films/notes.txt", MediaKind::Other, Some(5)),
            ]
        );
        assert!(listing.entries.iter().all(|e| e.duration.is_none()));
        let root_listing = list(&root, "", &durations).await.unwrap();
        assert_eq!(root_listing.path, "");
        assert_eq!(root_listing.entries[0].path, "films");
        for bad in ["../", "films/../../", "films/b.mkv", "nope"] {
            assert!(list(&root, bad, &durations).await.is_err(), "{bad}");
        }
    }
}
