//! The jobs' truth on disk: a redb database (ACID, crash-safe: every
//! committed write survives a SIGKILL or a power cut) under `state.dir`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use uuid::Uuid;

use crate::job::Job;
use crate::segments::{Seg, Segments};

/// Job id (text) → the job as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// `{job_id}/{index:012}` → the segment as JSON: one job's segments are
/// neighbours, in order.
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");

fn segment_key(job_id: Uuid, index: u64) -> String {
    format!("{job_id}/{index:012}")
}

#[derive(Debug, thiserror::Error)]
#[error("job store {path}: {reason}")]
pub struct StoreError {
    path: String,
    reason: String,
}

pub struct Store {
    /// `None` only while it is being opened again after an IO error (redb
    /// takes no write after one until it is reopened).
    db: Option<Database>,
    path: PathBuf,
    /// Core tests make writes fail as a full disk does (never in a binary;
    /// the end-to-end tests fill a real disk).
    #[cfg(test)]
    pub(crate) full: std::sync::atomic::AtomicBool,
}

/// What one event of the core changed, written in one transaction.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Jobs to write, whole.
    pub jobs: Vec<&'a Job>,
    /// Segments to write: (job, number, segment).
    pub segments: Vec<(Uuid, u64, &'a Seg)>,
    /// Jobs to remove, with their segments.
    pub removed: Vec<Uuid>,
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.segments.is_empty() && self.removed.is_empty()
    }
}

/// A tiny table the store writes to find out whether it can write again.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("probe");

