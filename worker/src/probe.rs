//! Which encoders really work on this machine.
//!
//! `ffmpeg -encoders` lists what was compiled in, not what works (NOTES.md):
//! a machine without a GPU still lists NVENC. So every candidate encoder
//! that is compiled in gets a real one-frame test encode, all of them at
//! once, each with a timeout; only those that exit 0 are reported.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::config::HwAccel;

/// A family of encoders that share a driver stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Nvenc,
    Qsv,
    Vaapi,
    Amf,
    VideoToolbox,
    V4l2m2m,
    Software,
}

impl Family {
    pub const HARDWARE: [Family; 6] = [
        Family::Nvenc,
        Family::Qsv,
        Family::Vaapi,
        Family::Amf,
        Family::VideoToolbox,
        Family::V4l2m2m,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Family::Nvenc => "nvenc",
            Family::Qsv => "qsv",
            Family::Vaapi => "vaapi",
            Family::Amf => "amf",
            Family::VideoToolbox => "videotoolbox",
            Family::V4l2m2m => "v4l2m2m",
            Family::Software => "software",
        }
    }

    pub fn from_name(name: &str) -> Option<Family> {
        Family::HARDWARE.into_iter().find(|f| f.name() == name)
    }

    /// What a heartbeat's `hw_accel` says when this family works.
    pub fn hw_accel_names(&self) -> &'static [&'static str] {
        match self {
            Family::Nvenc => &["nvenc", "cuda"],
            Family::Qsv => &["qsv"],
            Family::Vaapi => &["vaapi"],
            Family::Amf => &["amf"],
            Family::VideoToolbox => &["videotoolbox"],
            Family::V4l2m2m => &["v4l2m2m"],
            Family::Software => &[],
        }
    }
}

/// The render node VAAPI uses on Linux.
pub const VAAPI_DEVICE: &str = "/dev/dri/renderD128";

/// Every encoder we know how to drive, in order of preference within its
/// family.
pub const CANDIDATES: [(&str, Family); 13] = [
    ("h264_nvenc", Family::Nvenc),
    ("hevc_nvenc", Family::Nvenc),
    ("h264_qsv", Family::Qsv),
    ("hevc_qsv", Family::Qsv),
    ("h264_vaapi", Family::Vaapi),
    ("hevc_vaapi", Family::Vaapi),
    ("h264_amf", Family::Amf),
    ("hevc_amf", Family::Amf),
    ("h264_videotoolbox", Family::VideoToolbox),
    ("hevc_videotoolbox", Family::VideoToolbox),
    ("h264_v4l2m2m", Family::V4l2m2m),
    ("hevc_v4l2m2m", Family::V4l2m2m),
    ("libx264", Family::Software),
];

/// The candidates the setting allows, in table order.
pub fn candidates_for(setting: &HwAccel) -> Vec<(&'static str, Family)> {
    CANDIDATES
        .into_iter()
        .filter(|(_, family)| match setting {
            HwAccel::Auto => true,
            HwAccel::None => *family == Family::Software,
            HwAccel::Only(allowed) => *family == Family::Software || allowed.contains(family),
        })
        .collect()
}

/// The arguments of a one-frame test encode with `encoder`.
pub fn test_encode_args(encoder: &str, family: Family) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    if family == Family::Vaapi {
        args.extend(["-vaapi_device".into(), VAAPI_DEVICE.into()]);
    }
    args.extend(["-f", "lavfi", "-i", "color=black:s=256x256:r=25:d=1"].map(String::from));
    match family {
        Family::Vaapi => args.extend(["-vf".into(), "format=nv12,hwupload".into()]),
        Family::Qsv => args.extend(["-pix_fmt".into(), "nv12".into()]),
        _ => args.extend(["-pix_fmt".into(), "yuv420p".into()]),
    }
    args.extend(["-frames:v", "1", "-c:v", encoder, "-f", "null", "-"].map(String::from));
    args
}

/// Encoder names in the output of `ffmpeg -encoders`.
pub fn parse_encoder_list(output: &str) -> Vec<String> {
    // Lines look like " V....D libx264   libx264 H.264 / AVC ...", after a
    // legend that ends with " ------".
    output
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("------"))
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let flags = parts.next()?;
            let name = parts.next()?;
            (flags.len() == 6).then(|| name.to_string())
        })
        .collect()
}

