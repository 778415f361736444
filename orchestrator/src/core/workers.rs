//! What workers say about themselves: heartbeats and availability, and
//! the reconciliation of what a live worker runs with what we gave it.

use super::*;

impl Core {
    /// How many runs the worker's last heartbeat lists.
    pub(super) fn runs_listed(&self, worker_id: &str) -> usize {
        self.registry
            .heartbeat(worker_id)
            .map_or(0, |hb| hb.active_jobs.len())
    }

    /// A message on `.../workers/{id}/heartbeat`.
    pub fn on_heartbeat(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        retained: bool,
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        self.atomically(|core| core.take_heartbeat(worker_id, payload, retained, now))
    }

    pub(super) fn take_heartbeat(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        retained: bool,
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        let held_before = self.runs_listed(worker_id);
        let transition =
            self.registry
                .on_heartbeat(worker_id, payload, retained, now.instant, now.ms)?;
        log_transition(worker_id, &transition);
        let mut out = self.announce(worker_id);
        if !retained {
            // A refusing worker may have a free slot again, and so may one
            // that let a run go (a cancelled run stopping counts until then).
            let mut retry = self.runs_listed(worker_id) < held_before;
            for job in self.jobs.values_mut() {
                if job.refused_by.as_deref() == Some(worker_id) {
                    job.refused_by = None;
                    retry = true;
                }
            }
            if retry {
                out.extend(self.dispatch(now));
            }
            if let Some(hb) = self.registry.heartbeat(worker_id).cloned() {
                out.extend(self.reconcile(&hb, now));
            }
        }
        if transition == Some(Transition::Online) {
            out.extend(self.unacknowledged_assignments(Some(worker_id)));
            out.extend(self.dispatch(now));
        }
        Ok(out)
    }

    /// A message on `.../workers/{id}/availability`.
    pub fn on_availability(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        self.atomically(|core| core.take_availability(worker_id, payload, now))
    }

    pub(super) fn take_availability(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        let transition = self
            .registry
            .on_availability(worker_id, payload, now.instant, now.ms)?;
        log_transition(worker_id, &transition);
        Ok(match transition {
            Some(Transition::Offline(_)) => self.tick(now),
            Some(Transition::Online) => {
                let mut out = self.unacknowledged_assignments(Some(worker_id));
                out.extend(self.dispatch(now));
                out
            }
            None => Vec::new(),
        })
    }

