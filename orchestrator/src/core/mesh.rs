//! Split jobs (`is_mesh_mode`): one job run in chunks by several workers at
//! once, on the segment map and frame grid every job has.
//!
//! A chunk is a run of whole segments on one worker, named by its attempt
//! number (unique in the job). Chunks are cut by `chunks::next_chunk` when a
//! worker is free: the first one before anything is known (like a plain
//! job's run, but short), the others once the first run's first segment
//! is on the playlist (its report brings the job's grid and length). Every chunk uses the
//! job's grid and one encoder, so the parts join like the runs of a moved
//! plain job. A worker reports a chunk on `.../jobs/{id}/chunks/{attempt}`;
//! the job's own status topic is the orchestrator's, summing the chunks up.
//! A chunk that fails or whose worker is lost leaves its missing segments to
//! the next chunk; the job is complete when every segment is held.

use std::time::Duration;

use transcode_common::wire::{self, ErrorKind, JobState, JobStatus, H264_ENCODERS};
use uuid::Uuid;

use super::{Core, Now, Publish};
use crate::chunks::{self, Plan};
use crate::job::{Chunk, Job};
use crate::segments::Segments;

/// How long a chunk that said it completed waits for its last segment
/// reports before its missing segments are left to another chunk.
const SETTLE_MS: u64 = 3_000;
/// Finished chunks kept in the job's record and status, besides the
/// running ones.
const KEEP_FINISHED: usize = 48;
/// The job's summed-up status is published at most this often while only
/// progress changes.
const STATUS_EVERY: Duration = Duration::from_secs(1);

mod reports;

impl Core {
    /// Whether a split job can take another chunk now, and which.
    pub(super) fn next_chunk(&self, job: &Job, workers: usize) -> Option<(u64, Option<u64>)> {
        let active = job.chunks.iter().filter(|c| c.is_active()).count();
        // Later chunks wait for the first segment on the playlist: every
        // chunk must cut on the job's grid, which its report brings, and
        // until the viewer has it no other encode should compete with it
        // (two workers may share a machine's cores).
        if (job.grid.is_none() || job.listed == 0) && active > 0 {
            return None;
        }
        let claimed: Vec<(u64, Option<u64>)> = job
            .chunks
            .iter()
            .filter(|c| c.is_active())
            .map(|c| (c.next_segment, c.end_segment))
            .collect();
        let empty = Segments::new();
        let segs = self.segments.get(&job.job_id).unwrap_or(&empty);
        chunks::next_chunk(
            segs,
            |s| self.available(s),
            &Plan {
                claimed: &claimed,
                // A job that runs again for its holes starts short again.
                order: job.chunks.iter().filter(|c| c.error.is_none()).count(),
                workers,
                segment_seconds: job
                    .grid
                    .map(|g| g.segment_seconds())
                    .unwrap_or(chunks::DEFAULT_SEGMENT_SECONDS),
                estimate: job.segments_estimate,
                total: job.total_segments,
                priority: job.priority(),
            },
        )
    }

    /// The encoder every chunk of a split job uses: the best one that every
    /// online worker proved, else the best of the worker taking the first
    /// chunk.
    fn mesh_encoder(&self, first_worker: &str) -> Option<String> {
        let proved: Vec<Vec<String>> = self
            .registry
            .with_heartbeats()
            .filter(|(hb, online)| *online && !hb.encoders.is_empty())
            .map(|(hb, _)| hb.encoders.clone())
            .collect();
        let mine = self.registry.heartbeat(first_worker)?.encoders.clone();
        H264_ENCODERS
            .iter()
            .find(|e| {
                proved.iter().all(|p| p.iter().any(|x| x == *e)) && mine.iter().any(|x| x == *e)
            })
            .or_else(|| H264_ENCODERS.iter().find(|e| mine.iter().any(|x| x == *e)))
            .map(|e| e.to_string())
    }

