//! The core's side of a job's stream: the segment map fed by the workers'
//! reports, the runs that fill what is missing, the playlist and the
//! redirects a player follows, and the output folders on the workers.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use transcode_common::wire::{
    self, JobState, OutputAction, OutputCommand, SegmentReport, MAX_SEGMENTS,
};
use uuid::Uuid;

use super::{Core, Now, Publish};
use crate::job::Job;
use crate::segments::{self, PlaylistInput, Seg, Segments};

/// Most encodings one job's segments may carry (each change is a
/// discontinuity on the playlist).
const MAX_ENCODINGS: usize = 16;
/// How long a run that said it completed waits for its last segment
/// reports (they travel on another topic) before its missing segments are
/// run again.
const SETTLE_MS: u64 = 3_000;
/// A job whose stream was fetched this recently is being watched.
const WATCHED_FOR: Duration = Duration::from_secs(5);
/// How often, at most, the holders of a watched job hear that it is
/// watched (they count it as a request for its files).
const KEEP_EVERY: Duration = Duration::from_secs(1);

/// What `GET /stream/{id}/index.m3u8` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaylistAnswer {
    Playlist(String),
    /// No segment yet: try again in this many seconds.
    NotYet(u64),
    /// The job ended without a segment.
    Gone,
    NotFound,
}

/// What `GET /stream/{id}/seg<N>.ts` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentAnswer {
    /// The worker that holds it.
    Redirect(String),
    /// Nobody holds it right now; it is being (or will be) encoded again.
    Wait,
    /// The job is over and its holder deleted the segment.
    Gone,
    NotFound,
}

impl Core {
    /// Whether a segment can be fetched now: its holder is online.
    pub(super) fn available(&self, seg: &Seg) -> bool {
        seg.holder
            .as_deref()
            .is_some_and(|h| self.registry.is_online(h) == Some(true))
    }

    /// The next run of a job: its first segment and how many it writes.
    pub(super) fn plan(&self, job: &Job) -> Option<(u64, Option<u64>)> {
        let empty = Segments::new();
        let segs = self.segments.get(&job.job_id).unwrap_or(&empty);
        segments::next_range(
            segs,
            |s| self.available(s),
            job.total_segments,
            job.priority(),
        )
    }

    /// Percent of a job's segments that can be had now.
    pub(super) fn share_done(&self, job: &Job, total: u64) -> f64 {
        let have = self
            .segments
            .get(&job.job_id)
            .map(|m| m.range(..total).filter(|(_, s)| self.available(s)).count())
            .unwrap_or(0);
        ((have as f64 / total as f64 * 1000.0).floor() / 10.0).min(99.9)
    }

    pub(super) fn is_complete(&self, job: &Job) -> bool {
        let Some(total) = job.total_segments.filter(|t| *t > 0) else {
            return false;
        };
        let Some(segs) = self.segments.get(&job.job_id) else {
            return false;
        };
        (0..total).all(|i| segs.get(&i).is_some_and(|s| self.available(s)))
    }

