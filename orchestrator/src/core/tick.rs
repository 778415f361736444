//! The time: worker timeouts, lost and stalled runs, dispatch, pruning
//! of finished jobs.

use super::*;

impl Core {
    /// Worker timeouts, lost and stalled runs, dispatch, pruning.
    pub fn tick(&mut self, now: Now) -> Vec<Publish> {
        self.try_store();
        self.atomically(|core| core.take_tick(now))
    }

    pub(super) fn take_tick(&mut self, now: Now) -> Vec<Publish> {
        self.stage_progress();
        let mut out = Vec::new();
        for (worker_id, transition) in self.registry.sweep(now.instant) {
            log_transition(&worker_id, &Some(transition));
        }
        for worker_id in self.registry.forget(now.instant, now.ms) {
            out.extend(self.forget_worker(&worker_id));
        }
        let up_for = now.instant.saturating_duration_since(self.booted);
        let boot_grace_over = up_for >= self.settings.heartbeat_timeout;
        let stall_ms = self.settings.stall_timeout.as_millis() as u64;
        let stall_watch = up_for >= self.settings.stall_timeout;
        let assign_ms = self.settings.assign_timeout.as_millis() as u64;
        // (job, why, the worker to fence and the attempt it holds, whether
        // the run counts as failed)
        type Lost = (Job, String, Option<(String, u32)>, bool);
        let mut lost: Vec<Lost> = Vec::new();
        for job in self
            .jobs
            .values()
            .filter(|j| j.is_running() && !j.is_mesh_mode)
        {
            let Some(worker) = job.worker_id.clone() else {
                lost.push((job.clone(), "the job had no worker".into(), None, false));
                continue;
            };
            // A run that never started is no failure of the job's.
            let started = job.state == JobState::Processing;
            match self.registry.is_online(&worker) {
                Some(false) => lost.push((
                    job.clone(),
                    format!("worker {worker} was lost"),
                    None,
                    started,
                )),
                None if boot_grace_over => lost.push((
                    job.clone(),
                    format!("worker {worker} did not come back after the orchestrator restarted"),
                    None,
                    started,
                )),
                _ if started && stall_watch && now.ms > job.updated_at.saturating_add(stall_ms) => {
                    lost.push((
                        job.clone(),
                        format!(
                            "worker {worker} sent no progress for {} s (stalled)",
                            self.settings.stall_timeout.as_secs()
                        ),
                        Some((worker, job.attempt)),
                        true,
                    ))
                }
                _ if job.state == JobState::Assigned
                    && job.assigned_at.is_some_and(|t| now.ms > t + assign_ms) =>
                {
                    lost.push((
                        job.clone(),
                        format!(
                            "worker {worker} did not start the job within {} s",
                            self.settings.assign_timeout.as_secs()
                        ),
                        Some((worker, job.attempt)),
                        true,
                    ))
                }
                _ => {}
            }
        }
        for (job, reason, fence, counts) in lost {
            if let Some((w, attempt)) = fence {
                out.push(self.fence(&w, job.job_id, Some(attempt)));
            }
            out.extend(self.requeue(job, reason, counts, now));
        }
        let settling: Vec<Job> = self
            .jobs
            .values()
            .filter(|j| j.settling_since.is_some() && !j.state.is_final())
            .cloned()
            .collect();
        for job in settling {
            out.extend(self.settle(job, now));
        }
        out.extend(self.mesh_tick(now, boot_grace_over, stall_watch));
        out.extend(self.requeue_unlisted(now));
        out.extend(self.repair_watched(now, boot_grace_over));
        out.extend(self.dispatch(now));
        out.extend(self.prune(now));
        out.extend(self.keep_watched_outputs(now));
        out.extend(self.stats(false));
        out
    }

    /// Forgets finished jobs past the retention time and clears their
    /// retained status.
    pub(super) fn prune(&mut self, now: Now) -> Vec<Publish> {
        let keep_ms = self.settings.retention.as_millis() as u64;
        let old: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| j.state.is_final() && j.finished_at.is_some_and(|t| now.ms >= t + keep_ms))
            .map(|j| j.job_id)
            .collect();
        let mut out = Vec::new();
        for job_id in old {
            out.extend(self.delete_outputs(job_id));
            if let Some(job) = self.remove_job(job_id).filter(|j| j.is_mesh_mode) {
                // Every attempt of a split job was a chunk with its topic.
                for attempt in 1..=job.attempt {
                    out.push(Publish {
                        topic: self
                            .topics
                            .chunk_status(&job_id.to_string(), &attempt.to_string()),
                        payload: Vec::new(),
                        retain: true,
                    });
                }
            }
            self.viewed.remove(&job_id);
            self.mesh_status_at.remove(&job_id);
            tracing::info!(%job_id, "finished job pruned after state.retention_s");
            out.push(self.clear(job_id));
        }
        while let Some((job_id, at)) = self.rejected.front().copied() {
            if now.ms < at + keep_ms {
                break;
            }
            self.rejected.pop_front();
            out.push(self.clear(job_id));
        }
        out
    }

    pub(super) fn clear(&self, job_id: Uuid) -> Publish {
        Publish {
            topic: self.topics.job_status(&job_id.to_string()),
            payload: Vec::new(),
            retain: true,
        }
    }
}
