//! What workers report about their chunks, on
//! `.../jobs/{job_id}/chunks/{attempt}`: a chunk's start, progress and end,
//! summed up into the split job's own status.

use super::*;

impl Core {
    /// A message on `.../jobs/{job_id}/chunks/{attempt}`.
    pub fn on_chunk_status(
        &mut self,
        topic_job_id: &str,
        topic_attempt: &str,
        payload: &[u8],
        now: Now,
    ) -> Vec<Publish> {
        self.atomically(|core| core.take_chunk_status(topic_job_id, topic_attempt, payload, now))
    }

    fn take_chunk_status(
        &mut self,
        topic_job_id: &str,
        topic_attempt: &str,
        payload: &[u8],
        now: Now,
    ) -> Vec<Publish> {
        if payload.is_empty() {
            return Vec::new(); // a cleared topic
        }
        let (Ok(job_id), Ok(attempt)) =
            (Uuid::parse_str(topic_job_id), topic_attempt.parse::<u32>())
        else {
            tracing::warn!(
                topic_job_id,
                topic_attempt,
                "chunk status refused: its topic names no job id and attempt number"
            );
            return Vec::new();
        };
        let status: JobStatus = match wire::decode(payload)
            .map_err(|e| e.to_string())
            .and_then(|s: JobStatus| s.validate().map(|_| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%job_id, attempt, "chunk status refused: {e}");
                return Vec::new();
            }
        };
        let Some(worker) = status.worker_id.clone() else {
            tracing::warn!(%job_id, attempt, "chunk status refused: it names no worker");
            return Vec::new();
        };
        if status.job_id != job_id || status.attempt != Some(attempt) {
            tracing::warn!(%job_id, attempt, worker_id = %worker, "chunk status refused: it names job {} attempt {:?}, not those of its topic", status.job_id, status.attempt);
            return Vec::new();
        }
        let Some(mut job) = self.jobs.get(&job_id).cloned() else {
            tracing::warn!(%job_id, attempt, worker_id = %worker, "chunk status refused: no such job");
            return Vec::new();
        };
        let Some(chunk) = job.chunks.iter().find(|c| c.attempt == attempt).cloned() else {
            if attempt > job.attempt || !job.is_mesh_mode {
                tracing::warn!(%job_id, attempt, worker_id = %worker, "chunk status refused: job {job_id} has no chunk {attempt}");
            }
            // (An old chunk's retained status, replayed after our restart.)
            if status.state == JobState::Processing {
                return vec![self.fence(&worker, job_id, Some(attempt))];
            }
            return Vec::new();
        };
        if chunk.worker_id != worker {
            tracing::warn!(%job_id, attempt, worker_id = %worker, "chunk status refused: worker {worker} does not hold chunk {attempt} of job {job_id} (worker {} does)", chunk.worker_id);
            return Vec::new();
        }
        if !chunk.is_running() || job.state.is_final() {
            // Said before (a replay), or the chunk moved on.
            if status.state == JobState::Processing && !chunk.is_active() {
                return vec![self.fence(&worker, job_id, Some(attempt))];
            }
            return Vec::new();
        }
        let Some(c) = job.chunk_mut(attempt) else {
            return Vec::new();
        };
        c.updated_at = now.ms;
        match status.state {
            JobState::Processing => {
                let became = c.state != JobState::Processing;
                c.state = JobState::Processing;
                c.progress = status.progress.clamp(0.0, 100.0);
                c.fps = if status.fps.is_finite() {
                    status.fps.max(0.0)
                } else {
                    0.0
                };
                c.speed = status.speed.filter(|s| s.is_finite() && *s >= 0.0);
                if c.processing_since.is_none() {
                    c.processing_since = status.timestamp.or(Some(now.ms));
                }
                if let Some(served) = status.served_segment.filter(|s| *s < wire::MAX_SEGMENTS) {
                    job.served = Some(job.served.map_or(served, |s| s.max(served)));
                }
                if became {
                    tracing::info!(%job_id, worker_id = %worker, attempt, "chunk processing");
                    return self.mesh_changed(job, now);
                }
                let due = self
                    .mesh_status_at
                    .get(&job_id)
                    .is_none_or(|t| now.instant.saturating_duration_since(*t) >= STATUS_EVERY);
                self.mesh_sum_up(&mut job, now);
                if due {
                    self.mesh_status_at.insert(job_id, now.instant);
                    let out = vec![self.status_publish(&job, now)];
                    self.touch(job);
                    return out;
                }
                self.touch(job);
                Vec::new()
            }
            JobState::Completed => {
                c.state = JobState::Completed;
                c.progress = 100.0;
                c.fps = 0.0;
                c.speed = None;
                c.settling_since = Some(now.ms);
                let (first, end) = (c.first_segment, c.end_segment);
                tracing::info!(%job_id, worker_id = %worker, attempt, "chunk completed");
                // A run that stopped short of its end found the end of the
                // source.
                if let Some(done) = status
                    .segments_done
                    .filter(|d| *d >= first && *d < wire::MAX_SEGMENTS)
                {
                    if end.is_none_or(|e| done < e) && done > 0 {
                        job.total_segments = Some(done);
                    }
                }
                let mut out = self.settle_chunks(job, now);
                out.extend(self.dispatch(now));
                out
            }
            JobState::Failed => {
                let error = status.error.clone().unwrap_or_else(|| {
                    format!("worker {worker} reported a failure without a reason")
                });
                let mut out = match status.error_kind {
                    Some(ErrorKind::Input) => self.mesh_fail(job, error, ErrorKind::Input, now),
                    Some(ErrorKind::Busy) => {
                        job.refused_by = Some(worker.clone());
                        self.lose_chunk(job, attempt, error, false, now)
                    }
                    Some(ErrorKind::Shutdown) => self.lose_chunk(job, attempt, error, false, now),
                    _ => self.lose_chunk(job, attempt, error, true, now),
                };
                out.extend(self.dispatch(now));
                out
            }
            JobState::Cancelled => {
                tracing::info!(%job_id, worker_id = %worker, attempt, "a chunk was cancelled on its worker; cancelling the job");
                c.state = JobState::Cancelled;
                c.settling_since = None;
                self.touch(job);
                self.cancel(job_id, now)
                    .map(|(_, out)| out)
                    .unwrap_or_default()
            }
            JobState::Queued | JobState::Assigned => Vec::new(),
        }
    }
}
