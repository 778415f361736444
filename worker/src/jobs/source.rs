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

impl Jobs {
    /// The source's facts: sniffed, probed and its frame rate checked, or
    /// what an earlier run of the same job here found in the same file.
    /// `head` is what the source URL's first request brought.
    pub(super) async fn source_info(
        &self,
        a: &JobAssignment,
        source: &Source,
        head: Option<&Head>,
    ) -> Result<SourceInfo, String> {
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
            return Ok(info);
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
        let input = &input;
        let mut info = ffprobe::probe(&settings.ffprobe, input, settings.probe_timeout).await?;
        // The container's word on the frame rate is checked against the
        // frames' timestamps: a variable rate is made constant.
        // Over the network each place costs a connection and what it
        // reads: a second (still dozens of frames) instead of three.
        let seconds = match source {
            Source::Local(_) => 3,
            Source::Remote { .. } => 1,
        };
        let stamps = ffprobe::sample_frame_times(
            &settings.ffprobe,
            input,
            info.duration,
            seconds,
            settings.probe_timeout,
        )
        .await;
        if let Some((true, average)) = ffprobe::frame_timing(&stamps, info.fps) {
            let rate = ffprobe::standard_rate((((average * 1000.0).round()) as u32, 1000));
            tracing::info!(
                stated = info.fps,
                average,
                ?rate,
                "the source's frame rate varies; it is made constant"
            );
            info.variable_rate = true;
            info.rate = rate;
            info.fps = f64::from(rate.0) / f64::from(rate.1);
        }
        if let Some(stamp) = stamp {
            self.state().probes.put(a.job_id, stamp, info.clone());
        }
        Ok(info)
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
