//! What a source holds, read with ffprobe before encoding: the duration
//! gives progress its denominator, the video size and rotation give the
//! output size, and the audio flag decides whether to encode audio.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::media::Input;

/// The facts about a source that an encode needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Seconds; `None` for a stream without a known length.
    pub duration: Option<f64>,
    /// The picture size as displayed (rotation applied).
    pub width: u32,
    pub height: u32,
    /// Frames per second; 25 when the file does not say.
    pub fps: f64,
    /// The frame rate as a fraction (numerator, denominator): the frame
    /// grid of a job is counted on it.
    pub rate: (u32, u32),
    /// The frames are not evenly spaced (the average rate is not the base
    /// rate): the encode first makes the rate constant.
    pub variable_rate: bool,
    /// Seconds from the start of the file (what `-ss` counts from) to the
    /// first video frame.
    pub video_start: f64,
    pub has_audio: bool,
    /// The first audio stream's sample rate.
    pub sample_rate: Option<u32>,
    pub video_codec: String,
}

/// Demuxers that read other files or streams named inside the source (a
/// playlist, a list, an image pattern, a session description): a file under
/// the media root could make FFmpeg read files outside it.
const REFERRING_FORMATS: [&str; 8] = [
    "hls",
    "concat",
    "image2",
    "dash",
    "sdp",
    "webm_dash_manifest",
    "ffmetadata",
    "tee",
];

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    start_time: Option<String>,
    sample_rate: Option<String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    disposition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
    start_time: Option<String>,
    format_name: Option<String>,
}

/// `30000/1001` → (30000, 1001); `0/0`, huge and garbage → None.
pub fn parse_fraction(rate: &str) -> Option<(u32, u32)> {
    let (n, d) = rate.split_once('/').unwrap_or((rate, "1"));
    let (n, d) = (n.trim().parse::<u32>().ok()?, d.trim().parse::<u32>().ok()?);
    let fps = f64::from(n) / f64::from(d.max(1));
    (n > 0 && d > 0 && (1.0..=240.0).contains(&fps)).then_some((n, d))
}

/// The usual frame rate nearest `rate` (within 5 %), or `rate` rounded to
/// a whole number of frames per second.
pub fn standard_rate(rate: (u32, u32)) -> (u32, u32) {
    const STANDARD: [(u32, u32); 9] = [
        (24000, 1001),
        (24, 1),
        (25, 1),
        (30000, 1001),
        (30, 1),
        (48, 1),
        (50, 1),
        (60000, 1001),
        (60, 1),
    ];
    let value = |(n, d): (u32, u32)| f64::from(n) / f64::from(d.max(1));
    let fps = value(rate);
    let nearest = STANDARD
        .into_iter()
        .min_by(|a, b| (value(*a) - fps).abs().total_cmp(&(value(*b) - fps).abs()));
    match nearest {
        Some(s) if (value(s) - fps).abs() <= fps * 0.05 => s,
        _ => ((fps.round().max(1.0)) as u32, 1),
    }
}

/// `30000/1001` → 29.97; `0/0` and garbage → None.
pub fn parse_rate(rate: &str) -> Option<f64> {
    let (n, d) = rate.split_once('/').unwrap_or((rate, "1"));
    let (n, d) = (n.trim().parse::<f64>().ok()?, d.trim().parse::<f64>().ok()?);
    let r = n / d;
    (r.is_finite() && r > 0.0 && r < 1000.0).then_some(r)
}

