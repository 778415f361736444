//! What a run needs to know about its source: the sniff that refuses
//! playlists, ffprobe's facts, and the frame rate checked against the
//! frames' timestamps. The parts of a split job that run here one after
//! the other probe their source once: the facts are kept per job while the
//! file's size and modification time stay the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use transcode_common::wire::JobAssignment;
use uuid::Uuid;

use transcode_common::media;

use super::Jobs;
use crate::ffprobe::{self, SourceInfo};
use crate::media::{Head, Source};

/// Jobs whose source facts are kept (the oldest go first).
const KEEP: usize = 16;

/// The file a probe was made of, as the file system describes it.
#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// The orchestrator's copy, known by its path and size.
    fn remote(source_path: &str, len: u64) -> FileStamp {
        FileStamp {
            path: PathBuf::from(format!("orchestrator:{source_path}")),
            len,
            modified: None,
        }
    }
}

/// Source facts of recent jobs, with when each was made.
#[derive(Default)]
pub(super) struct Probes {
    by_job: HashMap<Uuid, (FileStamp, SourceInfo, u64)>,
    made: u64,
}

impl Probes {
    fn get(&self, job_id: Uuid, stamp: &FileStamp) -> Option<SourceInfo> {
        self.by_job
            .get(&job_id)
            .filter(|(s, _, _)| s == stamp)
            .map(|(_, info, _)| info.clone())
    }

    fn put(&mut self, job_id: Uuid, stamp: FileStamp, info: SourceInfo) {
        self.made += 1;
        self.by_job.insert(job_id, (stamp, info, self.made));
        while self.by_job.len() > KEEP {
            let oldest = self
                .by_job
                .iter()
                .min_by_key(|(_, (_, _, made))| *made)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.by_job.remove(&id),
                None => break,
            };
        }
    }
}

/// The check of a source's frame rate against its frames' timestamps,
/// running beside FFmpeg: most sources keep their stated rate, and the
/// first segment should not wait for the proof.
pub(super) struct RateCheck {
    /// The frames' timestamps, when read.
    pub task: tokio::task::JoinHandle<Vec<f64>>,
    stamp: Option<FileStamp>,
}

/// What a finished [`RateCheck`] found.
pub(super) enum Rate {
    /// The stated rate holds: the run's segments stand.
    Holds,
    /// The frames come unevenly: the run starts over with these facts.
    Varies(SourceInfo),
}

