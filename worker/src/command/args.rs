//! The FFmpeg argument list of one run, in the order FFmpeg reads it: what
//! FFmpeg prints and how many threads it takes, the input and its seek,
//! the video (filters, encoder, keyframes, rate), the audio, the run's
//! timestamp offset, and the HLS output. Each step is its own function.

use super::{EncodeSpec, PLAYLIST, TIMESTAMP_BASE};
use crate::probe::Family;
use crate::window::RunWindow;

/// The whole command line of one run, without the `ffmpeg` itself.
pub fn ffmpeg_args(spec: &EncodeSpec) -> Vec<String> {
    [
        global_args(spec),
        input_args(spec),
        video_args(spec),
        audio_args(spec),
        timestamp_args(&spec.window),
        hls_args(spec),
    ]
    .concat()
}

fn push(args: &mut Vec<String>, items: &[&str]) {
    args.extend(items.iter().map(|s| s.to_string()));
}

/// Seconds as FFmpeg reads them, to the microsecond.
fn secs(v: f64) -> String {
    format!("{v:.6}")
}

/// Progress on stdout and only warnings on stderr; the VAAPI device; the
/// decoder's and the filter graph's threads.
fn global_args(spec: &EncodeSpec) -> Vec<String> {
    let mut a = Vec::new();
    push(
        &mut a,
        &[
            "-hide_banner",
            "-loglevel",
            "warning",
            "-nostats",
            "-progress",
            "pipe:1",
            "-y",
        ],
    );
    if spec.family == Family::Vaapi {
        push(&mut a, &["-vaapi_device", crate::probe::VAAPI_DEVICE]);
    }
    if spec.threads > 0 {
        // Decoder threads (an input option) and the filter graph's.
        let threads = spec.threads.to_string();
        push(&mut a, &["-threads", &threads, "-filter_threads", &threads]);
    }
    a
}

/// The input seek, the source and the streams taken from it: the first
/// video, the first audio if any, no subtitles or data.
fn input_args(spec: &EncodeSpec) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(seek) = spec.window.seek() {
        push(&mut a, &["-ss", &secs(seek)]);
    }
    // Only the source's own protocol, whatever the source names inside it.
    a.extend(spec.input.options.iter().cloned());
    a.push("-i".into());
    a.push(spec.input.url.clone());
    push(&mut a, &["-map", "0:v:0"]);
    if spec.has_audio {
        push(&mut a, &["-map", "0:a:0"]);
    }
    push(&mut a, &["-sn", "-dn"]);
    a
}

/// The video filter, the encoder with its keyframe options, and the rate
/// control.
fn video_args(spec: &EncodeSpec) -> Vec<String> {
    let mut a = Vec::new();
    push(
        &mut a,
        &[
            "-vf",
            &video_filter(spec),
            "-fps_mode",
            "passthrough",
            "-c:v",
            spec.encoder,
        ],
    );
    if spec.threads > 0 {
        push(&mut a, &["-threads", &spec.threads.to_string()]);
    }
    a.extend(keyframe_args(spec));
    let k = spec.bitrate.kbps();
    push(
        &mut a,
        &[
            "-b:v",
            &format!("{k}k"),
            "-maxrate",
            &format!("{k}k"),
            "-bufsize",
            &format!("{}k", k * 2),
        ],
    );
    a
}

/// Cut by frame count on the grid, then number the frames from 0 at the
/// grid's rate (a variable rate is made constant first), then scale to
/// the output size in the pixel format the encoder takes.
fn video_filter(spec: &EncodeSpec) -> String {
    let w = &spec.window;
    let grid = w.grid;
    let skip = match w.seek() {
        Some(_) => w.preroll(),
        None => w.first_frame_of_run(),
    };
    let mut video = String::new();
    if w.variable_rate {
        if w.seek().is_none() {
            // Count the constant-rate slots from the half-frame before the
            // job's first frame, as a seek would.
            video.push_str(&format!("setpts=PTS-({})/TB,", secs(w.seek_point())));
        }
        video.push_str(&format!(
            "fps=fps={}/{}:start_time=0:round=down,",
            grid.fps_num, grid.fps_den
        ));
    }
    video.push_str(&format!("trim=start_frame={skip}"));
    if let Some(frames) = w.frames() {
        video.push_str(&format!(":end_frame={}", skip + frames));
    }
    video.push_str(&format!(",setpts=N*{}/({}*TB)", grid.fps_den, grid.fps_num));
    let (width, height) = spec.size;
    video.push_str(&match spec.family {
        Family::Vaapi => format!(",scale={width}:{height},format=nv12,hwupload"),
        Family::Qsv => format!(",scale={width}:{height},format=nv12"),
        _ => format!(",scale={width}:{height},format=yuv420p"),
    });
    video
}