fn parse_seconds(s: Option<&str>) -> Option<f64> {
    s?.trim()
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Rotation in degrees from the display matrix side data or the old
/// `rotate` tag.
fn rotation(stream: &Stream) -> i64 {
    let from_side = stream
        .side_data_list
        .iter()
        .find_map(|sd| sd.get("rotation").and_then(|r| r.as_f64()));
    let from_tag = stream
        .tags
        .get("rotate")
        .and_then(|r| r.as_str())
        .and_then(|r| r.parse::<f64>().ok());
    from_side.or(from_tag).unwrap_or(0.0).round() as i64
}

/// Reads ffprobe's `-print_format json -show_format -show_streams` output.
pub fn parse(json: &str) -> Result<SourceInfo, String> {
    let probe: Probe =
        serde_json::from_str(json).map_err(|e| format!("ffprobe's answer is unreadable: {e}"))?;
    let format = probe
        .format
        .as_ref()
        .and_then(|f| f.format_name.clone())
        .unwrap_or_default();
    if let Some(bad) = format.split(',').find(|f| REFERRING_FORMATS.contains(f)) {
        return Err(format!(
            "it is in the {bad} format, which reads other files named inside it; give the media file itself"
        ));
    }
    let video = probe
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.get("attached_pic").and_then(|v| v.as_i64()) != Some(1)
        })
        .ok_or_else(|| "it has no video stream".to_string())?;
    let (w, h) = match (video.width, video.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err("its video stream has no picture size".into()),
    };
    let (width, height) = if rotation(video).rem_euclid(180) == 90 {
        (h, w)
    } else {
        (w, h)
    };
    let fps = video
        .avg_frame_rate
        .as_deref()
        .and_then(parse_rate)
        .or_else(|| video.r_frame_rate.as_deref().and_then(parse_rate))
        .unwrap_or(25.0);
    let base = video.r_frame_rate.as_deref().and_then(parse_fraction);
    let average = video.avg_frame_rate.as_deref().and_then(parse_fraction);
    // Containers state rates differently (24000/1001 against 2997/125):
    // compare the values, not the fractions.
    let as_f64 = |(n, d): (u32, u32)| f64::from(n) / f64::from(d);
    let variable_rate = match (base, average) {
        (Some(b), Some(a)) => (as_f64(b) - as_f64(a)).abs() > 0.01,
        _ => false,
    };
    // A variable rate is made constant at the standard rate nearest its
    // average (its base rate can be a time base, such as 90000/1).
    let rate = if variable_rate {
        average.map(standard_rate)
    } else {
        base.or(average)
    }
    .unwrap_or_else(|| ((fps * 1000.0).round().max(1.0) as u32, 1000));
    let start = |s: Option<&str>| {
        s.and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let format_start = start(probe.format.as_ref().and_then(|f| f.start_time.as_deref()));
    let video_start = match (start(video.start_time.as_deref()), format_start) {
        (Some(v), Some(f)) => (v - f).clamp(0.0, 60.0),
        _ => 0.0,
    };
    let duration = parse_seconds(probe.format.as_ref().and_then(|f| f.duration.as_deref()))
        .or_else(|| parse_seconds(video.duration.as_deref()));
    Ok(SourceInfo {
        duration,
        width,
        height,
        fps: as_f64(rate),
        rate,
        variable_rate,
        video_start,
        has_audio: probe
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
        sample_rate: probe
            .streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some("audio"))
            .and_then(|s| s.sample_rate.as_deref())
            .and_then(|r| r.trim().parse::<u32>().ok())
            .filter(|r| (8_000..=384_000).contains(r)),
        video_codec: video.codec_name.clone().unwrap_or_default(),
    })
}

