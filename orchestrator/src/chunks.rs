//! Where the next part of a split job (`is_mesh_mode`) starts and ends,
//! without IO.
//!
//! A split job is cut into chunks of whole segments on its frame grid. Each
//! idle worker takes the next chunk in playback order: the first segment
//! that nobody holds and no running chunk claims, from where a viewer needs
//! the next one. The first chunks are short, so the first segment comes as
//! fast as a plain job's and the other workers start early; later chunks
//! are a share of what is left (guided self-scheduling: half of it spread
//! over the workers, a few minutes at most), so the workers finish together
//! and a lost chunk costs little.

use crate::segments::{Seg, Segments};

/// The first chunk's length in seconds; the second may be twice as long.
pub const FIRST_CHUNK_SECONDS: f64 = 8.0;
/// Later chunks are at least this long (per-run start costs stay small)…
pub const MIN_CHUNK_SECONDS: f64 = 20.0;
/// …and at most this (a lost chunk costs at most this much work).
pub const MAX_CHUNK_SECONDS: f64 = 180.0;
/// The segment length assumed before the job's grid is known.
pub const DEFAULT_SEGMENT_SECONDS: f64 = 4.0;

/// What the next chunk depends on besides the segment map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan<'a> {
    /// The segments of running chunks: `[from, to)`, `to` `None` to the end.
    pub claimed: &'a [(u64, Option<u64>)],
    /// Chunks handed out before (the ramp of short first chunks).
    pub order: usize,
    /// Workers that can take a chunk of this job now, busy or not.
    pub workers: usize,
    /// Seconds of one segment on the job's grid.
    pub segment_seconds: f64,
    /// The job's length in segments by its first run's probe.
    pub estimate: Option<u64>,
    /// The job's length in segments, once a run reached the end.
    pub total: Option<u64>,
    /// The segment a viewer needs next.
    pub priority: u64,
}