impl Jobs {
    /// The source's facts: sniffed and probed, or what an earlier run of
    /// the same job here found in the same file. `head` is what the source
    /// URL's first request brought. A fresh probe comes with the check of
    /// its frame rate, still running.
    pub(super) async fn source_info(
        &self,
        a: &JobAssignment,
        source: &Source,
        head: Option<&Head>,
    ) -> Result<(SourceInfo, Option<RateCheck>), String> {
        let settings = &self.inner.settings;
        // The local file's metadata and first bytes are read on tokio's
        // blocking threads.
        let stamp = match source {
            Source::Local(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || FileStamp::of(&path))
                    .await
                    .ok()
                    .flatten()
            }
            Source::Remote { .. } => head
                .and_then(|h| h.size)
                .or(a.source_size)
                .map(|len| FileStamp::remote(&a.source_path, len)),
        };
        if let Some(info) = stamp
            .as_ref()
            .and_then(|s| self.state().probes.get(a.job_id, s))
        {
            return Ok((info, None));
        }
        match (source, head) {
            (Source::Local(path), _) => {
                let path = path.clone();
                let head = tokio::task::spawn_blocking(move || media::read_head(&path))
                    .await
                    .map_err(|e| format!("cannot read the source's first bytes: {e}"))?;
                media::sniff(&head)?
            }
            (Source::Remote { .. }, Some(head)) => media::sniff(&head.bytes)?,
            (Source::Remote { .. }, None) => {}
        }
        let input = source.input();
        let info = ffprobe::probe(&settings.ffprobe, &input, settings.probe_timeout).await?;
        // The container's word on the frame rate is checked against the
        // frames' timestamps. Over the network each place costs a
        // connection and what it reads: a second (still dozens of frames)
        // instead of three.
        let seconds = match source {
            Source::Local(_) => 3,
            Source::Remote { .. } => 1,
        };
        let (ffprobe, timeout, duration) = (
            settings.ffprobe.clone(),
            settings.probe_timeout,
            info.duration,
        );
        let task = tokio::spawn(async move {
            ffprobe::sample_frame_times(&ffprobe, &input, duration, seconds, timeout).await
        });
        Ok((info, Some(RateCheck { task, stamp })))
    }

    /// Waits for a rate check's end and judges it.
    pub(super) async fn finish_rate_check(
        &self,
        a: &JobAssignment,
        mut check: RateCheck,
        info: &SourceInfo,
    ) -> Rate {
        let stamps = (&mut check.task).await.unwrap_or_default();
        self.judge_rate(a, check, &stamps, info)
    }

    /// What the frames' timestamps say of the stated rate; the facts it
    /// leaves are kept for the job's next runs here.
    pub(super) fn judge_rate(
        &self,
        a: &JobAssignment,
        check: RateCheck,
        stamps: &[f64],
        info: &SourceInfo,
    ) -> Rate {
        let mut info = info.clone();
        let rate = match ffprobe::frame_timing(stamps, info.fps) {
            Some((true, average)) => {
                let rate = ffprobe::standard_rate((((average * 1000.0).round()) as u32, 1000));
                tracing::info!(
                    stated = info.fps,
                    average,
                    ?rate,
                    "the source's frame rate varies; it is made constant and the run starts over"
                );
                info.variable_rate = true;
                info.rate = rate;
                info.fps = f64::from(rate.0) / f64::from(rate.1);
                Rate::Varies(info.clone())
            }
            _ => Rate::Holds,
        };
        if let Some(stamp) = check.stamp {
            self.state().probes.put(a.job_id, stamp, info);
        }
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width: u32) -> SourceInfo {
        SourceInfo {
            duration: Some(60.0),
            width,
            height: 720,
            fps: 30.0,
            rate: (30, 1),
            variable_rate: false,
            video_start: 0.0,
            has_audio: true,
            sample_rate: Some(48_000),
            video_codec: "h264".into(),
        }
    }

    fn stamp(path: &str, len: u64) -> FileStamp {
        FileStamp {
            path: PathBuf::from(path),
            len,
            modified: None,
        }
    }

    #[test]
    fn a_probe_is_kept_per_job_while_the_file_is_the_same() {
        let mut p = Probes::default();
        let job = Uuid::new_v4();
        p.put(job, stamp("/m/a.mkv", 10), info(1280));
        let cases = [
            (job, stamp("/m/a.mkv", 10), Some(1280)),
            // The file changed (or is another one): probed again.
            (job, stamp("/m/a.mkv", 11), None),
            (job, stamp("/m/b.mkv", 10), None),
            (Uuid::new_v4(), stamp("/m/a.mkv", 10), None),
        ];
        for (id, s, want) in cases {
            assert_eq!(p.get(id, &s).map(|i| i.width), want, "{s:?}");
        }
        // Only the last KEEP jobs are kept, the oldest go first.
        let later: Vec<Uuid> = (0..KEEP).map(|_| Uuid::new_v4()).collect();
        for id in &later {
            p.put(*id, stamp("/m/a.mkv", 10), info(640));
        }
        assert_eq!(p.by_job.len(), KEEP);
        assert!(p.get(job, &stamp("/m/a.mkv", 10)).is_none());
        assert!(later
            .iter()
            .all(|id| p.get(*id, &stamp("/m/a.mkv", 10)).is_some()));
    }
}
