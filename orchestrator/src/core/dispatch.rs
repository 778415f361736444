//! Queued jobs to the best free workers, and runs back to the queue.

use super::*;

impl Core {
    /// Back to the queue (ahead of newer jobs: it keeps its place), or
    /// failed for good once `max_attempts` runs failed.
    pub(super) fn requeue(
        &mut self,
        mut job: Job,
        reason: String,
        counts: bool,
        now: Now,
    ) -> Vec<Publish> {
        if counts {
            job.failures += 1;
        }
        job.leave_run(now.ms);
        if job.failures >= self.settings.max_attempts {
            job.state = JobState::Failed;
            job.error = Some(format!(
                "gave up after {} failed runs; the last: {reason}",
                job.failures
            ));
            job.error_kind = Some(ErrorKind::Worker);
            job.finished_at = Some(now.ms);
            tracing::warn!(job_id = %job.job_id, "job failed for good: {reason}");
            self.count_final(&job);
        } else {
            self.metrics.requeues += 1;
            job.queued_at = now.ms;
            job.state = JobState::Queued;
            job.error = Some(format!("requeued: {reason}"));
            job.error_kind = None;
            job.stream_url = None;
            tracing::warn!(job_id = %job.job_id, priority = job.priority(), "job requeued: {reason}");
        }
        self.save(job.clone());
        vec![self.status_publish(&job, now)]
    }

    /// Sends queued jobs, oldest first, to the best workers with a free
    /// slot; stops at the first job nobody can take (first in, first out).
    /// A split job takes every free worker it can give a chunk, in its turn,
    /// while it runs too.
    pub(super) fn dispatch(&mut self, now: Now) -> Vec<Publish> {
        if self.store_fault.is_some() {
            // Nothing is given out that could not be written down.
            return Vec::new();
        }
        let mut queued: Vec<(u64, Uuid)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued || (j.is_mesh_mode && !j.state.is_final()))
            .map(|j| (j.seq, j.job_id))
            .collect();
        queued.sort();
        let mut out = Vec::new();
        'jobs: for (_, job_id) in queued {
            loop {
                let candidates = self.candidates();
                let Some(mut job) = self.jobs.get(&job_id).cloned() else {
                    continue 'jobs;
                };
                // A worker that refused the job is not asked again until
                // its next heartbeat.
                let refused = job.refused_by.as_deref();
                let willing: Vec<Candidate> = candidates
                    .iter()
                    .filter(|c| Some(c.heartbeat.worker_id.as_str()) != refused)
                    .cloned()
                    .collect();
                if job.is_mesh_mode {
                    let can_take = |c: &&Candidate| {
                        c.online && self.may_take_chunk(&job, &c.heartbeat.worker_id)
                    };
                    let able = candidates.iter().filter(can_take).count();
                    let takers: Vec<Candidate> = willing.iter().filter(can_take).cloned().collect();
                    let Some(worker) = scheduler::pick(&takers).map(str::to_string) else {
                        if job.state == JobState::Queued {
                            break 'jobs;
                        }
                        continue 'jobs;
                    };
                    // Workers that could share the job: those that run a
                    // chunk of it and those free to take one.
                    let sharing = able + job.chunks.iter().filter(|c| c.is_running()).count();
                    match self.assign_chunk(job_id, &worker, sharing, now) {
                        Some(published) => out.extend(published),
                        None => {
                            if job.chunks.iter().all(|c| !c.is_active()) {
                                // Nothing left to run and nothing running.
                                out.extend(self.settle_chunks(job, now));
                            }
                            continue 'jobs;
                        }
                    }
                    continue;
                }
                // A requeued job goes to another worker than the one that lost,
                // refused or failed it, unless nobody else can take it.
                let avoid = job.workers.last().map(String::as_str);
                let others: Vec<Candidate> = willing
                    .iter()
                    .filter(|c| Some(c.heartbeat.worker_id.as_str()) != avoid)
                    .cloned()
                    .collect();
                let chosen = scheduler::pick(&others).or_else(|| scheduler::pick(&willing));
                let Some(worker) = chosen.map(str::to_string) else {
                    break 'jobs;
                };
                let Some((from, count)) = self.plan(&job) else {
                    // Every segment is there: nothing left to run.
                    job.settling_since = Some(now.ms);
                    out.extend(self.settle(job, now));
                    continue 'jobs;
                };
                job.run_from = from;
                job.run_to = count.map(|c| from + c);
                job.run_next = from;
                job.settling_since = None;
                job.attempt += 1;
                job.state = JobState::Assigned;
                job.worker_id = Some(worker.clone());
                job.assigned_at = Some(now.ms);
                job.updated_at = now.ms;
                job.progress = job.progress.min(100.0);
                job.workers.push(worker.clone());
                self.metrics
                    .dispatch_latency
                    .observe(now.ms.saturating_sub(job.queued_at) as f64 / 1000.0);
                let mut assignment = job.assignment();
                self.attach_source(&mut assignment);
                tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, first_segment = job.run_from, end_segment = ?job.run_to, "job assigned");
                self.save(job.clone());
                out.push(Publish {
                    topic: self.topics.worker_jobs(&worker),
                    payload: wire::encode(&assignment),
                    retain: false,
                });
                out.push(self.status_publish(&job, now));
                continue 'jobs;
            }
        }
        out
    }

    /// Every worker with a heartbeat, with how many jobs it holds: those we
    /// gave it and those it says it runs (jobs sent by hand count too: a
    /// busy worker refuses).
    pub(super) fn candidates(&self) -> Vec<Candidate<'_>> {
        let mut held: HashMap<&str, HashSet<Uuid>> = HashMap::new();
        for j in self.jobs.values() {
            if j.is_mesh_mode {
                for c in j.chunks.iter().filter(|c| c.is_running()) {
                    held.entry(c.worker_id.as_str())
                        .or_default()
                        .insert(j.job_id);
                }
            } else if j.is_running() {
                if let Some(w) = j.worker_id.as_deref() {
                    held.entry(w).or_default().insert(j.job_id);
                }
            }
        }
        self.registry
            .with_heartbeats()
            .map(|(hb, online)| {
                let mut ids = held.get(hb.worker_id.as_str()).cloned().unwrap_or_default();
                // Our own jobs count where we gave them: a run that just
                // ended is still in the heartbeat made before its end. One
                // we cancelled is the exception: its worker is still
                // stopping FFmpeg, and says so in every heartbeat until the
                // run is over (it sends one then).
                ids.extend(
                    hb.active_jobs
                        .iter()
                        .filter(|id| match self.jobs.get(id) {
                            None => true,
                            Some(j) => self.stopping_on(j, &hb.worker_id),
                        })
                        .copied(),
                );
                Candidate {
                    heartbeat: hb,
                    online,
                    assigned: ids.len() as u32,
                }
            })
            .collect()
    }

    /// Whether the job was cancelled while it ran on `worker_id` (its
    /// worker may still be stopping it).
    fn stopping_on(&self, job: &Job, worker_id: &str) -> bool {
        if job.state != JobState::Cancelled {
            return false;
        }
        if job.is_mesh_mode {
            return job.chunks.iter().any(|c| c.worker_id == worker_id);
        }
        job.worker_id.as_deref() == Some(worker_id)
    }
}
