//! The FFmpeg command line for a job, built without IO: encoder choice,
//! output size, rate control, keyframes on segment boundaries, and an HLS
//! event playlist whose segments appear as soon as each is complete.

use std::path::Path;

use transcode_common::validate::Bitrate;

use crate::probe::Family;

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

/// The best H.264 encoder among those that passed the probe.
pub fn choose_encoder(passed: &[String]) -> Option<(&'static str, Family)> {
    PREFERENCE
        .into_iter()
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

/// Everything one encode needs.
#[derive(Debug, Clone)]
pub struct EncodeSpec<'a> {
    /// The source as a `file:` URL.
    pub input: &'a str,
    pub out_dir: &'a Path,
    /// Input seek, seconds.
    pub start_time: f64,
    /// How much to encode; `None`: to the end.
    pub duration: Option<f64>,
    pub size: (u32, u32),
    pub bitrate: Bitrate,
    pub encoder: &'a str,
    pub family: Family,
    /// Source frame rate, for the GOP of encoders that ignore forced keyframes.
    pub fps: f64,
    pub has_audio: bool,
    pub segment_seconds: u32,
    /// Number of the first segment, so a resumed job continues the numbering.
    pub start_number: u64,
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
    format!("{v:.3}")
}

pub fn ffmpeg_args(spec: &EncodeSpec) -> Vec<String> {
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
    if spec.start_time > 0.0 {
        push(&["-ss", &secs(spec.start_time)]);
    }
    // Only local files, whatever the source names inside it.
    push(&["-protocol_whitelist", "file", "-i", spec.input]);
    if let Some(d) = spec.duration {
        push(&["-t", &secs(d)]);
    }
    push(&["-map", "0:v:0"]);
    if spec.has_audio {
        push(&["-map", "0:a:0"]);
    }
    push(&["-sn", "-dn"]);

    let (w, h) = spec.size;
    let filter = match spec.family {
        Family::Vaapi => format!("scale={w}:{h},format=nv12,hwupload"),
        Family::Qsv => format!("scale={w}:{h},format=nv12"),
        _ => format!("scale={w}:{h},format=yuv420p"),
    };
    push(&["-vf", &filter, "-c:v", spec.encoder]);

    let seg = spec.segment_seconds.max(1);
    let gop = ((seg as f64) * spec.fps).round().max(1.0).to_string();
    match spec.family {
        Family::Software => push(&[
            "-preset",
            "veryfast",
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{seg})"),
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
        push(&["-c:a", "aac", "-ac", "2", "-b:a", "128k"]);
    }
    if spec.start_number > 0 {
        // A resumed job's timestamps continue where the player is.
        push(&["-output_ts_offset", &secs(spec.start_time)]);
    }
    push(&[
        "-f",
        "hls",
        "-hls_time",
        &seg.to_string(),
        "-hls_playlist_type",
        "event",
        "-hls_list_size",
        "0",
        "-hls_flags",
        "independent_segments+temp_file",
        "-start_number",
        &spec.start_number.to_string(),
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
                choose_encoder(&s(passed)).map(|(e, _)| e),
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

    fn spec(family: Family, encoder: &'static str) -> EncodeSpec<'static> {
        EncodeSpec {
            input: "file:/media/a.mkv",
            out_dir: Path::new("/out/job"),
            start_time: 6.0,
            duration: None,
            size: (1280, 720),
            bitrate: Bitrate(1_000_000),
            encoder,
            family,
            fps: 30.0,
            has_audio: true,
            segment_seconds: 4,
            start_number: 0,
        }
    }

    fn pair(args: &[String], flag: &str) -> Option<String> {
        args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
    }

    #[test]
    fn software_arguments() {
        let a = ffmpeg_args(&spec(Family::Software, "libx264"));
        let cases: &[(&str, &str)] = &[
            ("-ss", "6.000"),
            ("-i", "file:/media/a.mkv"),
            ("-c:v", "libx264"),
            ("-vf", "scale=1280:720,format=yuv420p"),
            ("-b:v", "1000k"),
            ("-maxrate", "1000k"),
            ("-bufsize", "2000k"),
            ("-force_key_frames", "expr:gte(t,n_forced*4)"),
            ("-sc_threshold", "0"),
            ("-c:a", "aac"),
            ("-ac", "2"),
            ("-f", "hls"),
            ("-hls_time", "4"),
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
        // Input seek: -ss before -i.
        let ss = a.iter().position(|x| x == "-ss").unwrap();
        let i = a.iter().position(|x| x == "-i").unwrap();
        assert!(ss < i);
        assert_eq!(a.last().map(String::as_str), Some("/out/job/index.m3u8"));
        assert!(
            !a.iter().any(|x| x == "-nostdin"),
            "stdin carries the `q` that cancels"
        );
        assert!(!a.iter().any(|x| x == "-output_ts_offset"));
    }

    #[test]
    fn hardware_arguments() {
        type Case<'a> = (Family, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                Family::Nvenc,
                "h264_nvenc",
                &[
                    ("-g", "120"),
                    ("-keyint_min", "120"),
                    ("-forced-idr", "1"),
                    ("-vf", "scale=1280:720,format=yuv420p"),
                ],
            ),
            (
                Family::Qsv,
                "h264_qsv",
                &[("-g", "120"), ("-vf", "scale=1280:720,format=nv12")],
            ),
            (
                Family::Vaapi,
                "h264_vaapi",
                &[
                    ("-g", "120"),
                    ("-vaapi_device", "/dev/dri/renderD128"),
                    ("-vf", "scale=1280:720,format=nv12,hwupload"),
                ],
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
    }

    #[test]
    fn no_audio_no_seek_resume_and_duration() {
        let mut s = spec(Family::Software, "libx264");
        s.has_audio = false;
        s.start_time = 0.0;
        let a = ffmpeg_args(&s);
        assert!(
            !a.iter().any(|x| x == "-ss" || x == "0:a:0" || x == "-c:a"),
            "{a:?}"
        );

        let mut s = spec(Family::Software, "libx264");
        s.start_number = 5;
        s.start_time = 20.0;
        s.duration = Some(8.0);
        let a = ffmpeg_args(&s);
        assert_eq!(pair(&a, "-start_number").as_deref(), Some("5"));
        assert_eq!(pair(&a, "-output_ts_offset").as_deref(), Some("20.000"));
        assert_eq!(pair(&a, "-t").as_deref(), Some("8.000"));
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