    /// Whether a worker may take a chunk of this job: it runs none of it now
    /// and has the job's encoder.
    pub(super) fn may_take_chunk(&self, job: &Job, worker: &str) -> bool {
        if job
            .chunks
            .iter()
            .any(|c| c.is_running() && c.worker_id == worker)
        {
            return false;
        }
        match (&job.encoder, self.registry.heartbeat(worker)) {
            (Some(e), Some(hb)) if !hb.encoders.is_empty() => hb.encoders.contains(e),
            _ => true,
        }
    }

    /// Gives `worker` the next chunk of a split job. `None` when there is
    /// none to give.
    pub(super) fn assign_chunk(
        &mut self,
        job_id: Uuid,
        worker: &str,
        workers: usize,
        now: Now,
    ) -> Option<Vec<Publish>> {
        let mut job = self.jobs.get(&job_id)?.clone();
        let (first, end) = self.next_chunk(&job, workers)?;
        if job.encoder.is_none() {
            job.encoder = self.mesh_encoder(worker);
        }
        job.attempt += 1;
        let chunk = Chunk::new(job.attempt, worker, first, end, now.ms);
        let mut assignment = job.chunk_assignment(&chunk);
        self.attach_source(&mut assignment);
        job.chunks.push(chunk);
        if !job.workers.iter().any(|w| w == worker) {
            job.workers.push(worker.to_string());
        }
        job.worker_id = Some(worker.to_string());
        if job.state == JobState::Queued {
            self.metrics
                .dispatch_latency
                .observe(now.ms.saturating_sub(job.queued_at) as f64 / 1000.0);
        }
        tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, first_segment = first, end_segment = ?end, "chunk assigned");
        let mut out = vec![Publish {
            topic: self.topics.worker_jobs(worker),
            payload: wire::encode(&assignment),
            retain: false,
        }];
        out.extend(self.mesh_changed(job, now));
        Some(out)
    }

    /// Sums a split job up from its chunks, stores it and publishes its
    /// status.
    fn mesh_changed(&mut self, mut job: Job, now: Now) -> Vec<Publish> {
        self.mesh_sum_up(&mut job, now);
        job.updated_at = now.ms;
        self.mesh_status_at.insert(job.job_id, now.instant);
        self.save(job.clone());
        vec![self.status_publish(&job, now)]
    }

    /// The job's state, progress, speed and ETA from its chunks and map.
    pub(super) fn mesh_sum_up(&self, job: &mut Job, now: Now) {
        // Running first, then the last finished ones.
        job.chunks
            .sort_by_key(|c| (!c.is_active(), c.first_segment, c.attempt));
        // The oldest finished chunks go first (their attempts are lowest).
        let mut finished: Vec<u32> = job
            .chunks
            .iter()
            .filter(|c| !c.is_active())
            .map(|c| c.attempt)
            .collect();
        if finished.len() > KEEP_FINISHED {
            finished.sort_unstable();
            let cutoff = finished[finished.len() - KEEP_FINISHED - 1];
            job.chunks.retain(|c| c.is_active() || c.attempt > cutoff);
        }
        if job.state.is_final() {
            return;
        }
        let processing = job
            .chunks
            .iter()
            .any(|c| c.state == JobState::Processing || (c.is_active() && !c.is_running()));
        let assigned = job.chunks.iter().any(|c| c.state == JobState::Assigned);
        let before = job.state;
        job.state = if processing {
            JobState::Processing
        } else if assigned {
            JobState::Assigned
        } else {
            JobState::Queued
        };
        if job.state == JobState::Queued && before != JobState::Queued {
            job.queued_at = now.ms;
        }
        if job.state == JobState::Processing {
            job.started_at.get_or_insert(now.ms);
        }
        let running: Vec<&Chunk> = job.chunks.iter().filter(|c| c.is_running()).collect();
        job.fps = running.iter().map(|c| c.fps).sum();
        let speeds: Vec<f64> = running.iter().filter_map(|c| c.speed).collect();
        job.speed = (!speeds.is_empty()).then(|| speeds.iter().sum());
        if let Some(total) = job
            .total_segments
            .or(job.segments_estimate)
            .filter(|t| *t > 0)
        {
            job.progress = self.share_done(job, total);
            let have = (job.progress / 100.0 * total as f64).round() as u64;
            job.eta_s = job.grid.filter(|_| job.fps > 0.0).map(|g| {
                let frames = g
                    .first_frame_of(total)
                    .saturating_sub(g.first_frame_of(have));
                (frames as f64 / job.fps).round()
            });
        }
        job.segments_done = self
            .segments
            .get(&job.job_id)
            .map(crate::segments::contiguous);
    }

    /// A chunk ended without its segments (failed, lost, refused): what
    /// it did not write goes to the next chunk. A failed run counts against
    /// `max_attempts`.
    pub(super) fn lose_chunk(
        &mut self,
        mut job: Job,
        attempt: u32,
        reason: String,
        counts: bool,
        now: Now,
    ) -> Vec<Publish> {
        let job_id = job.job_id;
        if let Some(c) = job.chunk_mut(attempt) {
            self.unlisted.remove(&(job_id, c.worker_id.clone()));
            c.state = JobState::Failed;
            c.error = Some(reason.clone());
            c.fps = 0.0;
            c.speed = None;
            c.settling_since = None;
        }
        if counts {
            job.failures += 1;
        }
        if job.failures >= self.settings.max_attempts {
            let error = format!(
                "gave up after {} failed runs; the last: {reason}",
                job.failures
            );
            return self.mesh_fail(job, error, ErrorKind::Worker, now);
        }
        self.metrics.requeues += 1;
        tracing::warn!(%job_id, attempt, "chunk lost; its missing segments go to the next chunk: {reason}");
        self.mesh_changed(job, now)
    }

    /// The whole split job failed: every chunk still running stops.
    fn mesh_fail(
        &mut self,
        mut job: Job,
        error: String,
        kind: ErrorKind,
        now: Now,
    ) -> Vec<Publish> {
        let mut out = self.stop_chunks(&mut job, |_| true);
        tracing::warn!(job_id = %job.job_id, "job failed: {error}");
        job.state = JobState::Failed;
        job.error = Some(error);
        job.error_kind = Some(kind);
        job.finished_at = Some(now.ms);
        job.leave_run(now.ms);
        self.count_final(&job);
        out.extend(self.mesh_changed(job, now));
        out
    }

    /// Chunks that said they completed: done once their segments are in
    /// the map (their last reports travel on another topic), and the job
    /// with them once every segment is there.
    pub(super) fn settle_chunks(&mut self, mut job: Job, now: Now) -> Vec<Publish> {
        let job_id = job.job_id;
        let mut out = Vec::new();
        let total = job.total_segments;
        let mut failed = Vec::new();
        for c in job.chunks.iter_mut().filter(|c| c.settling_since.is_some()) {
            let end = match (c.end_segment, total) {
                (Some(e), Some(t)) => Some(e.min(t)),
                (e, t) => e.or(t),
            };
            let own_missing = end.is_none_or(|e| c.next_segment < e);
            let waited = c
                .settling_since
                .is_some_and(|t| now.ms >= t.saturating_add(SETTLE_MS));
            if own_missing && !waited {
                continue;
            }
            c.settling_since = None;
            if c.next_segment == c.first_segment && total != Some(c.first_segment) {
                failed.push((c.attempt, c.worker_id.clone()));
            }
        }
        // Chunks past the end of the source have nothing to do.
        if let Some(t) = total {
            out.extend(self.stop_chunks(&mut job, |c| c.is_running() && c.first_segment >= t));
        }
        for (attempt, worker) in failed {
            let reason = format!(
                "worker {worker} finished chunk {attempt} without a segment the orchestrator could take (see its log for refused segment reports)"
            );
            out.extend(self.lose_chunk(job.clone(), attempt, reason, true, now));
            match self.jobs.get(&job_id) {
                Some(j) if !j.state.is_final() => job = j.clone(),
                _ => return out,
            }
        }
        if self.is_complete(&job) {
            out.extend(self.stop_chunks(&mut job, |_| true));
            job.state = JobState::Completed;
            job.progress = 100.0;
            job.error = None;
            job.error_kind = None;
            job.finished_at = Some(now.ms);
            job.leave_run(now.ms);
            if let Some(total) = job.total_segments {
                job.listed = job.listed.max(total);
            }
            tracing::info!(%job_id, segments = ?job.total_segments, workers = ?job.workers, "job completed");
            self.count_final(&job);
        }
        out.extend(self.mesh_changed(job, now));
        out
    }

    /// Ends the job's active chunks that `which` picks; those still
    /// running are told to stop, silently.
    fn stop_chunks(&self, job: &mut Job, which: impl Fn(&Chunk) -> bool) -> Vec<Publish> {
        let mut out = Vec::new();
        for c in job.chunks.iter_mut().filter(|c| c.is_active() && which(c)) {
            if c.is_running() {
                tracing::info!(job_id = %job.job_id, worker_id = %c.worker_id, attempt = c.attempt, "chunk no longer needed; stopping it");
                out.push(self.stop_message(&c.worker_id, job.job_id, Some(c.attempt), true));
            }
            c.state = JobState::Cancelled;
            c.settling_since = None;
        }
        out
    }

    /// Lost, stalled and never-started chunks, and settling ones whose wait
    /// is over.
    pub(super) fn mesh_tick(
        &mut self,
        now: Now,
        boot_grace_over: bool,
        stall_watch: bool,
    ) -> Vec<Publish> {
        let stall_ms = self.settings.stall_timeout.as_millis() as u64;
        let assign_ms = self.settings.assign_timeout.as_millis() as u64;
        // (job, attempt, why, fence the worker, counts as a failed run)
        let mut lost: Vec<(Uuid, u32, String, Option<String>, bool)> = Vec::new();
        let mut settling = Vec::new();
        for job in self
            .jobs
            .values()
            .filter(|j| j.is_mesh_mode && !j.state.is_final())
        {
            for c in &job.chunks {
                if c.settling_since.is_some() {
                    settling.push(job.job_id);
                }
                if !c.is_running() {
                    continue;
                }
                let worker = &c.worker_id;
                let started = c.state == JobState::Processing;
                let why = match self.registry.is_online(worker) {
                    Some(false) => Some((format!("worker {worker} was lost"), None, started)),
                    None if boot_grace_over => Some((
                        format!(
                            "worker {worker} did not come back after the orchestrator restarted"
                        ),
                        None,
                        started,
                    )),
                    _ if started
                        && stall_watch
                        && now.ms > c.updated_at.saturating_add(stall_ms) =>
                    {
                        Some((
                            format!(
                                "worker {worker} sent no progress for {} s (stalled)",
                                self.settings.stall_timeout.as_secs()
                            ),
                            Some(worker.clone()),
                            true,
                        ))
                    }
                    _ if c.state == JobState::Assigned
                        && now.ms > c.assigned_at.saturating_add(assign_ms) =>
                    {
                        Some((
                            format!(
                                "worker {worker} did not start chunk {} within {} s",
                                c.attempt,
                                self.settings.assign_timeout.as_secs()
                            ),
                            Some(worker.clone()),
                            true,
                        ))
                    }
                    _ => None,
                };
                if let Some((reason, fence, counts)) = why {
                    lost.push((job.job_id, c.attempt, reason, fence, counts));
                }
            }
        }
        let mut out = Vec::new();
        for (job_id, attempt, reason, fence, counts) in lost {
            if let Some(w) = fence {
                out.push(self.fence(&w, job_id, Some(attempt)));
            }
            let Some(job) = self
                .jobs
                .get(&job_id)
                .filter(|j| !j.state.is_final())
                .cloned()
            else {
                continue;
            };
            out.extend(self.lose_chunk(job, attempt, reason, counts, now));
        }
        settling.dedup();
        for job_id in settling {
            if let Some(job) = self
                .jobs
                .get(&job_id)
                .filter(|j| !j.state.is_final())
                .cloned()
            {
                out.extend(self.settle_chunks(job, now));
            }
        }
        out
    }
}
