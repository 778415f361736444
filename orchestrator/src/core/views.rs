//! What the API shows: jobs, workers and counts, read without change.

use super::*;

impl Core {
    pub fn job(&self, job_id: Uuid) -> Option<Job> {
        self.jobs.get(&job_id).cloned()
    }

    /// Every job, in submission order.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.jobs.values().cloned().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs
    }

    /// Every known worker, with the jobs we gave it.
    pub fn workers(&self) -> Vec<WorkerListing> {
        let mut workers = self.registry.snapshot();
        for w in &mut workers {
            let mut ours: Vec<String> = self
                .jobs
                .values()
                .filter(|j| self.runs_on(j, &w.worker_id))
                .map(|j| j.job_id.to_string())
                .collect();
            for j in &w.jobs {
                if !ours.contains(j) {
                    ours.push(j.clone());
                }
            }
            w.jobs = ours;
        }
        workers
    }

    /// Whether a run of the job (a chunk of a split job) holds the worker.
    pub(super) fn runs_on(&self, job: &Job, worker_id: &str) -> bool {
        if job.is_mesh_mode {
            return job
                .chunks
                .iter()
                .any(|c| c.is_running() && c.worker_id == worker_id);
        }
        job.is_running() && job.worker_id.as_deref() == Some(worker_id)
    }

    pub fn online_count(&self) -> usize {
        self.registry.online_count()
    }

    /// Jobs per state now.
    pub fn job_counts(&self) -> Vec<(JobState, usize)> {
        [
            JobState::Queued,
            JobState::Assigned,
            JobState::Processing,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .map(|s| (s, self.jobs.values().filter(|j| j.state == s).count()))
        .collect()
    }
}
