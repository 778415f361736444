//! A job's segment map and the playlist written from it, without IO.
//!
//! Every finished segment of a job is known here with its length, the
//! encoding it carries and the worker that holds it. The player's playlist
//! (`/stream/{id}/index.m3u8`) lists the segments in order, each as a URL on
//! the orchestrator that redirects to whoever holds it now, so an entry never
//! changes once listed. The map also says where the next run of a job starts:
//! the first segment nobody holds that a viewer needs next.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use transcode_common::wire::{Grid, SegmentInfo};

/// One finished segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seg {
    pub duration: f64,
    /// The worker that holds the file; `None` once it said it lost it.
    pub holder: Option<String>,
    /// Index into the job's `encodings`.
    pub encoding: u32,
}

/// Segment number → segment, for one job.
pub type Segments = BTreeMap<u64, Seg>;

/// How many segments from the first are finished without a hole: the
/// playlist lists at least these. A segment whose holder is lost still
/// counts: it was finished, and is encoded again on demand.
pub fn contiguous(segs: &Segments) -> u64 {
    let mut n = 0;
    for index in segs.keys() {
        if *index != n {
            break;
        }
        n += 1;
    }
    n
}

/// Where the next run of a job starts and how many segments it writes
/// (`None`: to the end of the source), given which segments can be had now.
/// The first segment nobody has at or after `priority` (where a viewer
/// needs the next one) comes first; then the holes before it. `None` when
/// every segment of a job of `total` segments is there.
pub fn next_range(
    segs: &Segments,
    available: impl Fn(&Seg) -> bool,
    total: Option<u64>,
    priority: u64,
) -> Option<(u64, Option<u64>)> {
    let have = |i: u64| segs.get(&i).is_some_and(&available);
    let end = total.unwrap_or(u64::MAX);
    let first_missing_from = |from: u64| -> Option<u64> {
        let mut i = from;
        while i < end {
            if !have(i) {
                return Some(i);
            }
            i += 1;
        }
        None
    };
    let start = first_missing_from(priority.min(end)).or_else(|| first_missing_from(0))?;
    // The run stops where segments someone holds begin again.
    let next_held = segs
        .range(start + 1..)
        .find(|(_, s)| available(s))
        .map(|(i, _)| *i);
    Some((start, next_held.map(|n| n - start)))
}

/// Everything the playlist needs to know of a job.
pub struct PlaylistInput<'a> {
    pub segs: &'a Segments,
    /// How many segments are listed (never fewer than listed before).
    pub listed: u64,
    pub encodings: &'a [String],
    pub grid: Option<Grid>,
    /// The job is over: no segment will be added.
    pub ended: bool,
}

/// The HLS media playlist of a job: an `EVENT` playlist that only grows,
/// `#EXT-X-ENDLIST` once the job is over, a discontinuity where two
/// neighbours were encoded differently. Segment URIs are relative
/// (`seg<N>.ts`): they resolve to the orchestrator's redirects.
pub fn render(p: &PlaylistInput) -> String {
    let listed: Vec<(u64, &Seg)> = p.segs.range(..p.listed).map(|(i, s)| (*i, s)).collect();
    let longest = listed.iter().map(|(_, s)| s.duration).fold(0.0, f64::max);
    let grid_target = p.grid.map(|g| g.segment_seconds()).unwrap_or(0.0);
    // Rounded as RFC 8216 asks: every EXTINF rounded to the nearest integer
    // is at most the target duration.
    let target = longest.max(grid_target).round().max(1.0) as u64;
    let mut out = String::with_capacity(64 + listed.len() * 40);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:6\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MEDIA-SEQUENCE:0\n");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut previous: Option<u32> = None;
    for (i, s) in listed {
        if previous.is_some_and(|e| e != s.encoding) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        previous = Some(s.encoding);
        let _ = writeln!(out, "#EXTINF:{:.6},\nseg{i}.ts", s.duration);
    }
    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The index of an encoding in the job's list, added when new.
pub fn encoding_index(encodings: &mut Vec<String>, encoding: &str) -> u32 {
    match encodings.iter().position(|e| e == encoding) {
        Some(i) => i as u32,
        None => {
            encodings.push(encoding.to_string());
            (encodings.len() - 1) as u32
        }
    }
}

/// Why a run's report cannot be taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    OutOfOrder {
        expected: u64,
        got: u64,
    },
    OutsideRun {
        index: u64,
        from: u64,
        to: Option<u64>,
    },
    OtherDuration {
        index: u64,
        known: f64,
        got: f64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OutOfOrder { expected, got } => write!(
                f,
                "segment {got} was reported before segment {expected}: segments are reported in order"
            ),
            Refusal::OutsideRun { index, from, to } => match to {
                Some(to) => write!(
                    f,
                    "segment {index} is outside this run's segments {from} to {}",
                    to.saturating_sub(1)
                ),
                None => write!(f, "segment {index} comes before this run's first segment {from}"),
            },
            Refusal::OtherDuration { index, known, got } => write!(
                f,
                "segment {index} is already known with {known:.3} s, not {got:.3} s"
            ),
        }
    }
}

/// Checks a running run's new segments: inside its range, in order from
/// where it stands (`next`: its next expected segment), and a resent one
/// with the length it had.
pub fn check_run_report(
    segs: &Segments,
    reported: &[SegmentInfo],
    run_from: u64,
    run_to: Option<u64>,
    next: u64,
) -> Result<(), Refusal> {
    let mut expected = next;
    for s in reported {
        if s.index < run_from || run_to.is_some_and(|t| s.index >= t) {
            return Err(Refusal::OutsideRun {
                index: s.index,
                from: run_from,
                to: run_to,
            });
        }
        if s.index > expected {
            return Err(Refusal::OutOfOrder {
                expected,
                got: s.index,
            });
        }
        if s.index < expected {
            // A resend: it must be what we have.
            if let Some(known) = segs.get(&s.index) {
                if (known.duration - s.duration).abs() > 0.05 {
                    return Err(Refusal::OtherDuration {
                        index: s.index,
                        known: known.duration,
                        got: s.duration,
                    });
                }
            }
            continue;
        }
        expected += 1;
    }
    Ok(())
}

