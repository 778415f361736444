//! Orders that must arrive. An assignment is published with QoS 1, but a
//! connection that drops (ours, the worker's, a broker that restarts and
//! forgets sessions) can lose it in flight. So every assignment not yet
//! acknowledged (its run still `assigned`: the worker's `processing` or a
//! refusal moves it on) is sent again after every connection of ours and
//! whenever its worker comes online again; a worker takes an assignment
//! once per (job, attempt), so a repeat changes nothing. Cancels and fences
//! need no repeat: every heartbeat that still lists a run that is not the
//! worker's any more is answered with one (see `reconcile`).

use transcode_common::wire::{self, JobState};

use super::{Core, Publish};

impl Core {
    /// The assignments not acknowledged yet, of one worker or of all.
    pub(super) fn unacknowledged_assignments(&self, worker: Option<&str>) -> Vec<Publish> {
        let mut jobs: Vec<_> = self.jobs.values().filter(|j| !j.state.is_final()).collect();
        jobs.sort_by_key(|j| j.seq);
        let ours = |w: &str| worker.is_none_or(|only| only == w);
        let mut out = Vec::new();
        for job in jobs {
            let mut orders = Vec::new();
            if job.is_mesh_mode {
                for c in job
                    .chunks
                    .iter()
                    .filter(|c| c.state == JobState::Assigned && ours(&c.worker_id))
                {
                    orders.push((c.worker_id.as_str(), job.chunk_assignment(c)));
                }
            } else if job.state == JobState::Assigned {
                if let Some(w) = job.worker_id.as_deref().filter(|w| ours(w)) {
                    orders.push((w, job.assignment()));
                }
            }
            for (w, mut assignment) in orders {
                self.attach_source(&mut assignment);
                tracing::debug!(job_id = %job.job_id, worker_id = w, attempt = assignment.attempt, "assignment sent again: not acknowledged yet");
                out.push(Publish {
                    topic: self.topics.worker_jobs(w),
                    payload: wire::encode(&assignment),
                    retain: false,
                });
            }
        }
        out
    }
}