/// The next chunk: its first segment and its end (exclusive; `None`: to the
/// end of the source). `None` when every segment is held or claimed.
pub fn next_chunk(
    segs: &Segments,
    available: impl Fn(&Seg) -> bool,
    plan: &Plan,
) -> Option<(u64, Option<u64>)> {
    let end = plan
        .total
        .unwrap_or(transcode_common::wire::MAX_SEGMENTS)
        .min(transcode_common::wire::MAX_SEGMENTS);
    let have = |i: u64| segs.get(&i).is_some_and(&available);
    let claim_of = |i: u64| {
        plan.claimed
            .iter()
            .find(|(from, to)| i >= *from && to.is_none_or(|t| i < t))
            .copied()
    };
    // The first segment from `from` on that is neither held nor claimed.
    let free_from = |from: u64| -> Option<u64> {
        let mut i = from;
        while i < end {
            if let Some((_, to)) = claim_of(i) {
                i = to?;
            } else if have(i) {
                i += 1;
            } else {
                return Some(i);
            }
        }
        None
    };
    let start = free_from(plan.priority.min(end)).or_else(|| free_from(0))?;

    let seconds = plan.segment_seconds.max(0.001);
    let ramp = match plan.order {
        0 => FIRST_CHUNK_SECONDS,
        // (A worker alone gains nothing from a second short chunk.)
        1 if plan.workers > 1 => 2.0 * FIRST_CHUNK_SECONDS,
        _ => MAX_CHUNK_SECONDS,
    };
    let known_end = plan.total.or(plan.estimate);
    let left = known_end.map(|e| e.saturating_sub(start) as f64 * seconds);
    // Alone, a worker gains nothing from small chunks: each costs a start.
    let guided = left
        .filter(|_| plan.workers > 1)
        .map(|l| l / (2.0 * plan.workers as f64))
        .unwrap_or(MAX_CHUNK_SECONDS)
        .clamp(MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS);
    let length = ((ramp.min(guided) / seconds).round() as u64).max(1);

    // The chunk stops where held or claimed segments begin again.
    let next_held = segs
        .range(start + 1..)
        .find(|(_, s)| available(s))
        .map(|(i, _)| *i);
    let next_claim = plan
        .claimed
        .iter()
        .map(|(from, _)| *from)
        .filter(|from| *from > start)
        .min();
    let stop = [next_held, next_claim, plan.total]
        .into_iter()
        .flatten()
        .min();
    let to = start.saturating_add(length);
    Some(match stop {
        Some(s) if s <= to => (start, Some(s)),
        // The rest of the job, by the estimate: this chunk goes to the end
        // of the source, wherever it really is.
        _ if plan.estimate.is_some_and(|e| to >= e) => (start, None),
        _ => (start, Some(to)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(held: &[u64]) -> Segments {
        held.iter()
            .map(|i| {
                (
                    *i,
                    Seg {
                        duration: 4.0,
                        holder: Some("w".into()),
                        encoding: 0,
                    },
                )
            })
            .collect()
    }

    fn plan<'a>(claimed: &'a [(u64, Option<u64>)], order: usize, workers: usize) -> Plan<'a> {
        Plan {
            claimed,
            order,
            workers,
            segment_seconds: 4.0,
            estimate: Some(45),
            total: None,
            priority: 0,
        }
    }

    #[test]
    fn chunks_in_playback_order_short_first_then_a_share_of_what_is_left() {
        type Case<'a> = (
            &'a [u64],
            &'a [(u64, Option<u64>)],
            usize,
            usize,
            Option<(u64, Option<u64>)>,
        );
        let cases: &[Case] = &[
            // The first chunk: 8 s.
            (&[], &[], 0, 2, Some((0, Some(2)))),
            // The second: 16 s after the first's claim.
            (&[], &[(0, Some(2))], 1, 2, Some((2, Some(6)))),
            // Then a quarter of what is left (39 segments × 4 s / 4 = 39 s).
            (&[0, 1], &[(2, Some(6))], 2, 2, Some((6, Some(16)))),
            // Later: 31 segments left / 4 = 31 s → 8 segments.
            (
                &[0, 1, 6],
                &[(2, Some(6)), (7, Some(14))],
                5,
                2,
                Some((14, Some(22))),
            ),
            // Near the end the share is small, never under 20 s.
            (&[], &[(0, Some(37))], 8, 2, Some((37, Some(42)))),
            // The last chunk runs to the end of the source, wherever it is.
            (&[], &[(0, Some(41))], 9, 2, Some((41, None))),
            // Everything claimed or held: nothing to do.
            (&[0, 1, 2], &[(3, None)], 9, 2, None),
            // A hole left by a lost chunk: from its first missing segment,
            // up to the next held one.
            (&[0, 1, 2, 5, 6], &[(7, None)], 9, 2, Some((3, Some(5)))),
            // Alone, a worker takes what the ramp allows: here the rest.
            (&[], &[(0, Some(14))], 4, 1, Some((14, None))),
            // …and after its first chunk, up to 3 minutes at once.
            (&[0, 1], &[], 1, 1, Some((2, None))),
            // Three workers share the rest thinner.
            (&[], &[(0, Some(15))], 5, 3, Some((15, Some(20)))),
        ];
        for (held, claimed, order, workers, want) in cases {
            let got = next_chunk(&map(held), |_| true, &plan(claimed, *order, *workers));
            assert_eq!(
                got, *want,
                "held {held:?} claimed {claimed:?} order {order}"
            );
        }
    }

    #[test]
    fn the_viewer_and_the_known_end_decide_too() {
        let segs = map(&[]);
        // A viewer at segment 20 gets the chunk from there first.
        let mut p = plan(&[(0, Some(2))], 3, 2);
        p.priority = 20;
        assert_eq!(next_chunk(&segs, |_| true, &p), Some((20, Some(26))));
        // Before anything is known: bounded chunks until one finds the end.
        let mut p = plan(&[], 0, 1);
        p.estimate = None;
        assert_eq!(next_chunk(&segs, |_| true, &p), Some((0, Some(2))));
        p.order = 6;
        assert_eq!(next_chunk(&segs, |_| true, &p), Some((0, Some(45))));
        // The real end: nothing past it, and a chunk stops there.
        let mut p = plan(&[(0, Some(40))], 9, 2);
        p.total = Some(42);
        assert_eq!(next_chunk(&segs, |_| true, &p), Some((40, Some(42))));
        p.claimed = &[(0, Some(42))];
        assert_eq!(next_chunk(&segs, |_| true, &p), None);
        // A segment whose holder is lost is missing again.
        let segs = map(&[0, 1, 2]);
        let p = plan(&[(3, None)], 9, 2);
        assert_eq!(
            next_chunk(&segs, |s| s.holder.as_deref() != Some("w"), &p),
            Some((0, Some(3)))
        );
    }
}
