//! The job folders under `transcode.output_dir`: which segments each holds
//! (a `segments.json` beside them, so a restarted worker still knows), when
//! a player last asked for any of its files, and when a folder goes.
//!
//! A folder is deleted once nobody has requested any of its files for
//! `transcode.keep_outputs_s` (counted from the last request, or from the
//! end of the last run here when nobody watched), or at once when the
//! orchestrator says the job was cancelled or pruned. A running job's
//! folder is never deleted.
//!
//! Everything that reads or changes the disk is async and runs on tokio's
//! blocking threads: the folder scans, the records and the deletions never
//! hold up the runtime's threads, which serve the players.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use transcode_common::wire::{Grid, SegmentInfo};
use uuid::Uuid;

/// The record of what a job folder holds.
pub const HELD_FILE: &str = "segments.json";

/// What one job folder holds, as written in its `segments.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The last run that wrote here.
    pub attempt: u32,
    pub grid: Grid,
    pub encoding: String,
    /// In increasing order.
    pub segments: Vec<SegmentInfo>,
}

impl Held {
    /// Adds (or replaces) a segment, keeping the order.
    pub fn add(&mut self, seg: SegmentInfo) {
        match self.segments.binary_search_by_key(&seg.index, |s| s.index) {
            Ok(i) => self.segments[i] = seg,
            Err(i) => self.segments.insert(i, seg),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The last request for any of its files, or the end of its last run.
    last_use: Instant,
    /// The highest segment served to a player.
    served: Option<u64>,
    running: bool,
    /// The orchestrator asked for it to go: deleted once not running.
    doomed: bool,
}

pub struct Outputs {
    dir: PathBuf,
    keep: Duration,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl Outputs {
    pub fn new(dir: PathBuf, keep: Duration) -> Outputs {
        Outputs {
            dir,
            keep,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, job_id: Uuid) -> Entry {
        *self.entries().entry(job_id).or_insert(Entry {
            last_use: Instant::now(),
            served: None,
            running: false,
            doomed: false,
        })
    }

    /// The folder of a job (named by its parsed id only).
    pub fn folder(&self, job_id: Uuid) -> PathBuf {
        self.dir.join(job_id.to_string())
    }

    /// Makes sure the output folder exists and takes the job folders an
    /// earlier process left as kept from now on; returns their ids.
    pub async fn open(&self) -> std::io::Result<Vec<Uuid>> {
        let dir = self.dir.clone();
        let found = blocking(move || job_folders(&dir)).await??;
        for job_id in &found {
            self.entry(*job_id);
        }
        Ok(found)
    }

    /// Whether the job's folder is there.
    pub async fn has_folder(&self, job_id: Uuid) -> bool {
        tokio::fs::metadata(self.folder(job_id))
            .await
            .is_ok_and(|m| m.is_dir())
    }

    /// Every job folder known here.
    pub fn job_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.entries().keys().copied().collect();
        ids.sort();
        ids
    }

    /// A player asked for one of the job's files (or the orchestrator says
    /// one watches it).
    pub fn touch(&self, job_id: Uuid) {
        self.entry(job_id);
        if let Some(e) = self.entries().get_mut(&job_id) {
            e.last_use = Instant::now();
        }
    }

    /// A player got segment `index`.
    pub fn served(&self, job_id: Uuid, index: u64) {
        self.touch(job_id);
        if let Some(e) = self.entries().get_mut(&job_id) {
            e.served = Some(e.served.map_or(index, |s| s.max(index)));
        }
    }

    pub fn served_max(&self, job_id: Uuid) -> Option<u64> {
        self.entries().get(&job_id).and_then(|e| e.served)
    }

    /// A run starts or ends here; its end counts as a use.
    pub fn set_running(&self, job_id: Uuid, running: bool) {
        self.entry(job_id);
        if let Some(e) = self.entries().get_mut(&job_id) {
            e.running = running;
            e.last_use = Instant::now();
            if running {
                e.doomed = false;
            }
        }
    }

    /// The orchestrator cancelled or pruned the job.
    pub fn doom(&self, job_id: Uuid) {
        if let Some(e) = self.entries().get_mut(&job_id) {
            e.doomed = true;
        }
    }

    /// Folders whose time is up: not running, and doomed or unused for
    /// `keep_outputs_s`.
    pub fn expired(&self) -> Vec<Uuid> {
        let now = Instant::now();
        let mut ids: Vec<Uuid> = self
            .entries()
            .iter()
            .filter(|(_, e)| {
                !e.running && (e.doomed || now.saturating_duration_since(e.last_use) >= self.keep)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Deletes a job's folder and forgets it.
    pub async fn delete(&self, job_id: Uuid) -> std::io::Result<()> {
        self.entries().remove(&job_id);
        match tokio::fs::remove_dir_all(self.folder(job_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// What the job's folder holds, from its `segments.json`.
    pub async fn held(&self, job_id: Uuid) -> Option<Held> {
        let folder = self.folder(job_id);
        blocking(move || read_held(&folder)).await.ok().flatten()
    }

    /// Writes the folder's `segments.json` (a new file renamed over the old
    /// one, so a crash leaves one or the other).
    pub async fn record(&self, job_id: Uuid, held: &Held) -> std::io::Result<()> {
        let folder = self.folder(job_id);
        let bytes = serde_json::to_vec(held).map_err(std::io::Error::other)?;
        blocking(move || {
            let tmp = folder.join(format!("{HELD_FILE}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, folder.join(HELD_FILE))
        })
        .await?
    }
}

/// Runs file-system work on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
}

/// Makes `dir` if needed and lists the job folders in it, in order.
fn job_folders(dir: &Path) -> std::io::Result<Vec<Uuid>> {
    std::fs::create_dir_all(dir)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let Some(job_id) = entry
            .file_name()
            .to_str()
            .and_then(|n| Uuid::parse_str(n).ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            found.push(job_id);
        }
    }
    found.sort();
    Ok(found)
}

/// Reads a `segments.json`, keeping only segments whose file is there.
fn read_held(folder: &Path) -> Option<Held> {
    let text = std::fs::read(folder.join(HELD_FILE)).ok()?;
    let mut held: Held = serde_json::from_slice(&text).ok()?;
    held.segments
        .retain(|s| folder.join(format!("seg{}.ts", s.index)).is_file());
    held.segments.sort_by_key(|s| s.index);
    held.segments.dedup_by_key(|s| s.index);
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            segment_frames: 120,
            lead: 0,
            fps_num: 30,
            fps_den: 1,
        }
    }

    #[test]
    fn held_segments_stay_in_order() {
        let mut held = Held {
            attempt: 1,
            grid: grid(),
            encoding: "libx264".into(),
            segments: Vec::new(),
        };
        for i in [3, 1, 2, 1] {
            held.add(SegmentInfo {
                index: i,
                duration: 4.0 + i as f64,
            });
        }
        let order: Vec<u64> = held.segments.iter().map(|s| s.index).collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn records_survive_and_name_only_files_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = Outputs::new(dir.path().to_path_buf(), Duration::from_secs(60));
        let job = Uuid::new_v4();
        std::fs::create_dir_all(outputs.folder(job)).unwrap();
        std::fs::write(outputs.folder(job).join("seg0.ts"), b"x").unwrap();
        let held = Held {
            attempt: 2,
            grid: grid(),
            encoding: "libx264".into(),
            segments: vec![
                SegmentInfo {
                    index: 0,
                    duration: 4.0,
                },
                SegmentInfo {
                    index: 1,
                    duration: 4.0,
                },
            ],
        };
        outputs.record(job, &held).await.unwrap();
        let again = Outputs::new(dir.path().to_path_buf(), Duration::from_secs(60));
        assert_eq!(again.open().await.unwrap(), vec![job]);
        assert!(again.has_folder(job).await);
        assert!(!again.has_folder(Uuid::new_v4()).await);
        let read = again.held(job).await.unwrap();
        assert_eq!(read.segments.len(), 1, "seg1.ts does not exist");
        assert_eq!(read.attempt, 2);
        again.delete(job).await.unwrap();
        assert!(!again.has_folder(job).await);
        assert_eq!(again.job_ids(), Vec::<Uuid>::new());
        // A folder that is already gone is no error.
        again.delete(job).await.unwrap();
    }

    #[test]
    fn folders_expire_unless_running_or_used() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = Outputs::new(dir.path().to_path_buf(), Duration::ZERO);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        outputs.set_running(a, true);
        outputs.touch(b);
        outputs.set_running(c, true);
        outputs.doom(c);
        // keep = 0: b is due at once; a and c run.
        assert_eq!(outputs.expired(), vec![b]);
        let kept = Outputs::new(dir.path().to_path_buf(), Duration::from_secs(60));
        kept.touch(b);
        kept.set_running(c, false);
        kept.doom(c);
        assert_eq!(kept.expired(), vec![c], "doomed goes once stopped");
        kept.served(b, 4);
        kept.served(b, 2);
        assert_eq!(kept.served_max(b), Some(4));
    }
}
