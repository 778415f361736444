//! Reading FFmpeg's `-progress pipe:1` output and its stderr, without IO.
//!
//! Progress comes in blocks of `key=value` lines closed by
//! `progress=continue` or `progress=end`. Values may be `N/A`, `speed` may
//! carry spaces (`speed= 1.9x`), and `out_time_ms` is in microseconds like
//! `out_time_us` (NOTES.md).

/// One block of progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Seconds of output written, counted from the seek point.
    pub out_time_s: Option<f64>,
    pub fps: Option<f64>,
    /// Multiple of real time.
    pub speed: Option<f64>,
    pub frame: Option<u64>,
    /// The last block: FFmpeg is finishing.
    pub end: bool,
}

/// Collects lines into blocks.
#[derive(Debug, Default)]
pub struct ProgressParser {
    block: Progress,
}

fn value(v: &str) -> Option<&str> {
    let v = v.trim();
    (!v.is_empty() && v != "N/A").then_some(v)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// `HH:MM:SS.micro`, possibly negative at the very start.
fn clock(v: &str) -> Option<f64> {
    let negative = v.starts_with('-');
    let mut total = 0.0;
    for part in v.trim_start_matches('-').split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    finite(if negative { -total } else { total })
}

impl ProgressParser {
    /// Feeds one line; returns a block when one is complete.
    pub fn feed(&mut self, line: &str) -> Option<Progress> {
        let (key, raw) = line.trim().split_once('=')?;
        let v = value(raw);
        match key.trim() {
            "out_time_us" | "out_time_ms" => {
                if let Some(us) = v.and_then(|v| v.parse::<f64>().ok()).and_then(finite) {
                    self.block.out_time_s = Some((us / 1_000_000.0).max(0.0));
                }
            }
            "out_time" if self.block.out_time_s.is_none() => {
                self.block.out_time_s = v.and_then(clock).map(|s| s.max(0.0));
            }
            "fps" => self.block.fps = v.and_then(|v| v.parse().ok()).and_then(finite),
            "speed" => {
                self.block.speed = v
                    .map(|v| v.trim_end_matches('x').trim())
                    .and_then(|v| v.parse().ok())
                    .and_then(finite)
            }
            "frame" => self.block.frame = v.and_then(|v| v.parse().ok()),
            "progress" => {
                let mut done = std::mem::take(&mut self.block);
                done.end = v == Some("end");
                return Some(done);
            }
            _ => {}
        }
        None
    }
}

/// Percent done of `total_s` seconds of output, kept below 100 until the
/// encode has really finished.
pub fn percent(out_time_s: f64, total_s: Option<f64>) -> f64 {
    match total_s {
        Some(total) if total > 0.0 => {
            // A tenth of a percent is all a person reads.
            ((out_time_s / total * 1000.0).round() / 10.0).clamp(0.0, 99.9)
        }
        _ => 0.0,
    }
}

/// Seconds until done at the current speed.
pub fn eta(out_time_s: f64, total_s: Option<f64>, speed: Option<f64>) -> Option<f64> {
    let (total, speed) = (total_s?, speed?);
    (speed > 0.0).then(|| ((total - out_time_s).max(0.0) / speed * 10.0).round() / 10.0)
}

/// The segments an FFmpeg HLS playlist lists, as (number, seconds): the
/// number from the `seg<N>.ts` name, the length from the `#EXTINF` before
/// it. Lines that do not fit are skipped.
pub fn playlist_entries(playlist: &str) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let mut pending: Option<f64> = None;
    for line in playlist.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = rest
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok())
                .filter(|d| d.is_finite() && *d > 0.0);
        } else if !line.is_empty() && !line.starts_with('#') {
            let name = line.rsplit('/').next().unwrap_or(line);
            let index = name
                .strip_prefix("seg")
                .and_then(|r| r.strip_suffix(".ts"))
                .filter(|d| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            if let (Some(index), Some(d)) = (index, pending.take()) {
                out.push((index, d));
            }
        }
    }
    out
}

