//! The worker's word on its segments: each new segment of a run as soon as
//! FFmpeg lists it, everything it holds after every (re)connection, and the
//! output folders it keeps or deletes on the orchestrator's word.

use std::path::Path;

use rumqttc::QoS;
use transcode_common::unix_ms;
use transcode_common::wire::{
    self, Grid, JobAssignment, OutputAction, OutputCommand, SegmentInfo, SegmentReport,
    MAX_REPORT_SEGMENTS,
};
use uuid::Uuid;

use super::Jobs;
use crate::outputs::Held;
use crate::progress;

/// Where a run's reporting stands.
pub struct SegmentReporter {
    /// The next segment the run reports.
    pub next: u64,
    /// The run's end (exclusive), if bounded.
    pub end: Option<u64>,
    /// The job's length in segments by this run's probe of the source.
    pub job_segments: Option<u64>,
    /// The job's grid: how long each segment is.
    pub grid: Grid,
    /// Set once FFmpeg was told to stop: the segment it was writing ends
    /// short, and only segments of their grid length are whole.
    pub stopped: bool,
}

impl Jobs {
    /// Reads FFmpeg's playlist and reports the segments that are new since
    /// the last call, in order; each is written to the folder's record
    /// first, so a restarted worker still knows it.
    pub(super) async fn report_new_segments(
        &self,
        a: &JobAssignment,
        playlist: &Path,
        held: &mut Held,
        reporter: &mut SegmentReporter,
    ) {
        let Ok(text) = tokio::fs::read_to_string(playlist).await else {
            return;
        };
        let mut new = Vec::new();
        for (index, duration) in progress::playlist_entries(&text) {
            if index != reporter.next || reporter.end.is_some_and(|e| index >= e) {
                continue;
            }
            // Half a frame of slack: segments end just under their length.
            let whole = reporter.grid.seconds_in(index) - 0.5 / reporter.grid.fps();
            if reporter.stopped && duration < whole {
                // Cut short by the stop: the next run encodes it whole.
                tracing::debug!(job_id = %a.job_id, index, duration, "segment cut short by the stop, not reported");
                break;
            }
            let seg = SegmentInfo { index, duration };
            held.add(seg);
            new.push(seg);
            reporter.next += 1;
        }
        if new.is_empty() {
            return;
        }
        let _order = self.inner.reporting.lock().await;
        if let Err(e) = self.inner.outputs.record(a.job_id, held).await {
            tracing::warn!(job_id = %a.job_id, "cannot write the folder's segment record: {e}");
        }
        tracing::debug!(job_id = %a.job_id, first = new[0].index, count = new.len(), "segments ready");
        let report = SegmentReport {
            worker_id: self.worker_id().to_string(),
            job_id: a.job_id,
            attempt: a.attempt,
            segments: new,
            inventory: false,
            covers: None,
            grid: held.grid,
            encoding: held.encoding.clone(),
            job_segments: reporter.job_segments,
            timestamp: Some(unix_ms()),
        };
        self.send_report(&report).await;
    }

    async fn send_report(&self, report: &SegmentReport) {
        let topic = self.inner.topics.worker_segments(self.worker_id());
        if let Err(e) = self
            .inner
            .client
            .publish(topic, QoS::AtLeastOnce, false, wire::encode(report))
            .await
        {
            tracing::warn!(job_id = %report.job_id, error = %e, "segment report not sent");
        }
    }

    /// Everything this worker holds, job by job, so the orchestrator's map
    /// is right again after a lost message or a restart of either side.
    pub async fn publish_inventory(&self) {
        for job_id in self.inner.outputs.job_ids() {
            self.send_current_inventory(job_id).await;
        }
    }

    /// The inventory of a folder as its record says now.
    async fn send_current_inventory(&self, job_id: Uuid) {
        let _order = self.inner.reporting.lock().await;
        if let Some(held) = self.inner.outputs.held(job_id).await {
            self.send_inventory(job_id, &held).await;
        }
    }

    pub(super) async fn send_inventory(&self, job_id: Uuid, held: &Held) {
        for (segments, covers) in inventory_parts(&held.segments) {
            let report = SegmentReport {
                worker_id: self.worker_id().to_string(),
                job_id,
                attempt: held.attempt,
                segments,
                inventory: true,
                covers: Some(covers),
                grid: held.grid,
                encoding: held.encoding.clone(),
                job_segments: None,
                timestamp: Some(unix_ms()),
            };
            self.send_report(&report).await;
        }
    }

    /// A message on our outputs topic.
    pub async fn on_output(&self, payload: &[u8]) {
        let worker_id = self.worker_id();
        let command: OutputCommand = match wire::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker_id, "output command ignored: {e}");
                return;
            }
        };
        let job_id = command.job_id;
        if !self.inner.outputs.has_folder(job_id).await {
            return;
        }
        match command.action {
            OutputAction::Keep => self.inner.outputs.touch(job_id),
            OutputAction::Report => {
                let jobs = self.clone();
                tokio::spawn(async move { jobs.send_current_inventory(job_id).await });
            }
            OutputAction::Delete => {
                tracing::info!(worker_id, %job_id, "the orchestrator is done with the job; its output goes");
                self.inner.outputs.doom(job_id);
            }
        }
    }

    /// Deletes the folders whose time is up and says so (an empty
    /// inventory), so the playlist stops pointing here.
    pub async fn sweep_outputs(&self) {
        for job_id in self.inner.outputs.expired() {
            let held = self.inner.outputs.held(job_id).await;
            match self.inner.outputs.delete(job_id).await {
                Ok(()) => {
                    tracing::info!(worker_id = self.worker_id(), %job_id, "output deleted: nobody asked for it for transcode.keep_outputs_s, or the job is over");
                    if let Some(mut held) = held {
                        held.segments.clear();
                        self.send_inventory(job_id, &held).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(worker_id = self.worker_id(), %job_id, "cannot delete the output folder: {e}")
                }
            }
        }
    }
}

/// An inventory in reports of at most `MAX_REPORT_SEGMENTS` segments, each
/// with the range of segment numbers it speaks for.
pub fn inventory_parts(segments: &[SegmentInfo]) -> Vec<(Vec<SegmentInfo>, [u64; 2])> {
    if segments.is_empty() {
        return vec![(Vec::new(), [0, wire::MAX_SEGMENTS])];
    }
    let chunks: Vec<&[SegmentInfo]> = segments.chunks(MAX_REPORT_SEGMENTS).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let from = if i == 0 { 0 } else { chunk[0].index };
            let to = chunks
                .get(i + 1)
                .map(|next| next[0].index)
                .unwrap_or(wire::MAX_SEGMENTS);
            (chunk.to_vec(), [from, to])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventories_cover_every_number_once() {
        let seg = |index| SegmentInfo {
            index,
            duration: 4.0,
        };
        assert_eq!(
            inventory_parts(&[]),
            vec![(Vec::new(), [0, wire::MAX_SEGMENTS])]
        );
        let few: Vec<SegmentInfo> = [2, 3, 9].into_iter().map(seg).collect();
        assert_eq!(
            inventory_parts(&few),
            vec![(few.clone(), [0, wire::MAX_SEGMENTS])]
        );
        let many: Vec<SegmentInfo> = (0..2500).map(seg).collect();
        let parts = inventory_parts(&many);
        let covers: Vec<[u64; 2]> = parts.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            covers,
            vec![[0, 1000], [1000, 2000], [2000, wire::MAX_SEGMENTS]]
        );
        assert!(parts.iter().all(|(s, _)| s.len() <= MAX_REPORT_SEGMENTS));
    }
}
