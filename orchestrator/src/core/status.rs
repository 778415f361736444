//! What a worker says about a run: its statuses on
//! `.../jobs/{job_id}/status`.

use super::*;

impl Core {
    /// A message on `.../jobs/{job_id}/status`.
    pub fn on_status(&mut self, topic_job_id: &str, payload: &[u8], now: Now) -> Vec<Publish> {
        self.atomically(|core| core.take_status(topic_job_id, payload, now))
    }

    pub(super) fn take_status(
        &mut self,
        topic_job_id: &str,
        payload: &[u8],
        now: Now,
    ) -> Vec<Publish> {
        if payload.is_empty() {
            return Vec::new(); // a cleared topic
        }
        let Ok(job_id) = Uuid::parse_str(topic_job_id) else {
            tracing::debug!(topic_job_id, "status on a topic that names no job id");
            return Vec::new();
        };
        let status: JobStatus = match wire::decode(payload)
            .map_err(|e| e.to_string())
            .and_then(|s: JobStatus| s.validate().map(|_| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%job_id, "job status ignored: {e}");
                return Vec::new();
            }
        };
        if status.job_id != job_id {
            tracing::warn!(%job_id, "job status ignored: it names job {}", status.job_id);
            return Vec::new();
        }
        // Our own statuses come back to us: only workers publish these states.
        let Some(worker) = status.worker_id.clone() else {
            return Vec::new();
        };
        if !matches!(
            status.state,
            JobState::Processing | JobState::Completed | JobState::Failed | JobState::Cancelled
        ) {
            return Vec::new();
        }
        let Some(mut job) = self.jobs.get(&job_id).cloned() else {
            return Vec::new();
        };
        if job.is_mesh_mode {
            tracing::warn!(%job_id, worker_id = %worker, "job status refused: job {job_id} is split into chunks, whose workers report on .../jobs/{job_id}/chunks/<attempt>");
            return Vec::new();
        }
        let current = job.is_running()
            && job.worker_id.as_deref() == Some(worker.as_str())
            && status.attempt == Some(job.attempt);
        if !current {
            if job.worker_id.as_deref() == Some(worker.as_str())
                && status.attempt == Some(job.attempt)
            {
                // The holder says again what it said (a retained status read
                // again, its final statuses sent again after a reconnection).
                tracing::debug!(%job_id, worker_id = %worker, "job status {} already taken", status.state.as_str());
            } else {
                tracing::info!(
                    %job_id,
                    worker_id = %worker,
                    "job status {} ignored: job {job_id} is {} on {} (attempt {}), not worker {worker}'s attempt {}",
                    status.state.as_str(),
                    job.state.as_str(),
                    job.worker_id.as_deref().unwrap_or("no worker"),
                    job.attempt,
                    status.attempt.map_or("none".to_string(), |a| a.to_string()),
                );
            }
            let mut out = Vec::new();
            if status.state == JobState::Processing {
                out.push(self.fence(&worker, job_id, status.attempt));
            }
            // Put the truth back on the retained topic.
            if job.state != JobState::Processing && status.state != job.state {
                out.push(self.status_publish(&job, now));
            }
            return out;
        }
        job.updated_at = now.ms;
        let mut out = Vec::new();
        match status.state {
            JobState::Processing => {
                let became = job.state != JobState::Processing;
                let resume_moved =
                    status.segments_done.is_some() && status.segments_done != job.segments_done;
                job.state = JobState::Processing;
                job.started_at.get_or_insert(now.ms);
                if job.processing_since.is_none() {
                    job.processing_since = status.timestamp.or(Some(now.ms));
                }
                job.progress = status.progress.clamp(0.0, 100.0);
                job.fps = status.fps;
                job.speed = status.speed;
                job.eta_s = status.eta_s;
                if status.stream_url.is_some() {
                    job.stream_url = status.stream_url.clone();
                }
                if let Some(served) = status.served_segment.filter(|s| *s < wire::MAX_SEGMENTS) {
                    job.served = Some(job.served.map_or(served, |s| s.max(served)));
                }
                if let Some(total) = job.total_segments.filter(|t| *t > 0) {
                    // A run that fills holes: progress is the share of the
                    // job's segments that exist.
                    job.progress = job.progress.max(self.share_done(&job, total));
                }
                if let (Some(n), Some(t)) = (status.segments_done, status.resume_time) {
                    job.segments_done = Some(n);
                    job.resume_time = Some(t);
                }
                if became {
                    tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, "job processing");
                }
                if became || resume_moved {
                    self.save(job);
                } else {
                    self.touch(job);
                }
            }
            JobState::Completed => {
                if status.stream_url.is_some() {
                    job.stream_url = status.stream_url.clone();
                }
                tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, "run completed");
                if job.run_to.is_none() {
                    // This run went to the end of the source.
                    let end = status
                        .segments_done
                        .filter(|n| *n >= job.run_from && *n < wire::MAX_SEGMENTS)
                        .unwrap_or(job.run_next);
                    if end > 0 {
                        job.total_segments = Some(end);
                    }
                }
                // The source ends where this run was to start.
                let at_the_end = job.run_to.is_none()
                    && job.run_from > 0
                    && status.segments_done == Some(job.run_from);
                if !at_the_end
                    && job.run_next == job.run_from
                    && status.segments_done <= Some(job.run_from)
                {
                    // Nothing came of it: a failed run, or this would loop.
                    let reason = format!(
                        "worker {worker} finished a run of job {job_id} without writing segment {}",
                        job.run_from
                    );
                    out.extend(self.requeue(job, reason, true, now));
                } else {
                    job.settling_since = Some(now.ms);
                    out.extend(self.settle(job, now));
                }
                out.extend(self.dispatch(now));
            }
            JobState::Cancelled => {
                job.state = JobState::Cancelled;
                job.speed = None;
                job.eta_s = None;
                job.finished_at = Some(now.ms);
                tracing::info!(%job_id, worker_id = %worker, "job cancelled on the worker");
                self.count_final(&job);
                self.save(job);
                out.extend(self.dispatch(now));
            }
            JobState::Failed => {
                let error = status.error.clone().unwrap_or_else(|| {
                    format!("worker {worker} reported a failure without a reason")
                });
                match status.error_kind {
                    Some(ErrorKind::Input) => {
                        job.state = JobState::Failed;
                        job.error = Some(error.clone());
                        job.error_kind = Some(ErrorKind::Input);
                        job.speed = None;
                        job.eta_s = None;
                        job.finished_at = Some(now.ms);
                        tracing::warn!(%job_id, worker_id = %worker, "job failed (input, no retry): {error}");
                        self.count_final(&job);
                        self.save(job.clone());
                        out.push(self.status_publish(&job, now));
                    }
                    Some(ErrorKind::Busy) => {
                        job.refused_by = Some(worker.clone());
                        out.extend(self.requeue(job, error, false, now));
                    }
                    // Handed back by a worker that was stopped: no failure.
                    Some(ErrorKind::Shutdown) => out.extend(self.requeue(job, error, false, now)),
                    _ => out.extend(self.requeue(job, error, true, now)),
                }
                out.extend(self.dispatch(now));
            }
            JobState::Queued | JobState::Assigned => {}
        }
        out
    }
}