    /// Compares what a live heartbeat says the worker runs with what we
    /// gave it: fences copies of jobs that moved on, requeues jobs it no
    /// longer runs (it restarted).
    pub(super) fn reconcile(&mut self, hb: &Heartbeat, now: Now) -> Vec<Publish> {
        let worker_id = hb.worker_id.as_str();
        let mut out = Vec::new();
        for job_id in &hb.active_jobs {
            if let Some(job) = self.jobs.get(job_id) {
                if job.is_mesh_mode {
                    if job
                        .chunks
                        .iter()
                        .any(|c| c.is_running() && c.worker_id == worker_id)
                    {
                        continue;
                    }
                    // Only the chunks it had: a newer one on its way stays.
                    let stale = job
                        .chunks
                        .iter()
                        .filter(|c| c.worker_id == worker_id)
                        .map(|c| c.attempt)
                        .max();
                    out.push(self.fence(worker_id, *job_id, stale.or(Some(job.attempt))));
                    continue;
                }
                let ours = job.is_running() && job.worker_id.as_deref() == Some(worker_id);
                if !ours {
                    out.push(self.fence(worker_id, *job_id, None));
                }
            }
        }
        let listed: HashSet<&Uuid> = hb.active_jobs.iter().collect();
        self.unlisted
            .retain(|(id, w), _| w != worker_id || !listed.contains(id));
        // A heartbeat made well after a run started must list it.
        let late = |since: Option<u64>| match (hb.timestamp, since) {
            (Some(hb_ts), Some(since)) => hb_ts > since.saturating_add(2_000),
            _ => false,
        };
        // A run the worker says it ended: its final status is on its way
        // (on another topic, and maybe behind this heartbeat).
        let ended = |job_id: Uuid, attempt: u32| {
            hb.finished_runs
                .iter()
                .any(|r| r.job_id == job_id && r.attempt == attempt)
        };
        let unlisted: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| !listed.contains(&j.job_id))
            .filter(|j| {
                if j.is_mesh_mode {
                    return j.chunks.iter().any(|c| {
                        c.state == JobState::Processing
                            && c.worker_id == worker_id
                            && late(c.processing_since)
                            && !ended(j.job_id, c.attempt)
                    });
                }
                j.state == JobState::Processing
                    // A run that said it completed is no longer listed.
                    && j.settling_since.is_none()
                    && j.worker_id.as_deref() == Some(worker_id)
                    && late(j.processing_since)
                    && !ended(j.job_id, j.attempt)
            })
            .map(|j| j.job_id)
            .collect();
        for job_id in unlisted {
            self.unlisted
                .entry((job_id, worker_id.to_string()))
                .or_insert(now.ms);
        }
        out.extend(self.requeue_unlisted(now));
        if !out.is_empty() {
            out.extend(self.dispatch(now));
        }
        out
    }

    /// Runs still unlisted by their worker after the grace: it no longer
    /// runs them (it restarted).
    pub(super) fn requeue_unlisted(&mut self, now: Now) -> Vec<Publish> {
        let jobs = &self.jobs;
        self.unlisted.retain(|(id, w), _| {
            jobs.get(id).is_some_and(|j| {
                if j.is_mesh_mode {
                    return j
                        .chunks
                        .iter()
                        .any(|c| c.state == JobState::Processing && c.worker_id == *w);
                }
                j.state == JobState::Processing
                    && j.settling_since.is_none()
                    && j.worker_id.as_deref() == Some(w.as_str())
            })
        });
        let due: Vec<(Uuid, String)> = self
            .unlisted
            .iter()
            .filter(|(_, since)| now.ms >= since.saturating_add(UNLISTED_GRACE_MS))
            .map(|(key, _)| key.clone())
            .collect();
        let mut out = Vec::new();
        for (job_id, worker_id) in due {
            self.unlisted.remove(&(job_id, worker_id.clone()));
            let Some(job) = self.jobs.get(&job_id).cloned() else {
                continue;
            };
            let reason = format!("worker {worker_id} no longer runs the job (did it restart?)");
            if job.is_mesh_mode {
                let attempts: Vec<u32> = job
                    .chunks
                    .iter()
                    .filter(|c| c.state == JobState::Processing && c.worker_id == worker_id)
                    .map(|c| c.attempt)
                    .collect();
                for attempt in attempts {
                    if let Some(job) = self.jobs.get(&job_id).cloned() {
                        out.extend(self.lose_chunk(job, attempt, reason.clone(), true, now));
                    }
                }
            } else {
                out.extend(self.requeue(job, reason, true, now));
            }
        }
        out
    }

    /// A worker offline for `registry.forget_after_s`: its retained topics
    /// are cleared and Home Assistant is told to remove its device.
    pub(super) fn forget_worker(&mut self, worker_id: &str) -> Vec<Publish> {
        tracing::info!(
            worker_id,
            "worker {worker_id} forgotten: offline for longer than registry.forget_after_s"
        );
        let clear = |topic: String| Publish {
            topic,
            payload: Vec::new(),
            retain: true,
        };
        let mut out = vec![
            clear(self.topics.worker_heartbeat(worker_id)),
            clear(self.topics.worker_availability(worker_id)),
            clear(self.topics.worker_job(worker_id)),
        ];
        if let Some(ha) = &mut self.ha {
            out.push(ha.forgotten(worker_id));
        }
        out
    }
}
