//! Test videos made with FFmpeg's generators, in well under a second per
//! few seconds of output: light ones, ones as big as real films, and ones
//! full of noise for encodes that must spend a high bitrate.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs FFmpeg with `args` (inputs, filters, codecs) to write `path`,
/// making its folder first; panics with FFmpeg's error.
fn ffmpeg_writes(path: &Path, args: &[String]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("media folder");
    }
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "making {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Makes a test video with FFmpeg's generators in well under a second per
/// few seconds of output: `testsrc2` at `width`x`height`, 30 fps, with a
/// sine tone when `audio`.
pub fn make_media(path: &Path, width: u32, height: u32, seconds: u32, audio: bool) {
    let mut args = owned(&["-f", "lavfi", "-i"]);
    args.push(format!(
        "testsrc2=size={width}x{height}:rate=30:duration={seconds}"
    ));
    if audio {
        args.extend(owned(&["-f", "lavfi", "-i"]));
        args.push(format!(
            "sine=frequency=1000:sample_rate=48000:duration={seconds}"
        ));
        args.extend(owned(&[
            "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-ac", "2",
        ]));
    }
    args.extend(owned(&[
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
    ]));
    ffmpeg_writes(path, &args);
}

/// Makes a test video as big as a real film of its length (lossless
/// `testsrc2` at `width`x`height`, 30 fps, with a tone: about 6 Mbit/s at
/// 640x360), for figures in bytes, and quickly (about 30 s of video per
/// second).
pub fn make_heavy_media(path: &Path, width: u32, height: u32, seconds: u32) {
    let mut args = owned(&["-f", "lavfi", "-i"]);
    args.push(format!(
        "testsrc2=size={width}x{height}:rate=30:duration={seconds}"
    ));
    args.extend(owned(&["-f", "lavfi", "-i"]));
    args.push(format!(
        "sine=frequency=1000:sample_rate=48000:duration={seconds}"
    ));
    args.extend(owned(&[
        "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-ac", "2",
    ]));
    args.extend(owned(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
    ]));
    args.extend(owned(&["-g", "30", "-pix_fmt", "yuv420p"]));
    ffmpeg_writes(path, &args);
}

/// Makes a video full of moving noise (`testsrc2` at `width`x`height`, 30
/// fps, no audio) in a small file, so that an encode at a high bitrate
/// really spends it: 4 s at 1080p encoded at 50 Mbit/s give one segment of
/// about 26 MB.
pub fn make_noisy_media(path: &Path, width: u32, height: u32, seconds: u32) {
    let mut args = owned(&["-f", "lavfi", "-i"]);
    args.push(format!(
        "testsrc2=size={width}x{height}:rate=30:duration={seconds}"
    ));
    args.extend(owned(&["-vf", "noise=alls=20:allf=t"]));
    args.extend(owned(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "32",
    ]));
    args.extend(owned(&["-g", "30", "-pix_fmt", "yuv420p"]));
    ffmpeg_writes(path, &args);
}
