//! Store first, then memory: every event the core handles is one
//! transaction.
//!
//! While an event runs, `save` and friends change the jobs and segment maps
//! in memory (the rest of the event reads them) and note what changed and
//! how it was before. At the end of the outermost event everything it
//! changed is written in one store transaction; only when that commit
//! succeeded are its messages published. When it fails (a full disk, an SD
//! card gone read-only) the event's changes are taken back, nothing it
//! decided is published, the store is marked faulty (no job is taken or
//! dispatched, `/healthz` says why), and each tick tries the store again.
//! Once it takes writes again, everything heard meanwhile is heard again
//! (`take_resync`: retained statuses, inventories), so nothing is lost and
//! nothing happens twice.
//!
//! Progress-only updates of a running job are not worth a commit each: they
//! change memory and are written, all together, by the next tick.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::{Core, JobError, Publish};
use crate::job::Job;
use crate::segments::Segments;
use crate::store::Batch;

/// What the event being handled changed, and how it was before.
#[derive(Default)]
pub(super) struct Pending {
    /// Events inside events (`on_availability` runs a `tick`): only the
    /// outermost commits.
    depth: u32,
    jobs: HashSet<Uuid>,
    segments: HashMap<Uuid, BTreeSet<u64>>,
    removed: HashSet<Uuid>,
    undo_jobs: HashMap<Uuid, Option<Job>>,
    undo_segments: HashMap<Uuid, Option<Segments>>,
}

/// What an event answers when its changes could not be stored.
pub(super) trait Outcome {
    fn refused(self, why: &str) -> Self;
}

impl Outcome for Vec<Publish> {
    fn refused(self, _why: &str) -> Self {
        Vec::new()
    }
}

impl Outcome for Result<Vec<Publish>, String> {
    fn refused(self, why: &str) -> Self {
        Err(format!("not taken, the job store cannot be written: {why}"))
    }
}

impl Outcome for Result<(Job, Vec<Publish>), JobError> {
    fn refused(self, why: &str) -> Self {
        match self {
            // Refused anyway: say the first reason.
            Err(e) => Err(e),
            Ok(_) => Err(JobError::Unavailable(unavailable(why))),
        }
    }
}

fn unavailable(why: &str) -> String {
    format!(
        "the orchestrator cannot write its job store ({why}); nothing was changed: try again once it has room (see /healthz)"
    )
}

impl Core {
    /// Runs one event: its changes are stored in one transaction at its end,
    /// or taken back with its messages when that fails.
    pub(super) fn atomically<T: Outcome>(&mut self, event: impl FnOnce(&mut Core) -> T) -> T {
        self.pending.depth += 1;
        let out = event(self);
        self.pending.depth -= 1;
        if self.pending.depth > 0 {
            return out;
        }
        match self.commit() {
            Ok(()) => out,
            Err(why) => {
                self.rollback();
                self.enter_fault(why.clone());
                out.refused(&why)
            }
        }
    }

    /// Keeps `job` as changed by this event (written at its end).
    pub(super) fn save(&mut self, job: Job) {
        let job_id = job.job_id;
        let before = self.jobs.insert(job_id, job);
        self.pending.undo_jobs.entry(job_id).or_insert(before);
        self.pending.jobs.insert(job_id);
    }

    /// Keeps a running job's progress in memory; the next tick writes it.
    pub(super) fn touch(&mut self, job: Job) {
        self.progress_dirty.insert(job.job_id);
        self.jobs.insert(job.job_id, job);
    }

    /// Keeps a job's new segment map; `changed` are the segments to write.
    pub(super) fn save_segments(
        &mut self,
        job_id: Uuid,
        segs: Segments,
        changed: impl IntoIterator<Item = u64>,
    ) {
        let before = self.segments.insert(job_id, segs);
        self.pending.undo_segments.entry(job_id).or_insert(before);
        self.pending
            .segments
            .entry(job_id)
            .or_default()
            .extend(changed);
    }

    /// Forgets a job and its segments (written at the event's end).
    pub(super) fn remove_job(&mut self, job_id: Uuid) -> Option<Job> {
        let job = self.jobs.remove(&job_id);
        let segs = self.segments.remove(&job_id);
        self.pending
            .undo_jobs
            .entry(job_id)
            .or_insert_with(|| job.clone());
        self.pending.undo_segments.entry(job_id).or_insert(segs);
        self.pending.jobs.remove(&job_id);
        self.pending.segments.remove(&job_id);
        self.pending.removed.insert(job_id);
        self.progress_dirty.remove(&job_id);
        job
    }

    /// Running jobs' progress since the last tick joins this event's write.
    pub(super) fn stage_progress(&mut self) {
        for job_id in &self.progress_dirty {
            if self.jobs.contains_key(job_id) {
                self.pending.jobs.insert(*job_id);
            }
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        let pending = std::mem::take(&mut self.pending);
        let batch = Batch {
            jobs: pending
                .jobs
                .iter()
                .filter_map(|id| self.jobs.get(id))
                .collect(),
            segments: pending
                .segments
                .iter()
                .flat_map(|(id, indices)| {
                    let segs = self.segments.get(id);
                    indices
                        .iter()
                        .filter_map(move |i| segs.and_then(|s| s.get(i)).map(|s| (*id, *i, s)))
                })
                .collect(),
            removed: pending.removed.iter().copied().collect(),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.store.commit(&batch).map_err(|e| e.to_string());
        match result {
            Ok(()) => {
                self.progress_dirty.retain(|id| !pending.jobs.contains(id));
                Ok(())
            }
            Err(e) => {
                // Put it back for `rollback`.
                self.pending = pending;
                Err(e)
            }
        }
    }

    fn rollback(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (job_id, before) in pending.undo_jobs {
            match before {
                Some(job) => self.jobs.insert(job_id, job),
                None => self.jobs.remove(&job_id),
            };
        }
        for (job_id, before) in pending.undo_segments {
            match before {
                Some(segs) => self.segments.insert(job_id, segs),
                None => self.segments.remove(&job_id),
            };
        }
        // What was announced or counted as published was not: say it all
        // again once the store is back.
        if let Some(ha) = &mut self.ha {
            ha.unsent();
        }
        self.board.unsent();
    }

    fn enter_fault(&mut self, why: String) {
        if self.store_fault.is_none() {
            tracing::error!("the job store cannot be written: {why}. No job is taken or dispatched until it can; the store is tried again every tick");
        }
        self.store_fault = Some(why);
    }

    /// While the store cannot be written: tries it again (a tick). When it
    /// takes writes again, everything heard meanwhile is to be heard again.
    pub(super) fn try_store(&mut self) {
        if self.store_fault.is_none() {
            return;
        }
        match self.store.recover() {
            Ok(()) => {
                tracing::info!("the job store takes writes again; jobs are taken and dispatched again, and what was heard meanwhile is read again");
                self.store_fault = None;
                self.resync = true;
            }
            Err(e) => {
                tracing::debug!("the job store still cannot be written: {e}");
                self.store_fault = Some(e.to_string());
            }
        }
    }

    /// Why the store cannot be written, when it cannot.
    pub fn store_fault(&self) -> Option<&str> {
        self.store_fault.as_deref()
    }

    /// The refusal of a new job while the store cannot be written.
    pub(super) fn refuse_while_faulty(&self) -> Result<(), JobError> {
        match &self.store_fault {
            Some(why) => Err(JobError::Unavailable(unavailable(why))),
            None => Ok(()),
        }
    }

    /// True once after the store came back: the session reads the retained
    /// statuses again and asks the workers for their inventories (what was
    /// refused while it was down).
    pub fn take_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync)
    }
}
