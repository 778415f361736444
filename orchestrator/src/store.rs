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
    db: Database,
    path: PathBuf,
}

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
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => err(
                "another orchestrator already uses it; stop it or give this one its own state.dir"
                    .into(),
            ),
            other => err(other.to_string()),
        })?;
        let store = Store { db, path };
        // Make sure the tables exist, so readers never see them missing.
        store.write_segments(None, &[], None)?;
        Ok(store)
    }

    fn error(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(JOBS).map_err(|e| self.error(e))?;
            f(&mut table).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Every stored job. A record that no longer decodes is reported and
    /// skipped, never fatal.
    pub fn load(&self) -> Result<Vec<Job>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
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
        let bytes = serde_json::to_vec(job).map_err(|e| self.error(e))?;
        let key = job.job_id.to_string();
        self.write(|t| t.insert(key.as_str(), bytes.as_slice()).map(drop))
    }

    /// Writes segments of a job and, in the same transaction, the job
    /// itself when given; durable when this returns.
    pub fn put_segments(
        &self,
        job: Option<&Job>,
        job_id: Uuid,
        segments: &[(u64, &Seg)],
    ) -> Result<(), StoreError> {
        let rows: Vec<(String, Vec<u8>)> = segments
            .iter()
            .map(|(i, s)| {
                serde_json::to_vec(s)
                    .map(|b| (segment_key(job_id, *i), b))
                    .map_err(|e| self.error(e))
            })
            .collect::<Result<_, _>>()?;
        self.write_segments(job, &rows, None)
    }

    fn write_segments(
        &self,
        job: Option<&Job>,
        rows: &[(String, Vec<u8>)],
        remove: Option<Uuid>,
    ) -> Result<(), StoreError> {
        let job_row = match job {
            Some(j) => Some((
                j.job_id.to_string(),
                serde_json::to_vec(j).map_err(|e| self.error(e))?,
            )),
            None => None,
        };
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(|e| self.error(e))?;
            let mut segs = txn.open_table(SEGMENTS).map_err(|e| self.error(e))?;
            if let Some((k, v)) = &job_row {
                jobs.insert(k.as_str(), v.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for (k, v) in rows {
                segs.insert(k.as_str(), v.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            if let Some(job_id) = remove {
                let key = job_id.to_string();
                jobs.remove(key.as_str()).map_err(|e| self.error(e))?;
                let (from, to) = (format!("{job_id}/"), format!("{job_id}0"));
                segs.retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Every stored segment, by job. Rows that no longer decode are
    /// reported and skipped.
    pub fn load_segments(&self) -> Result<HashMap<Uuid, Segments>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
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
        self.write_segments(None, &[], Some(job_id))
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
