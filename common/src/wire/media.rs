//! The media library as the orchestrator's API lists it
//! (`GET /api/media?path=DIR`), for the dashboard and `transcodectl ls`.

use serde::{Deserialize, Serialize};

/// One folder of the orchestrator's media root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaListing {
    /// The folder, relative to the media root (empty: the root).
    pub path: String,
    /// Folders first, then files, each by name.
    pub entries: Vec<MediaEntry>,
    /// More entries than a listing holds were left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A file or folder in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaEntry {
    pub name: String,
    /// Relative to the media root: a job's `source_path`, or the `path` of
    /// the next listing.
    pub path: String,
    pub kind: MediaKind,
    /// Bytes, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Seconds, for videos whose length is known (probed once, then kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Directory,
    /// A file with a video file's extension.
    Video,
    Other,
}