/// `seg<N>.ts` → N.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg")?.strip_suffix(".ts")?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(spec: &[(u64, &str)]) -> Segments {
        spec.iter()
            .map(|(i, holder)| {
                (
                    *i,
                    Seg {
                        duration: 4.0,
                        holder: (!holder.is_empty()).then(|| holder.to_string()),
                        encoding: 0,
                    },
                )
            })
            .collect()
    }

    fn online(s: &Seg) -> bool {
        s.holder.as_deref().is_some_and(|h| h != "dead")
    }

    #[test]
    fn contiguous_prefixes() {
        let cases: &[(&[(u64, &str)], u64)] = &[
            (&[], 0),
            (&[(0, "a")], 1),
            (&[(0, "a"), (1, "a"), (3, "b")], 2),
            (&[(1, "a")], 0),
            (&[(0, "dead"), (1, "")], 2),
        ];
        for (spec, want) in cases {
            assert_eq!(contiguous(&map(spec)), *want, "{spec:?}");
        }
    }

    #[test]
    fn next_ranges() {
        type Range = Option<(u64, Option<u64>)>;
        type Case<'a> = (&'a [(u64, &'a str)], Option<u64>, u64, Range);
        let cases: &[Case] = &[
            // Nothing yet: from the start, to the end.
            (&[], None, 0, Some((0, None))),
            // A run died after 3 segments, nobody watching: resume at 3.
            (&[(0, "a"), (1, "a"), (2, "a")], None, 0, Some((3, None))),
            // The holder of 0..4 is lost; the viewer needs 3 next.
            (
                &[
                    (0, "dead"),
                    (1, "dead"),
                    (2, "dead"),
                    (3, "dead"),
                    (4, "dead"),
                ],
                None,
                3,
                Some((3, None)),
            ),
            // The main run reached the end: fill the hole before the viewer.
            (
                &[(0, "dead"), (1, "dead"), (2, "b"), (3, "b")],
                Some(4),
                2,
                Some((0, Some(2))),
            ),
            // A hole in the middle stops at the next held segment.
            (
                &[(0, "a"), (1, ""), (2, "dead"), (3, "b"), (4, "b")],
                Some(5),
                0,
                Some((1, Some(2))),
            ),
            // Complete.
            (&[(0, "a"), (1, "b")], Some(2), 1, None),
            // The viewer is past what exists: the first missing after it.
            (&[(0, "a"), (1, "a")], None, 7, Some((7, None))),
            // A priority past the end of a known job wraps to the holes.
            (&[(0, ""), (1, "a")], Some(2), 9, Some((0, Some(1)))),
        ];
        for (spec, total, priority, want) in cases {
            assert_eq!(
                next_range(&map(spec), online, *total, *priority),
                *want,
                "{spec:?} total {total:?} priority {priority}"
            );
        }
    }

    #[test]
    fn playlists_grow_and_mark_discontinuities() {
        let mut segs = map(&[(0, "a"), (1, "a"), (2, "b"), (4, "b")]);
        if let Some(s) = segs.get_mut(&2) {
            s.encoding = 1;
            s.duration = 4.004;
        }
        let encodings = vec!["x".to_string(), "y".to_string()];
        let text = render(&PlaylistInput {
            segs: &segs,
            listed: 3,
            encodings: &encodings,
            grid: None,
            ended: false,
        });
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:EVENT\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:4.000000,\nseg0.ts\n\
             #EXTINF:4.000000,\nseg1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.004000,\nseg2.ts\n"
        );
        let ended = render(&PlaylistInput {
            segs: &segs,
            listed: 3,
            encodings: &encodings,
            grid: None,
            ended: true,
        });
        assert!(ended.ends_with("seg2.ts\n#EXT-X-ENDLIST\n"), "{ended}");
    }

    #[test]
    fn run_reports() {
        let segs = map(&[(0, "a"), (1, "a")]);
        let s = |index: u64, duration: f64| SegmentInfo { index, duration };
        // (reported, run from, run to, next expected, accepted)
        type Case = (Vec<SegmentInfo>, u64, Option<u64>, u64, bool);
        let cases: Vec<Case> = vec![
            (vec![s(2, 4.0)], 0, None, 2, true),
            (vec![s(1, 4.0), s(2, 4.0)], 0, None, 2, true), // a resend, then new
            (vec![s(3, 4.0)], 0, None, 2, false),           // skips 2
            (vec![s(1, 9.0)], 0, None, 2, false),           // resend with another length
            (vec![s(5, 4.0)], 2, Some(4), 5, false),        // outside the run
            (vec![s(1, 4.0)], 2, None, 2, false),           // before the run
        ];
        for (reported, from, to, next, ok) in cases {
            assert_eq!(
                check_run_report(&segs, &reported, from, to, next).is_ok(),
                ok,
                "{reported:?} in {from}..{to:?} at {next}"
            );
        }
    }

    #[test]
    fn segment_names() {
        let cases = [
            ("seg0.ts", Some(0)),
            ("seg12.ts", Some(12)),
            ("seg.ts", None),
            ("seg-1.ts", None),
            ("seg1.ts.bak", None),
            ("index.m3u8", None),
            ("seg1234567890123.ts", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_segment_name(name), want, "{name}");
        }
    }
}