/// A keyframe on the first frame of every segment, as each encoder family
/// can be told: by expression in software, by a fixed GOP of one segment
/// in hardware.
fn keyframe_args(spec: &EncodeSpec) -> Vec<String> {
    let mut a = Vec::new();
    let gop = spec.window.grid.segment_frames.to_string();
    match spec.family {
        Family::Software => push(
            &mut a,
            &[
                "-preset",
                "veryfast",
                "-g",
                &gop,
                "-keyint_min",
                &gop,
                "-force_key_frames",
                &keyframes(&spec.window),
                "-sc_threshold",
                "0",
            ],
        ),
        // Hardware encoders ignore -force_key_frames (NOTES.md): a fixed GOP
        // of one segment puts a keyframe on every boundary.
        Family::Nvenc => push(
            &mut a,
            &[
                "-preset",
                "p4",
                "-g",
                &gop,
                "-keyint_min",
                &gop,
                "-forced-idr",
                "1",
            ],
        ),
        Family::Qsv => push(
            &mut a,
            &["-preset", "veryfast", "-g", &gop, "-idr_interval", "0"],
        ),
        Family::Amf => push(&mut a, &["-quality", "speed", "-g", &gop]),
        Family::VideoToolbox => push(&mut a, &["-realtime", "1", "-g", &gop]),
        Family::Vaapi | Family::V4l2m2m => push(&mut a, &["-g", &gop, "-keyint_min", &gop]),
    }
    a
}

/// The `-force_key_frames` expression that puts a keyframe on the first
/// frame of every segment of a run (`n` counts the run's frames): each
/// short one by name, then every full segment's length.
fn keyframes(w: &RunWindow) -> String {
    let grid = w.grid;
    let f = grid.segment_frames;
    let first = grid.first_frame_of(w.first_segment);
    let lead = grid.short_segments();
    if w.first_segment >= lead {
        return format!("expr:eq(mod(n,{f}),0)");
    }
    let full_from = grid.first_frame_of(lead) - first;
    let short: Vec<String> = (w.first_segment..lead)
        .map(|i| format!("eq(n,{})", grid.first_frame_of(i) - first))
        .collect();
    format!(
        "expr:if(lt(n,{full_from}),{},eq(mod(n-{full_from},{f}),0))",
        short.join("+")
    )
}

/// The audio of exactly this run's frames, on the job's AAC frame grid,
/// numbered like the video (see `AudioCut`), in stereo AAC; nothing for a
/// source without audio.
fn audio_args(spec: &EncodeSpec) -> Vec<String> {
    let mut a = Vec::new();
    if !spec.has_audio {
        return a;
    }
    // Samples are counted, not timed: millisecond timestamps jitter by a
    // sample.
    let cut = spec.window.audio_cut();
    let mut audio = format!("atrim=start={}", secs(cut.start));
    if let Some(count) = cut.count {
        audio.push_str(&format!(",atrim=end_sample={count}"));
    }
    if cut.lead == 0.0 {
        audio.push_str(",asetpts=N/SR/TB");
    } else {
        audio.push_str(&format!(",asetpts=(N{:+})/SR/TB", cut.lead));
    }
    push(
        &mut a,
        &["-af", &audio, "-c:a", "aac", "-ac", "2", "-b:a", "128k"],
    );
    // The priming packet goes, and a bounded run's flush packet.
    let mut drop = "noise=drop=not(n)".to_string();
    if let Some(from) = cut.drop_from {
        drop.push_str(&format!("+gte(n\\,{from})"));
    }
    push(&mut a, &["-bsf:a", &drop]);
    a
}

/// Every run's timestamps continue the job's, from the same base.
fn timestamp_args(w: &RunWindow) -> Vec<String> {
    vec![
        "-output_ts_offset".into(),
        secs(TIMESTAMP_BASE + w.offset_seconds()),
    ]
}

/// An event playlist whose segments are numbered on from the run's first
/// and appear when complete.
fn hls_args(spec: &EncodeSpec) -> Vec<String> {
    let w = &spec.window;
    let mut a = Vec::new();
    push(
        &mut a,
        &[
            "-f",
            "hls",
            "-hls_time",
            &hls_time(w),
            "-hls_playlist_type",
            "event",
            "-hls_list_size",
            "0",
            "-hls_flags",
            "independent_segments+temp_file",
            "-start_number",
            &w.first_segment.to_string(),
            "-hls_segment_filename",
        ],
    );
    a.push(spec.out_dir.join("seg%d.ts").display().to_string());
    a.push(spec.out_dir.join(PLAYLIST).display().to_string());
    a
}

/// The segment length FFmpeg cuts at, so that it cuts at every forced
/// keyframe: the target is one segment, rounded down and 10 µs less, so
/// that a keyframe whose 90 kHz timestamp rounds down still reaches it
/// (hlsenc compares pts − start against hls_time × segments written, from
/// the run's first packet). The run's first segment is its shortest
/// (short ones lead the grid), and every later one reaches the target too.
fn hls_time(w: &RunWindow) -> String {
    let grid = w.grid;
    let segment_us =
        u128::from(grid.frames_in(w.first_segment)) * u128::from(grid.fps_den) * 1_000_000
            / u128::from(grid.fps_num.max(1));
    let hls_time_us = segment_us.saturating_sub(10).max(1);
    format!("{}.{:06}", hls_time_us / 1_000_000, hls_time_us % 1_000_000)
}