/// How one candidate fared.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub encoder: &'static str,
    pub family: Family,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Works,
    /// Not compiled into this FFmpeg: not tried.
    NotCompiledIn,
    /// The test encode failed; the last line FFmpeg printed.
    Failed(String),
    TimedOut,
}

/// Everything the probe found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeReport {
    pub results: Vec<ProbeResult>,
    /// Set when FFmpeg itself could not be run.
    pub ffmpeg_error: Option<String>,
    pub elapsed: Duration,
}

impl ProbeReport {
    /// Encoders that passed, in table order.
    pub fn encoders(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Works)
            .map(|r| r.encoder.to_string())
            .collect()
    }

    /// Hardware families that passed, as heartbeat names.
    pub fn hw_accel(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.results.iter().filter(|r| r.outcome == Outcome::Works) {
            for name in r.family.hw_accel_names() {
                if !out.iter().any(|n| n == name) {
                    out.push(name.to_string());
                }
            }
        }
        out
    }

    /// The table `transcode-worker probe` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.ffmpeg_error {
            out.push_str(&format!("FFmpeg could not be run: {e}\n"));
        }
        out.push_str(&format!(
            "{:<20} {:<13} {:<16} {:>7}  detail\n",
            "encoder", "family", "result", "time"
        ));
        for r in &self.results {
            let (result, detail) = match &r.outcome {
                Outcome::Works => ("works", String::new()),
                Outcome::NotCompiledIn => ("not compiled in", String::new()),
                Outcome::Failed(why) => ("failed", why.clone()),
                Outcome::TimedOut => ("timed out", String::new()),
            };
            out.push_str(&format!(
                "{:<20} {:<13} {:<16} {:>6.2}s  {}\n",
                r.encoder,
                r.family.name(),
                result,
                r.elapsed.as_secs_f64(),
                detail
            ));
        }
        out.push_str(&format!(
            "\nhw_accel: [{}]\nencoders: [{}]\nprobe took {:.2}s\n",
            self.hw_accel().join(", "),
            self.encoders().join(", "),
            self.elapsed.as_secs_f64()
        ));
        out
    }
}

/// Runs the probe: lists the compiled-in encoders, then test-encodes every
/// allowed candidate concurrently.
pub async fn run(ffmpeg: &str, setting: &HwAccel, timeout: Duration) -> ProbeReport {
    let started = Instant::now();
    let listed = match tokio::time::timeout(
        timeout,
        Command::new(ffmpeg)
            .args(["-hide_banner", "-nostdin", "-encoders"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    {
        Ok(Ok(out)) if out.status.success() => {
            parse_encoder_list(&String::from_utf8_lossy(&out.stdout))
        }
        Ok(Ok(out)) => {
            return failed_report(
                format!(
                    "`{ffmpeg} -encoders` exited with {}: {}",
                    out.status,
                    last_line(&out.stderr)
                ),
                started,
            )
        }
        Ok(Err(e)) => {
            return failed_report(
                format!("cannot run {ffmpeg:?} ({e}); install FFmpeg or set transcode.ffmpeg"),
                started,
            )
        }
        Err(_) => return failed_report(format!("`{ffmpeg} -encoders` did not answer"), started),
    };

    let tasks = candidates_for(setting)
        .into_iter()
        .map(|(encoder, family)| {
            let compiled_in = listed.iter().any(|e| e == encoder);
            let ffmpeg = ffmpeg.to_string();
            async move {
                let t0 = Instant::now();
                let outcome = if compiled_in {
                    test_encode(&ffmpeg, encoder, family, timeout).await
                } else {
                    Outcome::NotCompiledIn
                };
                ProbeResult {
                    encoder,
                    family,
                    outcome,
                    elapsed: t0.elapsed(),
                }
            }
        });
    let results = futures_join_all(tasks).await;
    ProbeReport {
        results,
        ffmpeg_error: None,
        elapsed: started.elapsed(),
    }
}

fn failed_report(error: String, started: Instant) -> ProbeReport {
    ProbeReport {
        results: Vec::new(),
        ffmpeg_error: Some(error),
        elapsed: started.elapsed(),
    }
}

async fn test_encode(ffmpeg: &str, encoder: &str, family: Family, timeout: Duration) -> Outcome {
    let child = Command::new(ffmpeg)
        .args(test_encode_args(encoder, family))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) if out.status.success() => Outcome::Works,
        Ok(Ok(out)) => Outcome::Failed(first_line(&out.stderr)),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::TimedOut,
    }
}

/// The last non-empty line of FFmpeg's stderr, shortened.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty());
    transcode_common::validate::truncate(line.unwrap_or("no message"), 160)
}