/// The sentence to report when FFmpeg failed: the first line of its stderr
/// tail that names an error, without the `[tag @ 0x...]` prefix; else the
/// last line.
pub fn failure_reason(stderr_tail: &[String]) -> String {
    const SIGNS: [&str; 8] = [
        "error",
        "invalid",
        "failed",
        "no such file",
        "permission denied",
        "not found",
        "unknown",
        "could not",
    ];
    let strip = |l: &str| -> String {
        let l = l.trim();
        match (l.starts_with('['), l.find("] ")) {
            (true, Some(i)) => l[i + 2..].to_string(),
            _ => l.to_string(),
        }
    };
    let lines: Vec<String> = stderr_tail
        .iter()
        .map(|l| strip(l))
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            SIGNS.iter().any(|s| lower.contains(s))
        })
        .or(lines.last());
    match pick {
        Some(l) => transcode_common::validate::truncate(l, 300),
        None => "FFmpeg stopped without saying why".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(text: &str) -> Vec<Progress> {
        let mut p = ProgressParser::default();
        text.lines().filter_map(|l| p.feed(l)).collect()
    }

    #[test]
    fn blocks() {
        let cases: Vec<(&str, Vec<Progress>)> = vec![
            (
                "frame=120\nfps=48.5\nout_time_us=5000000\nout_time_ms=5000000\nout_time=00:00:05.000000\nspeed=1.9x\nprogress=continue\n",
                vec![Progress { out_time_s: Some(5.0), fps: Some(48.5), speed: Some(1.9), frame: Some(120), end: false }],
            ),
            (
                "frame=0\nfps=0.00\nout_time_us=N/A\nout_time_ms=N/A\nout_time=N/A\nspeed=N/A\nprogress=continue\n",
                vec![Progress { out_time_s: None, fps: Some(0.0), speed: None, frame: Some(0), end: false }],
            ),
            (
                "out_time_ms=2500000\nspeed= 1.9x\nprogress=continue\nout_time=00:01:02.500000\nspeed=  12x \nprogress=end\n",
                vec![
                    Progress { out_time_s: Some(2.5), speed: Some(1.9), ..Default::default() },
                    Progress { out_time_s: Some(62.5), speed: Some(12.0), end: true, ..Default::default() },
                ],
            ),
            (
                "out_time_us=-23220\nout_time=-00:00:00.023220\nprogress=continue\n",
                vec![Progress { out_time_s: Some(0.0), ..Default::default() }],
            ),
            (
                "garbage line\nfps=fast\nspeed=quick\nframe=-1\nbitrate=  12.3kbits/s\nprogress=continue\n",
                vec![Progress::default()],
            ),
            ("fps=30\n", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(feed_all(text), want, "{text:?}");
        }
    }

    #[test]
    fn percent_and_eta() {
        assert_eq!(percent(9.0, Some(18.0)), 50.0);
        assert_eq!(percent(1.0, Some(3.0)), 33.3);
        assert_eq!(percent(18.0, Some(18.0)), 99.9);
        assert_eq!(percent(30.0, Some(18.0)), 99.9);
        assert_eq!(percent(5.0, None), 0.0);
        assert_eq!(percent(5.0, Some(0.0)), 0.0);
        assert_eq!(eta(9.0, Some(18.0), Some(3.0)), Some(3.0));
        assert_eq!(eta(9.0, Some(18.0), Some(0.0)), None);
        assert_eq!(eta(9.0, None, Some(2.0)), None);
        assert_eq!(eta(20.0, Some(18.0), Some(2.0)), Some(0.0));
    }

    #[test]
    fn playlists() {
        let cases: &[(&str, &[(u64, f64)])] = &[
            ("", &[]),
            ("#EXTM3U\n#EXT-X-VERSION:6\n", &[]),
            (
                "#EXTM3U\n#EXTINF:4.000000,\nseg0.ts\n#EXTINF:4.000000,\nseg1.ts\n",
                &[(0, 4.0), (1, 4.0)],
            ),
            (
                "#EXTINF:4.0,\nseg5.ts\n#EXTINF:2.5,\nseg6.ts\n#EXT-X-ENDLIST\n",
                &[(5, 4.0), (6, 2.5)],
            ),
            ("#EXTINF:4.0,\n/out/job/seg7.ts\n", &[(7, 4.0)]),
            ("#EXTINF:4.0,\n", &[]),
            ("#EXTINF:bad,\nseg0.ts\n", &[]),
            ("#EXTINF:-1,\nseg0.ts\n", &[]),
            ("#EXTINF:4,\nother.ts\n#EXTINF:4,\nseg2.ts\n", &[(2, 4.0)]),
            ("seg0.ts\n", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(playlist_entries(text), want.to_vec(), "{text:?}");
        }
    }

    #[test]
    fn failure_reasons() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], &str)] = &[
            (
                &["[matroska @ 0x5] Invalid data found when processing input"],
                "Invalid data found when processing input",
            ),
            (
                &[
                    "Stream #0 warning-free line",
                    "[aac @ 0x1] Error while opening encoder",
                ],
                "Error while opening encoder",
            ),
            (
                &["file:/x.mkv: No such file or directory"],
                "file:/x.mkv: No such file or directory",
            ),
            (&["just a line", "the last line"], "the last line"),
            (&["", "  "], "FFmpeg stopped without saying why"),
            (&[], "FFmpeg stopped without saying why"),
        ];
        for (lines, want) in cases {
            assert_eq!(failure_reason(&s(lines)), *want);
        }
    }
}