    /// A run said it completed: the job is complete when every segment is
    /// there; otherwise its own last reports may still be on their way, or
    /// the holes before it (lost with another worker) are run next.
    pub(super) fn settle(&mut self, mut job: Job, now: Now) -> Vec<Publish> {
        let job_id = job.job_id;
        if self.is_complete(&job) {
            job.state = JobState::Completed;
            job.progress = 100.0;
            job.fps = 0.0;
            job.speed = None;
            job.eta_s = None;
            job.error = None;
            job.error_kind = None;
            job.settling_since = None;
            job.finished_at = Some(now.ms);
            job.updated_at = now.ms;
            if let Some(total) = job.total_segments {
                job.listed = job.listed.max(total);
            }
            tracing::info!(%job_id, segments = ?job.total_segments, "job completed");
            self.count_final(&job);
            self.save(job.clone());
            return vec![self.status_publish(&job, now)];
        }
        let run_end = job.run_to.or(job.total_segments).unwrap_or(job.run_next);
        let own_missing = job.run_next < run_end;
        let waited = job
            .settling_since
            .is_some_and(|t| now.ms >= t.saturating_add(SETTLE_MS));
        if own_missing && !waited {
            self.save(job);
            return Vec::new();
        }
        if job.run_next == job.run_from && job.total_segments != Some(job.run_from) {
            // Not one of its segments could be taken: a failed run, or the
            // job would run again and again.
            let worker = job.worker_id.clone().unwrap_or_default();
            let reason = format!(
                "worker {worker} finished a run without a segment the orchestrator could take (see its log for refused segment reports)"
            );
            return self.requeue(job, reason, true, now);
        }
        // Holes remain: another run fills them. That is no failed run.
        let Some((from, count)) = self.plan(&job) else {
            return Vec::new();
        };
        let to = count
            .map(|c| (from + c).to_string())
            .unwrap_or("the end".into());
        tracing::info!(%job_id, from, to = %to, "segments missing (their holder was lost); queueing a run to encode them again");
        job.state = JobState::Queued;
        job.queued_at = now.ms;
        job.leave_run(now.ms);
        job.note = Some(format!(
            "encoding segments {from} to {to} again: the worker that held them was lost"
        ));
        self.save(job.clone());
        vec![self.status_publish(&job, now)]
    }