/// The first non-empty line of FFmpeg's stderr (the root cause, such as
/// "Cannot load libcuda.so.1"), without its "[h264_nvenc @ 0x...]" tag.
pub fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    let line = match (line.starts_with('['), line.find("] ")) {
        (true, Some(i)) => &line[i + 2..],
        _ => line,
    };
    transcode_common::validate::truncate(line, 160)
}

/// Awaits all futures concurrently, keeping their order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futures.enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<(usize, F::Output)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(pair) = joined {
            out.push(pair);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_setting() {
        let names =
            |s: &HwAccel| -> Vec<&str> { candidates_for(s).into_iter().map(|(e, _)| e).collect() };
        assert_eq!(names(&HwAccel::None), vec!["libx264"]);
        assert_eq!(names(&HwAccel::Auto).len(), CANDIDATES.len());
        assert_eq!(
            names(&HwAccel::Only(vec![Family::Nvenc])),
            vec!["h264_nvenc", "hevc_nvenc", "libx264"]
        );
    }

    #[test]
    fn test_encodes_prepare_each_family() {
        let cases: &[(&str, Family, &[&str])] = &[
            (
                "h264_vaapi",
                Family::Vaapi,
                &["-vaapi_device", VAAPI_DEVICE, "format=nv12,hwupload"],
            ),
            ("h264_qsv", Family::Qsv, &["nv12"]),
            ("h264_nvenc", Family::Nvenc, &["yuv420p"]),
            ("libx264", Family::Software, &["yuv420p"]),
        ];
        for (encoder, family, needles) in cases {
            let args = test_encode_args(encoder, *family);
            assert!(args.windows(2).any(|w| w[0] == "-c:v" && w[1] == *encoder));
            assert!(args.windows(2).any(|w| w[0] == "-frames:v" && w[1] == "1"));
            for n in *needles {
                assert!(args.iter().any(|a| a == n), "{encoder}: {n} in {args:?}");
            }
            assert_eq!(args.last().map(String::as_str), Some("-"));
        }
    }

    #[test]
    fn first_line_is_the_cause() {
        let cases: &[(&str, &str)] = &[
            (
                "[h264_nvenc @ 0x55] Cannot load libcuda.so.1\nError initializing\n",
                "Cannot load libcuda.so.1",
            ),
            ("\n\nplain failure\n", "plain failure"),
            ("", "no message"),
            ("[broken tag without end", "[broken tag without end"),
        ];
        for (stderr, want) in cases {
            assert_eq!(first_line(stderr.as_bytes()), *want);
        }
    }

    #[test]
    fn encoder_list_is_parsed() {
        let out = "Encoders:\n V..... = Video\n A..... = Audio\n ------\n V....D libx264              libx264 H.264\n V....D h264_nvenc           NVIDIA NVENC\n A....D aac                  AAC\n";
        assert_eq!(
            parse_encoder_list(out),
            vec!["libx264", "h264_nvenc", "aac"]
        );
        assert!(parse_encoder_list("garbage").is_empty());
    }

    #[test]
    fn report_lists_only_what_worked() {
        let r = |encoder, family, outcome| ProbeResult {
            encoder,
            family,
            outcome,
            elapsed: Duration::ZERO,
        };
        let report = ProbeReport {
            results: vec![
                r("h264_nvenc", Family::Nvenc, Outcome::Works),
                r("hevc_nvenc", Family::Nvenc, Outcome::Works),
                r("h264_qsv", Family::Qsv, Outcome::Failed("no device".into())),
                r("h264_vaapi", Family::Vaapi, Outcome::TimedOut),
                r("h264_amf", Family::Amf, Outcome::NotCompiledIn),
                r("libx264", Family::Software, Outcome::Works),
            ],
            ffmpeg_error: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(report.hw_accel(), vec!["nvenc", "cuda"]);
        assert_eq!(
            report.encoders(),
            vec!["h264_nvenc", "hevc_nvenc", "libx264"]
        );
        let table = report.table();
        assert!(table.contains("no device"));
        assert!(table.contains("hw_accel: [nvenc, cuda]"));
    }
}
