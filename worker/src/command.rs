//! The FFmpeg command line for a job, built without IO: encoder choice,
//! output size, rate control, keyframes on segment boundaries, and an HLS
//! event playlist whose segments appear as soon as each is complete.

use std::path::Path;

use transcode_common::validate::Bitrate;

use crate::media::Input;
use crate::probe::Family;
pub use crate::window::RunWindow;

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

fn secs(v: f64) -> String {
    format!("{v:.6}")
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

pub fn ffmpeg_args(spec: &EncodeSpec) -> Vec<String> {
    let w = &spec.window;
    let grid = w.grid;
    let f = grid.segment_frames;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&[
        "-hide_banner",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:1",
        "-y",
    ]);
    if spec.family == Family::Vaapi {
        push(&["-vaapi_device", crate::probe::VAAPI_DEVICE]);
    }
    let threads = spec.threads.to_string();
    if spec.threads > 0 {
        // Decoder threads (an input option) and the filter graph's.
        push(&["-threads", &threads, "-filter_threads", &threads]);
    }
    if let Some(seek) = w.seek() {
        push(&["-ss", &secs(seek)]);
    }
    // Only the source's own protocol, whatever the source names inside it.
    a.extend(spec.input.options.iter().cloned());
    a.push("-i".into());
    a.push(spec.input.url.clone());
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-map", "0:v:0"]);
    if spec.has_audio {
        push(&["-map", "0:a:0"]);
    }
    push(&["-sn", "-dn"]);

    // Cut by frame count on the grid, then number the frames from 0 at the
    // grid's rate; a variable rate is made constant first.
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
    push(&[
        "-vf",
        &video,
        "-fps_mode",
        "passthrough",
        "-c:v",
        spec.encoder,
    ]);
    if spec.threads > 0 {
        push(&["-threads", &threads]);
    }

    let gop = f.to_string();
    match spec.family {
        Family::Software => push(&[
            "-preset",
            "veryfast",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-force_key_frames",
            &keyframes(w),
            "-sc_threshold",
            "0",
        ]),
        // Hardware encoders ignore -force_key_frames (NOTES.md): a fixed GOP
        // of one segment puts a keyframe on every boundary.
        Family::Nvenc => push(&[
            "-preset",
            "p4",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-forced-idr",
            "1",
        ]),
        Family::Qsv => push(&["-preset", "veryfast", "-g", &gop, "-idr_interval", "0"]),
        Family::Amf => push(&["-quality", "speed", "-g", &gop]),
        Family::VideoToolbox => push(&["-realtime", "1", "-g", &gop]),
        Family::Vaapi | Family::V4l2m2m => push(&["-g", &gop, "-keyint_min", &gop]),
    }
    let k = spec.bitrate.kbps();
    push(&[
        "-b:v",
        &format!("{k}k"),
        "-maxrate",
        &format!("{k}k"),
        "-bufsize",
        &format!("{}k", k * 2),
    ]);
    if spec.has_audio {
        // The audio of exactly this run's frames, on the job's AAC frame
        // grid, numbered like the video (see `AudioCut`). Samples are
        // counted, not timed: millisecond timestamps jitter by a sample.
        let cut = w.audio_cut();
        let mut audio = format!("atrim=start={}", secs(cut.start));
        if let Some(count) = cut.count {
            audio.push_str(&format!(",atrim=end_sample={count}"));
        }
        if cut.lead == 0.0 {
            audio.push_str(",asetpts=N/SR/TB");
        } else {
            audio.push_str(&format!(",asetpts=(N{:+})/SR/TB", cut.lead));
        }
        push(&["-af", &audio, "-c:a", "aac", "-ac", "2", "-b:a", "128k"]);
        // The priming packet goes, and a bounded run's flush packet.
        let mut drop = "noise=drop=not(n)".to_string();
        if let Some(from) = cut.drop_from {
            drop.push_str(&format!("+gte(n\\,{from})"));
        }
        push(&["-bsf:a", &drop]);
    }
    // Every run's timestamps continue the job's, from the same base.
    push(&[
        "-output_ts_offset",
        &secs(TIMESTAMP_BASE + w.offset_seconds()),
    ]);
    // Cut at every forced keyframe: the target is one segment, rounded down
    // and 10 µs less, so that a keyframe whose 90 kHz timestamp rounds down
    // still reaches it (hlsenc compares pts − start against
    // hls_time × segments written, from the run's first packet).
    // The run's first segment is its shortest (short ones lead the grid),
    // and every later one reaches the target too.
    let segment_us =
        u128::from(grid.frames_in(w.first_segment)) * u128::from(grid.fps_den) * 1_000_000
            / u128::from(grid.fps_num.max(1));
    let hls_time_us = segment_us.saturating_sub(10).max(1);
    let hls_time = format!("{}.{:06}", hls_time_us / 1_000_000, hls_time_us % 1_000_000);
    push(&[
        "-f",
        "hls",
        "-hls_time",
        &hls_time,
        "-hls_playlist_type",
        "event",
        "-hls_list_size",
        "0",
        "-hls_flags",
        "independent_segments+temp_file",
        "-start_number",
        &w.first_segment.to_string(),
        "-hls_segment_filename",
    ]);
    a.push(spec.out_dir.join("seg%d.ts").display().to_string());
    a.push(spec.out_dir.join(PLAYLIST).display().to_string());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_preference() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["libx264"], Some("libx264")),
            (&["libx264", "h264_vaapi"], Some("h264_vaapi")),
            (&["h264_qsv", "h264_nvenc", "libx264"], Some("h264_nvenc")),
            (&["hevc_nvenc", "libx264"], Some("libx264")),
            (&[], None),
        ];
        for (passed, want) in cases {
            assert_eq!(
                choose_encoder(&s(passed), None).map(|(e, _)| e),
                *want,
                "{passed:?}"
            );
        }
    }

    #[test]
    fn output_sizes() {
        let cases = [
            ((1920, 1080), (1280, 720), (1280, 720)),
            ((3840, 2160), (1920, 1080), (1920, 1080)),
            ((640, 360), (1280, 720), (640, 360)), // never upscaled
            ((641, 361), (1280, 720), (640, 360)), // even
            ((1080, 1920), (1280, 720), (404, 720)), // portrait in a landscape box
            ((720, 1280), (1280, 720), (404, 720)),
            ((1920, 800), (1280, 720), (1280, 532)), // scope
            ((1440, 1080), (1280, 720), (960, 720)), // 4:3
            ((3, 3), (1280, 720), (2, 2)),
            ((1920, 1080), (854, 480), (852, 480)),
        ];
        for (src, bbox, want) in cases {
            assert_eq!(output_size(src, bbox), want, "{src:?} in {bbox:?}");
        }
    }

    fn window(first_segment: u64, segment_count: Option<u64>, job_first_frame: u64) -> RunWindow {
        RunWindow {
            grid: RunWindow::grid_for((30, 1), 4, false),
            first_segment,
            segment_count,
            job_first_frame,
            video_start: 0.0,
            variable_rate: false,
            sample_rate: 48_000,
        }
    }

    fn spec(family: Family, encoder: &'static str) -> EncodeSpec<'static> {
        EncodeSpec {
            input: Box::leak(Box::new(
                crate::media::Source::Local("/media/a.mkv".into()).input(),
            )),
            out_dir: Path::new("/out/job"),
            // A job from 6 s: its first frame is 180.
            window: window(0, None, 180),
            size: (1280, 720),
            bitrate: Bitrate(1_000_000),
            encoder,
            family,
            has_audio: true,
            threads: 0,
        }
    }

    fn pair(args: &[String], flag: &str) -> Option<String> {
        args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
    }

    #[test]
    fn grids() {
        let cases = [
            ((30, 1), 4, 120),
            ((24000, 1001), 4, 96),
            ((25, 1), 6, 150),
            ((60000, 1001), 2, 120),
        ];
        for (rate, seconds, frames) in cases {
            let g = RunWindow::grid_for(rate, seconds, false);
            assert_eq!(g.segment_frames, frames, "{rate:?}");
            assert!(g.validate().is_ok());
        }
        assert_eq!(RunWindow::first_frame(6.0, 0.0, 30.0), 180);
        assert_eq!(RunWindow::first_frame(60.0, 0.021, 23.976), 1438);
        assert_eq!(RunWindow::first_frame(0.0, 0.5, 30.0), 0);
    }

    #[test]
    fn run_windows_cut_on_the_grid() {
        // (first segment, count, job first frame) →
        // (seek, trim, audio filter, bitstream filter, ts offset)
        type Run = (u64, Option<u64>, u64);
        type Want<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, &'a str);
        let cases: &[(Run, Want)] = &[
            // The start of the file: no seek, no early audio frame.
            (
                (0, None, 0),
                (
                    None,
                    "trim=start_frame=0,",
                    "atrim=start=0.000000,asetpts=N/SR/TB",
                    "noise=drop=not(n)",
                    "10.000000",
                ),
            ),
            // Segment 3 (frame 360, 12 s = 576,000 samples, 562.5 AAC
            // frames): seek a second early, half a frame before frame 330,
            // in whole milliseconds; drop 30 frames; the audio starts on
            // the job's AAC grid one frame early (575,488 = 576,000 − 512).
            (
                (3, None, 0),
                (
                    Some("10.983000"),
                    "trim=start_frame=30,",
                    "atrim=start=1.006333,asetpts=(N-512)/SR/TB",
                    "noise=drop=not(n)",
                    "22.000000",
                ),
            ),
            // Two segments from segment 1: 240 frames; the audio up to the
            // grid frame at or after 12 s, its flush packet dropped.
            (
                (1, Some(2), 0),
                (
                    Some("2.983000"),
                    "trim=start_frame=30:end_frame=270,",
                    "atrim=start=1.006333,atrim=end_sample=385024,asetpts=(N-512)/SR/TB",
                    "noise=drop=not(n)+gte(n\\,376)",
                    "14.000000",
                ),
            ),
            // A job from 6 s (frame 180), segment 0: the timestamps start at
            // the base, not at 6 s.
            (
                (0, None, 180),
                (
                    Some("4.983000"),
                    "trim=start_frame=30,",
                    "atrim=start=1.017000,asetpts=N/SR/TB",
                    "noise=drop=not(n)",
                    "10.000000",
                ),
            ),
            // Less than a second into the file: pre-roll from its start.
            (
                (0, None, 10),
                (
                    None,
                    "trim=start_frame=10,",
                    "atrim=start=0.333333,asetpts=N/SR/TB",
                    "noise=drop=not(n)",
                    "10.000000",
                ),
            ),
        ];
        for ((first, count, j), (seek, trim, af, bsf, offset)) in cases {
            let mut s = spec(Family::Software, "libx264");
            s.window = window(*first, *count, *j);
            let a = ffmpeg_args(&s);
            assert_eq!(pair(&a, "-ss").as_deref(), *seek, "{a:?}");
            let vf = pair(&a, "-vf").unwrap();
            assert!(vf.starts_with(trim), "{vf}");
            assert!(vf.contains(",setpts=N*1/(30*TB),"), "{vf}");
            assert_eq!(pair(&a, "-af").as_deref(), Some(*af));
            assert_eq!(pair(&a, "-bsf:a").as_deref(), Some(*bsf));
            assert_eq!(pair(&a, "-output_ts_offset").as_deref(), Some(*offset));
            assert_eq!(pair(&a, "-start_number"), Some(first.to_string()), "{a:?}");
        }
        // A variable frame rate is made constant before the cut; without a
        // seek, its slots count from the half-frame before the first one.
        let mut s = spec(Family::Software, "libx264");
        s.window.variable_rate = true;
        let vf = pair(&ffmpeg_args(&s), "-vf").unwrap();
        assert!(
            vf.starts_with("fps=fps=30/1:start_time=0:round=down,trim="),
            "{vf}"
        );
        s.window = window(0, None, 0);
        s.window.variable_rate = true;
        let vf = pair(&ffmpeg_args(&s), "-vf").unwrap();
        assert!(
            vf.starts_with("setpts=PTS-(-0.016667)/TB,fps=fps=30/1:start_time=0:round=down,"),
            "{vf}"
        );
    }

    #[test]
    fn segments_are_cut_just_under_their_length() {
        let cases = [
            ((30, 1), "3.999990"),
            ((24000, 1001), "4.003990"),
            ((2997, 125), "4.003994"),
            ((25, 1), "3.999990"),
        ];
        for (rate, want) in cases {
            let mut s = spec(Family::Software, "libx264");
            s.window.grid = RunWindow::grid_for(rate, 4, false);
            assert_eq!(
                pair(&ffmpeg_args(&s), "-hls_time").as_deref(),
                Some(want),
                "{rate:?}"
            );
        }
    }

    #[test]
    fn short_segments_lead_a_run_that_starts_among_them() {
        // 1 s, 1 s, 2 s, then 4 s at 30 fps: (first segment) →
        // (keyframes, target length, timestamp offset)
        let cases = [
            (
                0,
                "expr:if(lt(n,120),eq(n,0)+eq(n,30)+eq(n,60),eq(mod(n-120,120),0))",
                "0.999990",
                "10.000000",
            ),
            (
                1,
                "expr:if(lt(n,90),eq(n,0)+eq(n,30),eq(mod(n-90,120),0))",
                "0.999990",
                "11.000000",
            ),
            (
                2,
                "expr:if(lt(n,60),eq(n,0),eq(mod(n-60,120),0))",
                "1.999990",
                "12.000000",
            ),
            (3, "expr:eq(mod(n,120),0)", "3.999990", "14.000000"),
            (5, "expr:eq(mod(n,120),0)", "3.999990", "22.000000"),
        ];
        for (first, keys, target, offset) in cases {
            let mut s = spec(Family::Software, "libx264");
            s.window = window(first, None, 0);
            s.window.grid = RunWindow::grid_for((30, 1), 4, true);
            let a = ffmpeg_args(&s);
            assert_eq!(
                pair(&a, "-force_key_frames").as_deref(),
                Some(keys),
                "{first}"
            );
            assert_eq!(pair(&a, "-hls_time").as_deref(), Some(target), "{first}");
            assert_eq!(
                pair(&a, "-output_ts_offset").as_deref(),
                Some(offset),
                "{first}"
            );
            assert_eq!(pair(&a, "-start_number"), Some(first.to_string()));
        }
        // Two segments from segment 1: 1 s + 2 s of frames.
        let mut s = spec(Family::Software, "libx264");
        s.window = window(1, Some(2), 0);
        s.window.grid = RunWindow::grid_for((30, 1), 4, true);
        let vf = pair(&ffmpeg_args(&s), "-vf").unwrap();
        assert!(vf.starts_with("trim=start_frame=30:end_frame=120,"), "{vf}");
    }

    #[test]
    fn software_arguments() {
        let a = ffmpeg_args(&spec(Family::Software, "libx264"));
        let cases: &[(&str, &str)] = &[
            ("-i", "file:/media/a.mkv"),
            ("-c:v", "libx264"),
            ("-b:v", "1000k"),
            ("-maxrate", "1000k"),
            ("-bufsize", "2000k"),
            ("-g", "120"),
            ("-force_key_frames", "expr:eq(mod(n,120),0)"),
            ("-sc_threshold", "0"),
            ("-c:a", "aac"),
            ("-ac", "2"),
            ("-f", "hls"),
            ("-hls_time", "3.999990"),
            ("-hls_playlist_type", "event"),
            ("-hls_list_size", "0"),
            ("-hls_flags", "independent_segments+temp_file"),
            ("-start_number", "0"),
            ("-hls_segment_filename", "/out/job/seg%d.ts"),
            ("-progress", "pipe:1"),
            ("-protocol_whitelist", "file"),
        ];
        for (flag, value) in cases {
            assert_eq!(pair(&a, flag).as_deref(), Some(*value), "{flag} in {a:?}");
        }
        assert!(pair(&a, "-vf")
            .unwrap()
            .ends_with(",scale=1280:720,format=yuv420p"));
        // Input seek: -ss before -i.
        let ss = a.iter().position(|x| x == "-ss").unwrap();
        let i = a.iter().position(|x| x == "-i").unwrap();
        assert!(ss < i);
        assert_eq!(a.last().map(String::as_str), Some("/out/job/index.m3u8"));
        assert!(
            !a.iter().any(|x| x == "-nostdin"),
            "stdin carries the `q` that cancels"
        );
    }

    #[test]
    fn encoders_by_preference_or_by_the_jobs_word() {
        let names: Vec<&str> = PREFERENCE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, transcode_common::wire::H264_ENCODERS);
        let passed = |l: &[&str]| -> Vec<String> { l.iter().map(|s| s.to_string()).collect() };
        let cases: &[(&[&str], Option<&str>, Option<&str>)] = &[
            (&["libx264", "h264_vaapi"], None, Some("h264_vaapi")),
            (&["libx264", "h264_vaapi"], Some("libx264"), Some("libx264")),
            (&["libx264"], Some("h264_nvenc"), None),
            (&[], None, None),
            (&["libx264"], Some("x265"), None),
        ];
        for (have, wanted, want) in cases {
            let got = choose_encoder(&passed(have), *wanted).map(|(n, _)| n);
            assert_eq!(got, *want, "{have:?} {wanted:?}");
        }
    }

    #[test]
    fn threads_cap_decoding_filters_and_encoding() {
        let all = ffmpeg_args(&spec(Family::Software, "libx264"));
        assert!(!all
            .iter()
            .any(|x| x == "-threads" || x == "-filter_threads"));
        let mut one = spec(Family::Software, "libx264");
        one.threads = 1;
        let a = ffmpeg_args(&one);
        let at = |flag: &str| -> Vec<usize> {
            a.iter()
                .enumerate()
                .filter(|(_, x)| *x == flag)
                .map(|(i, _)| i)
                .collect()
        };
        let input = at("-i")[0];
        let encoder = at("-c:v")[0];
        let threads = at("-threads");
        // Once for the decoder (before -i), once for the encoder (after -c:v).
        assert_eq!(threads.len(), 2, "{a:?}");
        assert!(threads[0] < input && threads[1] > encoder, "{a:?}");
        assert!(threads.iter().all(|i| a[i + 1] == "1"));
        assert_eq!(pair(&a, "-filter_threads").as_deref(), Some("1"));
    }

    #[test]
    fn hardware_arguments() {
        type Case<'a> = (Family, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                Family::Nvenc,
                "h264_nvenc",
                &[("-g", "120"), ("-keyint_min", "120"), ("-forced-idr", "1")],
            ),
            (Family::Qsv, "h264_qsv", &[("-g", "120")]),
            (
                Family::Vaapi,
                "h264_vaapi",
                &[("-g", "120"), ("-vaapi_device", "/dev/dri/renderD128")],
            ),
            (Family::Amf, "h264_amf", &[("-g", "120")]),
        ];
        for (family, encoder, pairs) in cases {
            let a = ffmpeg_args(&spec(*family, encoder));
            assert_eq!(pair(&a, "-c:v").as_deref(), Some(*encoder));
            assert!(
                !a.iter().any(|x| x == "-force_key_frames"),
                "{encoder} ignores it"
            );
            for (flag, value) in *pairs {
                assert_eq!(
                    pair(&a, flag).as_deref(),
                    Some(*value),
                    "{encoder}: {flag} in {a:?}"
                );
            }
        }
        let tail = |f, e| pair(&ffmpeg_args(&spec(f, e)), "-vf").unwrap();
        assert!(tail(Family::Qsv, "h264_qsv").ends_with("scale=1280:720,format=nv12"));
        assert!(tail(Family::Vaapi, "h264_vaapi").ends_with("format=nv12,hwupload"));
    }

    #[test]
    fn no_audio() {
        let mut s = spec(Family::Software, "libx264");
        s.has_audio = false;
        let a = ffmpeg_args(&s);
        assert!(
            !a.iter()
                .any(|x| x == "0:a:0" || x == "-c:a" || x == "-af" || x == "-bsf:a"),
            "{a:?}"
        );
    }

    #[test]
    fn output_file_names() {
        let cases = [
            ("index.m3u8", true),
            ("seg0.ts", true),
            ("seg123.ts", true),
            ("seg.ts", false),
            ("seg1.ts.tmp", false),
            ("index.m3u8.tmp", false),
            ("../index.m3u8", false),
            ("seg-1.ts", false),
            ("seg1a.ts", false),
            ("SEG1.TS", false),
            ("seg1/../../x.ts", false),
            ("", false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_output_file(name), ok, "{name}");
        }
    }
}
