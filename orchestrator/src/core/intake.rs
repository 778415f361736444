//! Jobs coming in and going out by request: submissions (HTTP, MQTT,
//! `transcodectl`), invalid MQTT submissions, cancels, runs again.

use super::*;

impl Core {
    /// A new job from HTTP or MQTT. Re-submitting the same request with the
    /// same id answers the existing job.
    pub fn submit(&mut self, req: JobRequest, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        self.atomically(|core| core.take_submission(req, now))
    }

    pub(super) fn take_submission(
        &mut self,
        req: JobRequest,
        now: Now,
    ) -> Result<(Job, Vec<Publish>), JobError> {
        req.validate().map_err(JobError::Invalid)?;
        let job_id = req.job_id.unwrap_or_else(Uuid::new_v4);
        if let Some(existing) = self.jobs.get(&job_id) {
            if existing.same_request(&req) {
                return Ok((existing.clone(), Vec::new()));
            }
            return Err(JobError::Conflict(format!(
                "job {job_id} already exists ({}) with other settings; leave job_id out to get a new one",
                existing.state.as_str()
            )));
        }
        let queued = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .count();
        if queued >= self.settings.max_queued {
            return Err(JobError::Full(format!(
                "the queue is full: {queued} jobs wait already (scheduler.max_queued_jobs); submit again when some have started"
            )));
        }
        self.check_source(&req.source_path)?;
        self.refuse_while_faulty()?;
        self.rejected.retain(|(id, _)| *id != job_id);
        let job = Job::from_request(&req, job_id, self.next_seq, now.ms);
        self.next_seq += 1;
        self.metrics.submitted += 1;
        self.save(job.clone());
        tracing::info!(%job_id, source = %job.source_path, "job queued");
        let mut out = vec![self.status_publish(&job, now)];
        out.extend(self.dispatch(now));
        let job = self.jobs.get(&job_id).cloned().unwrap_or(job);
        Ok((job, out))
    }

    /// An unusable submission on MQTT that carried a job id: answered with a
    /// `failed` status, cleared after the retention time. `later`: nothing
    /// was wrong with it (the store could not be written), so it names no
    /// kind of error and the same request may be sent again.
    pub fn reject(&mut self, job_id: Uuid, error: String, later: bool, now: Now) -> Vec<Publish> {
        if self.jobs.contains_key(&job_id) {
            return Vec::new();
        }
        let mut status = JobStatus::new(job_id, JobState::Failed);
        status.error = Some(error);
        status.error_kind = (!later).then_some(ErrorKind::Input);
        status.timestamp = Some(now.ms);
        self.rejected.retain(|(id, _)| *id != job_id);
        self.rejected.push_back((job_id, now.ms));
        while self.rejected.len() > MAX_REJECTED {
            self.rejected.pop_front();
        }
        vec![Publish {
            topic: self.topics.job_status(&job_id.to_string()),
            payload: wire::encode(&status),
            retain: true,
        }]
    }

    /// Cancels a job wherever it is.
    pub fn cancel(&mut self, job_id: Uuid, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        self.atomically(|core| core.take_cancel(job_id, now))
    }

    pub(super) fn take_cancel(
        &mut self,
        job_id: Uuid,
        now: Now,
    ) -> Result<(Job, Vec<Publish>), JobError> {
        let mut job = self
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or(JobError::NotFound(job_id))?;
        if job.state.is_final() {
            return Err(JobError::Conflict(format!(
                "job {job_id} is already {}",
                job.state.as_str()
            )));
        }
        let mut out = Vec::new();
        for c in job.chunks.iter_mut().filter(|c| c.is_active()) {
            if c.is_running() {
                out.push(self.stop_message(&c.worker_id, job_id, Some(c.attempt), false));
            }
            c.state = JobState::Cancelled;
            c.settling_since = None;
            c.fps = 0.0;
            c.speed = None;
        }
        if job.is_running() && !job.is_mesh_mode {
            if let Some(w) = &job.worker_id {
                out.push(self.stop_message(w, job_id, None, false));
            }
        }
        job.state = JobState::Cancelled;
        job.speed = None;
        job.eta_s = None;
        job.fps = 0.0;
        job.settling_since = None;
        job.finished_at = Some(now.ms);
        job.updated_at = now.ms;
        tracing::info!(%job_id, "job cancelled");
        self.count_final(&job);
        self.save(job.clone());
        out.push(self.status_publish(&job, now));
        out.extend(self.delete_outputs(job_id));
        out.extend(self.dispatch(now));
        Ok((job, out))
    }

    /// A finished job submitted again as a new job (the dashboard's
    /// "run again"): the old one stays in the history as it ended.
    pub fn run_again(&mut self, job_id: Uuid, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        let old = self.jobs.get(&job_id).ok_or(JobError::NotFound(job_id))?;
        if !old.state.is_final() {
            return Err(JobError::Conflict(format!(
                "job {job_id} is still {}; cancel it first or wait for it to end",
                old.state.as_str()
            )));
        }
        let request = old.request();
        let (job, out) = self.submit(request, now)?;
        tracing::info!(job_id = %job.job_id, from = %job_id, "job submitted again");
        Ok((job, out))
    }

    /// Cancels every job that runs on `worker` (Home Assistant's cancel
    /// button asks for it on the worker's stop topic).
    pub fn cancel_on(&mut self, worker: &str, now: Now) -> Vec<Publish> {
        self.atomically(|core| core.take_cancel_on(worker, now))
    }

    pub(super) fn take_cancel_on(&mut self, worker: &str, now: Now) -> Vec<Publish> {
        let ids: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| self.runs_on(j, worker))
            .map(|j| j.job_id)
            .collect();
        if ids.is_empty() {
            tracing::info!(worker_id = %worker, "stop request: the worker runs no job of ours");
        }
        let mut out = Vec::new();
        for id in ids {
            match self.cancel(id, now) {
                Ok((_, more)) => out.extend(more),
                Err(e) => tracing::warn!(job_id = %id, worker_id = %worker, "stop request: {e}"),
            }
        }
        out
    }
}