impl Store {
    /// Opens (or creates) `dir/jobs.redb`. A second orchestrator on the same
    /// folder is refused.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("jobs.redb");
        let err = |reason: String| StoreError {
            path: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            err(format!(
                "cannot create the folder: {e} (check state.dir and its permissions)"
            ))
        })?;
        let db = Self::open_db(&path)?;
        let store = Store {
            db: Some(db),
            path,
            #[cfg(test)]
            full: Default::default(),
        };
        // Make sure the tables exist, so readers never see them missing.
        store.commit(&Batch::default())?;
        Ok(store)
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        Database::create(path).map_err(|e| StoreError {
            path: path.display().to_string(),
            reason: match e {
                redb::DatabaseError::DatabaseAlreadyOpen => "another orchestrator already uses it; stop it or give this one its own state.dir".into(),
                other => other.to_string(),
            },
        })
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db
            .as_ref()
            .ok_or_else(|| self.error("it could not be opened again after a write failed"))
    }

    /// Whether the store takes writes again after one failed (a full disk
    /// with room again, a device back): opens the database again (redb
    /// takes nothing after an IO error until then) and writes a probe.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        self.failing()?;
        // The file lock goes with the old handle, before the new one.
        self.db = None;
        self.db = Some(Self::open_db(&self.path)?);
        let txn = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut probe = txn.open_table(PROBE).map_err(|e| self.error(e))?;
            probe
                .insert("written_at", transcode_common::unix_ms())
                .map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn error(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Writes a batch in one transaction; durable when this returns, and
    /// nothing of it written when it fails.
    /// In core tests: a disk that is full.
    fn failing(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.full.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(self.error("No space left on device (os error 28)"));
        }
        Ok(())
    }

    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let jobs = batch
            .jobs
            .iter()
            .map(|j| {
                serde_json::to_vec(j)
                    .map(|b| (j.job_id.to_string(), b))
                    .map_err(|e| self.error(e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let segments = batch
            .segments
            .iter()
            .map(|(job_id, i, s)| {
                serde_json::to_vec(s)
                    .map(|b| (segment_key(*job_id, *i), b))
                    .map_err(|e| self.error(e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.failing()?;
        let txn = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut job_table = txn.open_table(JOBS).map_err(|e| self.error(e))?;
            let mut seg_table = txn.open_table(SEGMENTS).map_err(|e| self.error(e))?;
            for (k, v) in &jobs {
                job_table
                    .insert(k.as_str(), v.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for (k, v) in &segments {
                seg_table
                    .insert(k.as_str(), v.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for job_id in &batch.removed {
                let key = job_id.to_string();
                job_table.remove(key.as_str()).map_err(|e| self.error(e))?;
                let (from, to) = (format!("{job_id}/"), format!("{job_id}0"));
                seg_table
                    .retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Every stored job. A record that no longer decodes is reported and
    /// skipped, never fatal.
    pub fn load(&self) -> Result<Vec<Job>, StoreError> {
        let txn = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(JOBS).map_err(|e| self.error(e))?;
        let mut jobs = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            match serde_json::from_slice::<Job>(value.value()) {
                Ok(job) => jobs.push(job),
                Err(e) => tracing::error!(
                    job_id = key.value(),
                    "stored job cannot be read and is skipped: {e}"
                ),
            }
        }
        Ok(jobs)
    }

    /// Writes (or overwrites) a job; durable when this returns.
    pub fn put(&self, job: &Job) -> Result<(), StoreError> {
        self.commit(&Batch {
            jobs: vec![job],
            ..Batch::default()
        })
    }

    /// Writes segments of a job and, in the same transaction, the job
    /// itself when given; durable when this returns.
    pub fn put_segments(
        &self,
        job: Option<&Job>,
        job_id: Uuid,
        segments: &[(u64, &Seg)],
    ) -> Result<(), StoreError> {
        self.commit(&Batch {
            jobs: job.into_iter().collect(),
            segments: segments.iter().map(|(i, s)| (job_id, *i, *s)).collect(),
            removed: Vec::new(),
        })
    }

    /// Every stored segment, by job. Rows that no longer decode are
    /// reported and skipped.
    pub fn load_segments(&self) -> Result<HashMap<Uuid, Segments>, StoreError> {
        let txn = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(SEGMENTS).map_err(|e| self.error(e))?;
        let mut out: HashMap<Uuid, Segments> = HashMap::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let key = key.value();
            let parsed = key
                .split_once('/')
                .and_then(|(j, i)| Some((Uuid::parse_str(j).ok()?, i.parse::<u64>().ok()?)));
            match (parsed, serde_json::from_slice::<Seg>(value.value())) {
                (Some((job_id, index)), Ok(seg)) => {
                    out.entry(job_id).or_default().insert(index, seg);
                }
                _ => tracing::error!(key, "stored segment cannot be read and is skipped"),
            }
        }
        Ok(out)
    }

    /// Removes a job and its segments.
    pub fn remove(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.commit(&Batch {
            removed: vec![job_id],
            ..Batch::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Seg;
    use transcode_common::wire::{JobRequest, JobState};

    fn job(seq: u64) -> Job {
        let req: JobRequest = transcode_common::wire::decode(
            br#"{"source_path":"a.mkv","resolution":"720p","bitrate":"1M"}"#,
        )
        .unwrap();
        Job::from_request(&req, Uuid::new_v4(), seq, 1)
    }

    #[test]
    fn jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut b) = (job(1), job(2));
        {
            let store = Store::open(dir.path()).unwrap();
            store.put(&a).unwrap();
            store.put(&b).unwrap();
            b.state = JobState::Processing;
            store.put(&b).unwrap();
            let seg = |holder: &str| Seg {
                duration: 4.0,
                holder: Some(holder.into()),
                encoding: 0,
            };
            let (s0, s1) = (seg("w1"), seg("w2"));
            store
                .put_segments(Some(&a), a.job_id, &[(0, &s0), (1, &s1)])
                .unwrap();
            store.put_segments(None, b.job_id, &[(7, &s1)]).unwrap();
            store.remove(a.job_id).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let jobs = store.load().unwrap();
        assert_eq!(jobs, vec![b.clone()]);
        let segs = store.load_segments().unwrap();
        assert_eq!(segs.len(), 1, "a's segments went with it");
        let kept = &segs[&b.job_id];
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), vec![7]);
        assert_eq!(kept[&7].holder.as_deref(), Some("w2"));
    }

    #[test]
    fn a_second_opener_is_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("another orchestrator"), "{err}");
    }
}