/// Runs ffprobe on `input` with a timeout.
pub async fn probe(ffprobe: &str, input: &Input, timeout: Duration) -> Result<SourceInfo, String> {
    let run = Command::new(ffprobe)
        .args(["-v", "error"])
        // Only the source's own protocol, whatever the source names inside it.
        .args(&input.options)
        .args(["-print_format", "json", "-show_format", "-show_streams"])
        .arg(&input.url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(format!(
                "ffprobe could not be run ({e}); install FFmpeg or set transcode.ffprobe"
            ))
        }
        Err(_) => return Err(format!("ffprobe did not answer within {timeout:?}")),
    };
    if !out.status.success() {
        return Err(format!(
            "it is not a media file FFmpeg can read ({})",
            crate::probe::first_line(&out.stderr)
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// What the frame timestamps say, from a few seconds at several places of
/// the file: whether the frames are evenly spaced at `base` frames per
/// second, and their average rate. Containers such as Matroska state a
/// constant rate for a variable-rate stream, so the timestamps decide.
pub fn frame_timing(pts: &[f64], base: f64) -> Option<(bool, f64)> {
    let mut pts: Vec<f64> = pts.iter().copied().filter(|t| t.is_finite()).collect();
    pts.sort_by(f64::total_cmp);
    // Steps inside the sampled windows (a step of a second or more is the
    // jump to the next window).
    let steps: Vec<f64> = pts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0.0 && *d < 1.0)
        .collect();
    if steps.len() < 10 || !(base.is_finite() && base > 0.0) {
        return None;
    }
    let nominal = 1.0 / base;
    // Millisecond timestamps put a 30 fps frame 33 or 34 ms apart.
    let tolerance = (nominal * 0.25).max(0.002);
    let uneven = steps
        .iter()
        .filter(|d| (*d - nominal).abs() > tolerance)
        .count();
    let average = steps.len() as f64 / steps.iter().sum::<f64>();
    Some((uneven * 20 > steps.len(), average))
}

/// Reads the video timestamps of `seconds` at four places of the file.
pub async fn sample_frame_times(
    ffprobe: &str,
    input: &Input,
    duration: Option<f64>,
    seconds: u32,
    timeout: Duration,
) -> Vec<f64> {
    let length = duration.unwrap_or(0.0);
    let intervals: Vec<String> = [0.0, 0.3, 0.55, 0.8]
        .iter()
        .map(|f| format!("{:.3}%+{seconds}", f * length))
        .collect();
    let run = Command::new(ffprobe)
        .args(["-v", "error"])
        .args(&input.options)
        .args([
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            "-read_intervals",
            &intervals.join(","),
        ])
        .arg(&input.url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_timings() {
        let even = |fps: f64, from: f64, n: usize| -> Vec<f64> {
            (0..n).map(|i| from + i as f64 / fps).collect()
        };
        // Millisecond rounding of 30 fps: 33 and 34 ms steps.
        let ms: Vec<f64> = even(30.0, 0.0, 90)
            .iter()
            .map(|t| (t * 1000.0).round() / 1000.0)
            .collect();
        let mut mixed = even(30.0, 0.0, 90);
        mixed.extend(even(20.0, 10.0, 60));
        mixed.extend(even(20.0, 20.0, 60));
        let cases: Vec<(Vec<f64>, f64, Option<bool>)> = vec![
            (even(30.0, 0.0, 90), 30.0, Some(false)),
            (ms, 30.0, Some(false)),
            (even(23.976, 5.0, 72), 23.976, Some(false)),
            (mixed, 30.0, Some(true)),
            (even(30.0, 0.0, 5), 30.0, None),
            (Vec::new(), 30.0, None),
            (even(30.0, 0.0, 90), 0.0, None),
        ];
        for (pts, base, want) in cases {
            assert_eq!(
                frame_timing(&pts, base).map(|(v, _)| v),
                want,
                "{} stamps at {base}",
                pts.len()
            );
        }
        let (_, avg) = frame_timing(&even(20.0, 0.0, 60), 30.0).unwrap();
        assert!((avg - 20.0).abs() < 0.01, "{avg}");
    }

    use super::*;

    #[test]
    fn variable_rates_are_made_standard() {
        let cases = [
            ((2997, 100), (30000, 1001)),
            ((1400, 60), (24000, 1001)),
            ((2500, 100), (25, 1)),
            ((30, 1), (30, 1)),
            ((15, 1), (15, 1)),
            ((120, 1), (120, 1)),
            ((59940, 1000), (60000, 1001)),
        ];
        for (rate, want) in cases {
            assert_eq!(standard_rate(rate), want, "{rate:?}");
        }
    }

    #[test]
    fn rates() {
        let cases: &[(&str, Option<f64>)] = &[
            ("30/1", Some(30.0)),
            ("30000/1001", Some(29.97002997002997)),
            ("25", Some(25.0)),
            ("0/0", None),
            ("1/0", None),
            ("abc", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rate(text), *want, "{text}");
        }
    }

    fn probe_json(video: &str, audio: bool, format_duration: &str) -> String {
        let audio = if audio {
            r#",{"codec_type":"audio","codec_name":"aac"}"#
        } else {
            ""
        };
        format!(r#"{{"streams":[{video}{audio}],"format":{{"duration":{format_duration}}}}}"#)
    }

    #[test]
    fn sources() {
        let plain = r#"{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30/1"}"#;
        let rotated = r#"{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30000/1001","side_data_list":[{"rotation":-90}]}"#;
        let tagged = r#"{"codec_type":"video","codec_name":"h264","width":640,"height":480,"r_frame_rate":"25/1","avg_frame_rate":"0/0","tags":{"rotate":"270"}}"#;
        let odd = r#"{"codec_type":"video","codec_name":"mpeg4","width":641,"height":361,"duration":"12.5"}"#;
        let cover = r#"{"codec_type":"video","codec_name":"mjpeg","width":500,"height":500,"disposition":{"attached_pic":1}}"#;
        type Want = Result<(u32, u32, f64, bool, Option<f64>), &'static str>;
        let cases: Vec<(String, Want)> = vec![
            (
                probe_json(plain, true, "\"24.000\""),
                Ok((1920, 1080, 30.0, true, Some(24.0))),
            ),
            (
                probe_json(rotated, false, "\"10.0\""),
                Ok((1080, 1920, 29.97002997002997, false, Some(10.0))),
            ),
            (
                probe_json(tagged, true, "\"N/A\""),
                Ok((480, 640, 25.0, true, None)),
            ),
            (
                probe_json(odd, false, "null"),
                Ok((641, 361, 25.0, false, Some(12.5))),
            ),
            (probe_json(cover, true, "\"3\""), Err("no video stream")),
            (
                r#"{"streams":[{"codec_type":"audio"}],"format":{}}"#.into(),
                Err("no video stream"),
            ),
            (
                r#"{"streams":[{"codec_type":"video"}]}"#.into(),
                Err("no picture size"),
            ),
            ("not json".into(), Err("unreadable")),
        ];
        for (json, want) in cases {
            let got = parse(&json);
            match (&got, want) {
                (Ok(info), Ok((w, h, fps, audio, duration))) => {
                    assert_eq!(
                        (
                            info.width,
                            info.height,
                            info.fps,
                            info.has_audio,
                            info.duration
                        ),
                        (w, h, fps, audio, duration),
                        "{json}"
                    );
                }
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{json}: {e}"),
                _ => panic!("{json}: {got:?}"),
            }
        }
    }
}