    /// Completed jobs that someone watches and whose segments a lost worker
    /// held run again for those segments: the viewer's requests wait for
    /// them instead of for a worker that may never come back.
    pub(super) fn repair_watched(&mut self, now: Now, boot_grace_over: bool) -> Vec<Publish> {
        let watched = |job_id: &Uuid| {
            self.viewed
                .get(job_id)
                .is_some_and(|(seen, _)| now.instant.saturating_duration_since(*seen) < WATCHED_FOR)
        };
        let lost_holder = |job: &Job| -> Option<String> {
            let total = job.total_segments?;
            self.segments
                .get(&job.job_id)?
                .range(..total)
                // Known to be offline: right after our own restart a worker
                // we have not heard from yet is not lost.
                .find_map(|(_, s)| {
                    s.holder
                        .clone()
                        .filter(|h| match self.registry.is_online(h) {
                            Some(online) => !online,
                            // Not heard of since our restart.
                            None => boot_grace_over,
                        })
                })
        };
        let due: Vec<(Job, String)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Completed && watched(&j.job_id))
            .filter_map(|j| lost_holder(j).map(|h| (j.clone(), h)))
            .collect();
        let mut out = Vec::new();
        for (mut job, holder) in due {
            tracing::warn!(job_id = %job.job_id, worker_id = %holder, "a watched job's segments were lost with their worker; encoding them again");
            job.state = JobState::Queued;
            job.queued_at = now.ms;
            job.updated_at = now.ms;
            job.finished_at = None;
            job.settling_since = None;
            // A repair is a new story: its runs count from zero.
            job.failures = 0;
            job.note = Some(format!(
                "encoding segments again for a viewer: worker {holder}, which held them, was lost"
            ));
            self.save(job.clone());
            out.push(self.status_publish(&job, now));
        }
        out
    }

    /// A message on `.../workers/{worker_id}/segments`.
    pub fn on_segments(&mut self, topic_worker: &str, payload: &[u8], now: Now) -> Vec<Publish> {
        self.atomically(|core| core.take_segments(topic_worker, payload, now))
    }

    fn take_segments(&mut self, topic_worker: &str, payload: &[u8], now: Now) -> Vec<Publish> {
        let report = match wire::decode::<SegmentReport>(payload)
            .map_err(|e| e.to_string())
            .and_then(|r| r.validate().map(|_| r))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(worker_id = topic_worker, "segment report refused: {e}");
                return Vec::new();
            }
        };
        let worker = report.worker_id.clone();
        let job_id = report.job_id;
        if worker != topic_worker {
            tracing::warn!(worker_id = topic_worker, %job_id, "segment report refused: it names worker {worker}, not the one whose topic it came on");
            return Vec::new();
        }
        let Some(mut job) = self.jobs.get(&job_id).cloned() else {
            tracing::warn!(worker_id = %worker, %job_id, "segment report refused: no such job (pruned or never submitted)");
            if report.inventory {
                // Output of a job we no longer list: it can go.
                return vec![self.output_command(&worker, job_id, OutputAction::Delete)];
            }
            return Vec::new();
        };
        if job.grid.is_some_and(|g| g != report.grid) {
            tracing::warn!(worker_id = %worker, %job_id, "segment report refused: its segments are cut on another frame grid ({:?}, the job's is {:?})", report.grid, job.grid);
            return Vec::new();
        }
        // The run the report comes from, if it is one of the job's now:
        // its first segment, end and next segment. A split job's chunk
        // reports until it settled.
        let run: Option<(u64, Option<u64>, u64)> = if job.is_mesh_mode {
            job.chunks
                .iter()
                .find(|c| c.attempt == report.attempt && c.worker_id == worker && c.is_active())
                .map(|c| (c.first_segment, c.end_segment, c.next_segment))
        } else {
            (job.worker_id.as_deref() == Some(worker.as_str())
                && report.attempt == job.attempt
                && matches!(job.state, JobState::Assigned | JobState::Processing))
            .then_some((job.run_from, job.run_to, job.run_next))
        };
        let current = run.is_some();
        if report.inventory && !job.workers.contains(&worker) {
            tracing::warn!(worker_id = %worker, %job_id, "segment inventory refused: worker {worker} never ran job {job_id}");
            return Vec::new();
        }
        if !job.encodings.contains(&report.encoding) && job.encodings.len() >= MAX_ENCODINGS {
            tracing::warn!(worker_id = %worker, %job_id, "segment report refused: job {job_id} already has {MAX_ENCODINGS} encodings");
            return Vec::new();
        }
        if !report.inventory && !current {
            if job.is_mesh_mode {
                tracing::warn!(worker_id = %worker, %job_id, attempt = report.attempt, "segment report refused: worker {worker} runs no chunk {} of job {job_id}", report.attempt);
            } else {
                tracing::warn!(worker_id = %worker, %job_id, attempt = report.attempt, "segment report refused: worker {worker} does not hold job {job_id} (attempt {} is current, on {})", job.attempt, job.worker_id.as_deref().unwrap_or("no worker"));
            }
            return Vec::new();
        }
        let mut segs = self.segments.get(&job_id).cloned().unwrap_or_default();
        if let (false, Some((from, to, next))) = (report.inventory, run) {
            if let Err(e) = segments::check_run_report(&segs, &report.segments, from, to, next) {
                tracing::warn!(worker_id = %worker, %job_id, "segment report refused: {e}");
                // A report was lost on the way: the worker's inventory
                // brings the map up to date.
                if matches!(e, segments::Refusal::OutOfOrder { .. }) {
                    return vec![self.output_command(&worker, job_id, OutputAction::Report)];
                }
                return Vec::new();
            }
        }
        let encoding = segments::encoding_index(&mut job.encodings, &report.encoding);
        let mut changed: BTreeSet<u64> = BTreeSet::new();
        let listed: HashSet<u64> = report.segments.iter().map(|s| s.index).collect();
        for s in &report.segments {
            if job.total_segments.is_some_and(|t| s.index >= t) {
                continue;
            }
            let take = match segs.get(&s.index) {
                None => true,
                Some(known) if known.holder.as_deref() == Some(worker.as_str()) => {
                    known.encoding != encoding || known.duration != s.duration
                }
                // A current run's segment replaces what was lost; an
                // inventory never takes one from a live holder.
                Some(known) => current || !self.available(known),
            };
            if take {
                segs.insert(
                    s.index,
                    Seg {
                        duration: s.duration,
                        holder: Some(worker.clone()),
                        encoding,
                    },
                );
                changed.insert(s.index);
            }
        }
        if report.inventory {
            // What the worker no longer lists, it no longer holds.
            let [from, to] = report.covers.unwrap_or([0, MAX_SEGMENTS]);
            // (A worker sends its inventory and its run reports in the
            // order it wrote them, on one topic: nothing here is older than
            // what we know.)
            let lost: Vec<u64> = segs
                .range(from..to.max(from))
                .filter(|(i, s)| {
                    s.holder.as_deref() == Some(worker.as_str()) && !listed.contains(i)
                })
                .map(|(i, _)| *i)
                .collect();
            for i in lost {
                if let Some(s) = segs.get_mut(&i) {
                    s.holder = None;
                    changed.insert(i);
                }
            }
            if !changed.is_empty() {
                tracing::info!(worker_id = %worker, %job_id, holds = listed.len(), changed = changed.len(), "segment inventory taken");
            }
        }
        if let Some((_, to, mut next)) = run {
            while segs.get(&next).is_some_and(|s| {
                s.holder.as_deref() == Some(worker.as_str()) && to.is_none_or(|t| next < t)
            }) {
                next += 1;
            }
            if job.is_mesh_mode {
                if let Some(c) = job.chunk_mut(report.attempt) {
                    c.next_segment = next;
                }
            } else {
                job.run_next = next;
            }
        }
        let grid_came = job.grid.is_none();
        if grid_came {
            // The first run's word on the job's length cuts a split job.
            job.segments_estimate = report.job_segments;
        }
        job.grid.get_or_insert(report.grid);
        let before = job.listed;
        job.listed = job.listed.max(segments::contiguous(&segs));
        if let Some(total) = job.total_segments {
            job.listed = job.listed.min(total.max(before));
        }
        if job.listed > before && before == 0 {
            tracing::info!(%job_id, worker_id = %worker, "first segment on the playlist");
        }
        self.save_segments(job_id, segs, changed);
        let settling = job.settling_since.is_some() && !job.state.is_final();
        self.save(job.clone());
        if job.is_mesh_mode && !job.state.is_final() {
            let mut out = Vec::new();
            if job.chunks.iter().any(|c| c.settling_since.is_some()) {
                out.extend(self.settle_chunks(job, now));
            }
            if grid_came || !out.is_empty() {
                // The other workers may start now that the grid is known.
                out.extend(self.dispatch(now));
            }
            return out;
        }
        if settling {
            let mut out = self.settle(job, now);
            out.extend(self.dispatch(now));
            return out;
        }
        Vec::new()
    }

    /// Asks every worker running a job for what it holds of it.
    pub(super) fn ask_inventories(&self) -> Vec<Publish> {
        let mut running: Vec<&Job> = self.jobs.values().filter(|j| j.is_running()).collect();
        running.sort_by_key(|j| j.seq);
        let mut out = Vec::new();
        for j in running {
            if j.is_mesh_mode {
                let workers: BTreeSet<&str> = j
                    .chunks
                    .iter()
                    .filter(|c| c.is_active())
                    .map(|c| c.worker_id.as_str())
                    .collect();
                for w in workers {
                    out.push(self.output_command(w, j.job_id, OutputAction::Report));
                }
            } else if let Some(w) = j.worker_id.as_deref() {
                out.push(self.output_command(w, j.job_id, OutputAction::Report));
            }
        }
        out
    }

    fn output_command(&self, worker: &str, job_id: Uuid, action: OutputAction) -> Publish {
        Publish {
            topic: self.topics.worker_outputs(worker),
            payload: wire::encode(&OutputCommand { job_id, action }),
            retain: false,
        }
    }

    /// Every worker that holds (or held) a segment of the job, and the one
    /// that runs it.
    fn holders(&self, job_id: Uuid) -> Vec<String> {
        let mut holders: BTreeSet<String> = self
            .segments
            .get(&job_id)
            .map(|m| m.values().filter_map(|s| s.holder.clone()).collect())
            .unwrap_or_default();
        if let Some(job) = self.jobs.get(&job_id) {
            holders.extend(job.worker_id.clone());
            holders.extend(
                job.chunks
                    .iter()
                    .filter(|c| c.is_active())
                    .map(|c| c.worker_id.clone()),
            );
        }
        holders.into_iter().collect()
    }

    /// Tells every holder to delete the job's output (cancelled, pruned).
    pub(super) fn delete_outputs(&self, job_id: Uuid) -> Vec<Publish> {
        self.holders(job_id)
            .iter()
            .map(|w| self.output_command(w, job_id, OutputAction::Delete))
            .collect()
    }

    /// Holders of a job someone watches through us hear it, so they keep
    /// its output while it is watched.
    pub(super) fn keep_watched_outputs(&mut self, now: Now) -> Vec<Publish> {
        let mut due = Vec::new();
        self.viewed.retain(|job_id, (seen, kept)| {
            let watched = now.instant.saturating_duration_since(*seen) < WATCHED_FOR;
            // Only views since the last notice count: the output's time
            // runs from the player's last request, not from ours.
            let fresh = kept.is_none_or(|k| {
                *seen > k && now.instant.saturating_duration_since(k) >= KEEP_EVERY
            });
            if watched && fresh {
                *kept = Some(now.instant);
                due.push(*job_id);
            }
            watched || now.instant.saturating_duration_since(*seen) < WATCHED_FOR * 12
        });
        let mut out = Vec::new();
        for job_id in due {
            for w in self.holders(job_id) {
                if self.registry.is_online(&w) == Some(true) {
                    out.push(self.output_command(&w, job_id, OutputAction::Keep));
                }
            }
        }
        out
    }

    fn viewed_now(&mut self, job_id: Uuid, now: Now) {
        let first = !self.viewed.contains_key(&job_id);
        let entry = self.viewed.entry(job_id).or_insert((now.instant, None));
        entry.0 = now.instant;
        if first {
            tracing::debug!(%job_id, "a player watches the job");
        }
    }

    /// The job's playlist, written from its segment map.
    pub fn playlist(&mut self, job_id: Uuid, now: Now) -> PlaylistAnswer {
        let Some(job) = self.jobs.get(&job_id) else {
            return PlaylistAnswer::NotFound;
        };
        if job.listed == 0 {
            return if job.state.is_final() {
                PlaylistAnswer::Gone
            } else {
                PlaylistAnswer::NotYet(if job.state == JobState::Processing {
                    1
                } else {
                    2
                })
            };
        }
        let empty = Segments::new();
        let text = segments::render(&PlaylistInput {
            segs: self.segments.get(&job_id).unwrap_or(&empty),
            listed: job.listed,
            encodings: &job.encodings,
            grid: job.grid,
            // Once complete, always complete: a repair run (a lost holder)
            // never takes the end back.
            ended: job.state.is_final()
                || job.total_segments.is_some_and(|t| t > 0 && job.listed >= t),
        });
        self.viewed_now(job_id, now);
        PlaylistAnswer::Playlist(text)
    }

    /// Where segment `index` of a job can be fetched now.
    pub fn segment_location(&mut self, job_id: Uuid, index: u64, now: Now) -> SegmentAnswer {
        let Some(job) = self.jobs.get(&job_id) else {
            return SegmentAnswer::NotFound;
        };
        let job_over = job.state.is_final();
        let known = self
            .segments
            .get(&job_id)
            .and_then(|m| m.get(&index))
            .cloned();
        if index >= job.listed.max(job.total_segments.unwrap_or(0)) && known.is_none() {
            return SegmentAnswer::NotFound;
        }
        // Where the viewer is now (after a seek back too).
        if index < MAX_SEGMENTS {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.requested = Some(index);
            }
        }
        self.viewed_now(job_id, now);
        let deleted = known.as_ref().is_some_and(|s| s.holder.is_none());
        let over = job_over;
        let holder = known.filter(|s| self.available(s)).and_then(|s| s.holder);
        let url = holder.and_then(|h| {
            let hb = self.registry.heartbeat(&h)?;
            let host = if hb.ip_address.contains(':') && !hb.ip_address.starts_with('[') {
                format!("[{}]", hb.ip_address)
            } else {
                hb.ip_address.clone()
            };
            Some(format!(
                "http://{host}:{}/hls/{job_id}/seg{index}.ts",
                hb.port
            ))
        });
        match url {
            Some(url) => SegmentAnswer::Redirect(url),
            None if over && deleted => SegmentAnswer::Gone,
            None => SegmentAnswer::Wait,
        }
    }
}
