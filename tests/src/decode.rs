//! Checking a stream the way a player would meet it, by decoding it with
//! FFmpeg: every video frame and audio frame with its timestamp, so a test
//! can count frames and measure every gap and overlap.
//!
//! - [`make_film`]: a long 1080p source in seconds (a short picture
//!   looped, with one continuous tone).
//! - [`decode`]: what ffprobe decodes from a file or URL.

use std::path::Path;
use std::process::{Command, Stdio};

/// What decoding a stream gave.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Presentation times of the video frames, in decoding order.
    pub video: Vec<f64>,
    /// Audio frames: (presentation time, samples, sample rate).
    pub audio: Vec<(f64, u64, u64)>,
}

impl Decoded {
    /// The largest step between two video frames, and the smallest (a
    /// step of 0 or less is a duplicate or a timestamp going back).
    pub fn video_steps(&self) -> (f64, f64) {
        let steps = self.video.windows(2).map(|w| w[1] - w[0]);
        let max = steps.clone().fold(f64::MIN, f64::max);
        let min = steps.fold(f64::MAX, f64::min);
        (max, min)
    }

    /// Every place where the next audio frame does not start where the
    /// previous one ended: (time, gap in seconds; negative: overlap).
    pub fn audio_joins(&self, tolerance: f64) -> Vec<(f64, f64)> {
        self.audio
            .windows(2)
            .filter_map(|w| {
                let (t0, n0, sr0) = w[0];
                let (t1, _, _) = w[1];
                let end = t0 + n0 as f64 / sr0.max(1) as f64;
                let gap = t1 - end;
                (gap.abs() > tolerance).then_some((t1, gap))
            })
            .collect()
    }

    /// Seconds of video from the first frame to the end of the last.
    pub fn video_duration(&self, fps: f64) -> f64 {
        match (self.video.first(), self.video.last()) {
            (Some(a), Some(b)) => b - a + 1.0 / fps,
            _ => 0.0,
        }
    }

    /// Seconds of audio, summed over its frames.
    pub fn audio_duration(&self) -> f64 {
        self.audio
            .iter()
            .map(|(_, n, sr)| *n as f64 / (*sr).max(1) as f64)
            .sum()
    }
}

/// Decodes every frame of `target` (a file or URL; redirects are
/// followed) with ffprobe.
pub fn decode(target: &str) -> Decoded {
    let sample_rate = audio_rate(target);
    let text = run_ffprobe(&[
        "-show_entries",
        "frame=media_type,best_effort_timestamp_time,nb_samples",
        "-of",
        "csv=p=0:nk=1",
        target,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut decoded = Decoded::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        match fields.as_slice() {
            ["video", t, ..] => {
                if let Ok(t) = t.parse() {
                    decoded.video.push(t);
                }
            }
            ["audio", t, n, ..] => {
                if let (Ok(t), Ok(n)) = (t.parse(), n.parse()) {
                    decoded.audio.push((t, n, sample_rate));
                }
            }
            _ => {}
        }
    }
    decoded
}

/// The decoded stream holds the source's frames, in order, without gaps;
/// its audio has no gap or overlap over 30 ms anywhere.
pub fn assert_seamless(d: &Decoded, fps: f64, frames: usize, joins: usize, seconds: f64) {
    assert_video_whole(d, fps, frames, joins, seconds);
    let bad = d.audio_joins(0.030);
    assert!(bad.is_empty(), "audio gaps or overlaps over 30 ms: {bad:?}");
    let audio = d.audio_duration();
    assert!(
        (audio - seconds).abs() <= 0.2,
        "audio lasts {audio:.3} s, not {seconds} s"
    );
}

/// The decoded stream's video holds the source's frames, in order, without
/// a gap, and lasts as long as the source.
pub fn assert_video_whole(d: &Decoded, fps: f64, frames: usize, joins: usize, seconds: f64) {
    let slack = joins.max(1);
    assert!(
        d.video.len().abs_diff(frames) <= slack,
        "{} video frames decoded, the source has {frames} ({joins} joins)",
        d.video.len()
    );
    let (max_step, min_step) = d.video_steps();
    assert!(
        min_step > 0.0,
        "video timestamps must increase strictly (smallest step {min_step})"
    );
    assert!(
        max_step <= 1.5 / fps,
        "a gap of {:.1} ms between two video frames",
        max_step * 1000.0
    );
    let video = d.video_duration(fps);
    assert!(
        (video - seconds).abs() <= 0.2,
        "video lasts {video:.3} s, not {seconds} s"
    );
}

/// Prints what was decoded and the first audio joins (for the test log).
pub fn log_joins(d: &Decoded) {
    let joins: Vec<String> = d
        .audio_joins(0.0005)
        .iter()
        .take(20)
        .map(|(t, g)| format!("{t:.2}s:{:+.1}ms", g * 1000.0))
        .collect();
    eprintln!(
        "decoded {} video frames, {:.3} s of audio; audio joins: {joins:?}",
        d.video.len(),
        d.audio_duration()
    );
}

/// Runs `ffprobe -v error ARGS` and returns what it printed, or a sentence
/// with its error.
pub fn run_ffprobe(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ffprobe cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {}: {}",
            args.last().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sample rate of the first audio stream (48 kHz when unknown).
fn audio_rate(target: &str) -> u64 {
    let text = run_ffprobe(&[
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate",
        "-of",
        "csv=p=0",
        target,
    ])
    .unwrap_or_default();
    // A playlist can list the stream once per program: the first line.
    text.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or(48_000)
}

/// A `seconds` long 1920x1080 30 fps H.264 film with an AAC tone, made in a
/// few seconds: a 4 s picture looped (the frames repeat, their timestamps
/// do not) and one continuous tone over the whole length.
pub fn make_film(path: &Path, seconds: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("media folder");
    }
    let chunk = path.with_extension("chunk.mkv");
    let run = |args: &[&str]| {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ffmpeg runs");
        assert!(
            out.status.success(),
            "making {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let chunk_s = chunk.display().to_string();
    run(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "35",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        &chunk_s,
    ]);
    let loops = (seconds.div_ceil(4)).saturating_sub(1).to_string();
    let tone = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let length = seconds.to_string();
    run(&[
        "-stream_loop",
        &loops,
        "-i",
        &chunk_s,
        "-f",
        "lavfi",
        "-i",
        &tone,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-t",
        &length,
        &path.display().to_string(),
    ]);
    let _ = std::fs::remove_file(&chunk);
}

/// Video frames in a file, counted by ffprobe from its packets.
pub fn video_frames(path: &Path) -> u64 {
    let path = path.display().to_string();
    run_ffprobe(&[
        "-select_streams",
        "v:0",
        "-count_packets",
        "-show_entries",
        "stream=nb_read_packets",
        "-of",
        "csv=p=0",
        &path,
    ])
    .unwrap_or_default()
    .trim()
    .parse()
    .unwrap_or(0)
}
