//! The jobs' truth on disk: a redb database (ACID, crash-safe: every
//! committed write survives a SIGKILL or a power cut) under `state.dir`.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use uuid::Uuid;

use crate::job::Job;

/// Job id (text) → the job as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

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
        // Make sure the table exists, so readers never see it missing.
        store.write(|t| {
            let _ = t;
            Ok(())
        })?;
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

    pub fn remove(&self, job_id: Uuid) -> Result<(), StoreError> {
        let key = job_id.to_string();
        self.write(|t| t.remove(key.as_str()).map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            store.remove(a.job_id).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let jobs = store.load().unwrap();
        assert_eq!(jobs, vec![b]);
    }

    #[test]
    fn a_second_opener_is_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("another orchestrator"), "{err}");
    }
}
