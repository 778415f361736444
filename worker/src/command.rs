//! The FFmpeg command line for a job, built without IO: encoder choice,
//! output size, rate control, keyframes on segment boundaries, and an HLS
//! event playlist whose segments appear as soon as each is complete.
//!
//! This file chooses the encoder and the output size and describes a run
//! ([`EncodeSpec`]); `args` turns a spec into FFmpeg's arguments, one named
//! step per part of the command line; `tests` checks both by table.

use std::path::Path;

use transcode_common::validate::Bitrate;

use crate::media::Input;
use crate::probe::Family;
pub use crate::window::RunWindow;

mod args;
pub use args::ffmpeg_args;
#[cfg(test)]
mod tests;

/// H.264 encoders in order of preference: hardware first (HLS players all
/// speak H.264), software last.
const PREFERENCE: [(&str, Family); 7] = [
    ("h264_nvenc", Family::Nvenc),
    ("h264_qsv", Family::Qsv),
    ("h264_vaapi", Family::Vaapi),
    ("h264_amf", Family::Amf),
    ("h264_videotoolbox", Family::VideoToolbox),
    ("h264_v4l2m2m", Family::V4l2m2m),
    ("libx264", Family::Software),
];

/// The best H.264 encoder among those that passed the probe, or the one a
/// job asks for (every part of a split job uses the same) if it passed.
pub fn choose_encoder(passed: &[String], wanted: Option<&str>) -> Option<(&'static str, Family)> {
    PREFERENCE
        .into_iter()
        .filter(|(name, _)| wanted.is_none_or(|w| w == *name))
        .find(|(name, _)| passed.iter().any(|p| p == name))
}

/// The output size: the source fitted into the bounding box with its aspect
/// ratio kept, never larger than the source, both sides even.
pub fn output_size(source: (u32, u32), bounding_box: (u32, u32)) -> (u32, u32) {
    let (sw, sh) = (source.0.max(2) as f64, source.1.max(2) as f64);
    let (bw, bh) = (bounding_box.0.max(2) as f64, bounding_box.1.max(2) as f64);
    let scale = (bw / sw).min(bh / sh).min(1.0);
    let even = |v: f64| ((v.floor() as u32) / 2 * 2).max(2);
    (even(sw * scale), even(sh * scale))
}

/// Added to every run's output timestamps, the same on every run of every
/// job: nothing is ever negative (B-frame delay, AAC priming), so FFmpeg
/// shifts no run differently from the others.
pub const TIMESTAMP_BASE: f64 = 10.0;

/// Everything one encode needs.
#[derive(Debug, Clone)]
pub struct EncodeSpec<'a> {
    /// The source, with the options that confine how it is opened.
    pub input: &'a Input,
    pub out_dir: &'a Path,
    /// Which frames this run encodes and how they are cut.
    pub window: RunWindow,
    pub size: (u32, u32),
    pub bitrate: Bitrate,
    pub encoder: &'a str,
    pub family: Family,
    pub has_audio: bool,
    /// Threads FFmpeg may use for each of decoding, filtering and encoding;
    /// 0: FFmpeg's choice.
    pub threads: u32,
}

/// The playlist's file name in a job's folder.
pub const PLAYLIST: &str = "index.m3u8";

/// Whether `name` is a file FFmpeg writes for a job (and the only files the
/// HTTP server will hand out): the playlist or `seg<N>.ts`.
pub fn is_output_file(name: &str) -> bool {
    name == PLAYLIST
        || name
            .strip_prefix("seg")
            .and_then(|rest| rest.strip_suffix(".ts"))
            .is_some_and(|n| {
                !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit())
            })
}

/// What the segments of a run are encoded with: runs with the same
/// encoding join without a discontinuity.
pub fn encoding_label(spec: &EncodeSpec) -> String {
    format!(
        "{} {}x{} {}k{}",
        spec.encoder,
        spec.size.0,
        spec.size.1,
        spec.bitrate.kbps(),
        if spec.has_audio { " aac" } else { "" }
    )
}
