//! The core's side of serving sources: an assignment carries a URL signed
//! for its run, and a source request is answered only while that run goes.

use std::sync::Arc;

use transcode_common::media::{self, SourceError};
use transcode_common::wire::JobAssignment;
use uuid::Uuid;

use super::{Core, JobError};
use crate::media::Media;

impl Core {
    /// The media library that assignments point their workers to.
    pub fn set_media(&mut self, media: Option<Arc<Media>>) {
        self.media = media;
    }

    /// A new job's source must be in the library, when there is one: a
    /// worker without its own copy reads it from there.
    pub(super) fn check_source(&self, source_path: &str) -> Result<(), JobError> {
        let Some(media) = &self.media else {
            return Ok(());
        };
        match media.file(source_path) {
            Ok((path, _)) => media::sniff(&media::read_head(&path))
                .map_err(|e| JobError::Invalid(format!("source {source_path:?}: {e}"))),
            Err(e @ SourceError::Unsafe(_)) => Err(JobError::Invalid(e.to_string())),
            Err(e) => Err(JobError::Invalid(format!(
                "{e}; the orchestrator's media.root is {}",
                media.root().display()
            ))),
        }
    }

    /// Adds the signed URL and size of the run's source, when the library
    /// serves and holds the file.
    pub(super) fn attach_source(&self, a: &mut JobAssignment) {
        let Some(media) = self.media.as_ref().filter(|m| m.serves()) else {
            return;
        };
        match media.file(&a.source_path) {
            Ok((_, len)) => {
                a.source_url = media.source_url(a.job_id, a.attempt, &a.source_path);
                a.source_size = Some(len);
            }
            Err(e) => {
                tracing::warn!(job_id = %a.job_id, "the assignment carries no source URL: {e}");
            }
        }
    }

    /// The source of run `attempt` of `job_id` while that run goes: its
    /// worker may read the file. `None` once it ended (or never was).
    pub fn source_of_run(&self, job_id: Uuid, attempt: u32) -> Option<String> {
        let job = self.jobs.get(&job_id)?;
        let going = if job.is_mesh_mode {
            job.chunks
                .iter()
                .any(|c| c.attempt == attempt && c.is_running())
        } else {
            job.attempt == attempt && job.is_running()
        };
        going.then(|| job.source_path.clone())
    }
}
