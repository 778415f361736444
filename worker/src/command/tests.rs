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
