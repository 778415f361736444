//! The payloads of a job's stream: its frame grid, the segments a worker
//! reports, and the orchestrator's word on a worker's output folders.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate;

/// The most segments one job may have (a week of video in 4 s segments);
/// bounds what a report can make the orchestrator store.
pub const MAX_SEGMENTS: u64 = 200_000;
/// The longest segment a report may announce, in seconds.
pub const MAX_SEGMENT_SECONDS: f64 = 60.0;

/// The most short segments a grid may start with.
pub const MAX_LEAD: u8 = 4;

/// A job's frame grid: whole frames counted from the first frame at
/// `start_time`, at the constant rate `fps_num / fps_den`, cut into
/// segments of `segment_frames` frames. With a `lead` of `k` (2 or more),
/// the first of those segments is cut into `k` short ones so that a player
/// starts sooner: two of `segment_frames >> (k − 1)` frames, then each
/// twice the one before, the last taking what is left (4 s segments with a
/// lead of 3: 1 s, 1 s, 2 s, then 4 s each); every later segment starts
/// where it would without a lead. Runs that start at any segment on any
/// worker produce segments whose timestamps continue exactly where the
/// previous one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grid {
    pub segment_frames: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Short segments the first full one is cut into; absent: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lead: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

impl Grid {
    pub fn fps(&self) -> f64 {
        f64::from(self.fps_num) / f64::from(self.fps_den.max(1))
    }

    /// Seconds of video in one full segment.
    pub fn segment_seconds(&self) -> f64 {
        f64::from(self.segment_frames) / self.fps()
    }

    /// How many short segments lead the grid: 0 when none do (a lead of 1
    /// cuts nothing).
    pub fn short_segments(&self) -> u64 {
        match self.lead {
            0 | 1 => 0,
            k => u64::from(k.min(MAX_LEAD)),
        }
    }

    /// Frames in segment `segment`.
    pub fn frames_in(&self, segment: u64) -> u64 {
        let lead = self.short_segments();
        let full = u64::from(self.segment_frames);
        if segment >= lead {
            full
        } else if segment + 1 == lead {
            full - self.first_frame_of(segment)
        } else {
            full >> (lead - segment.max(1))
        }
    }

    /// Seconds of video in segment `segment`.
    pub fn seconds_in(&self, segment: u64) -> f64 {
        self.frames_in(segment) as f64 / self.fps()
    }

    /// The job's frame that segment `segment` starts with.
    pub fn first_frame_of(&self, segment: u64) -> u64 {
        let lead = self.short_segments();
        let full = u64::from(self.segment_frames);
        if lead == 0 {
            segment * full
        } else if segment >= lead {
            // The short segments make up one full one.
            (segment + 1 - lead) * full
        } else {
            (0..segment).map(|i| full >> (lead - i.max(1))).sum()
        }
    }

    /// Seconds of the job before segment `segment`.
    pub fn start_of(&self, segment: u64) -> f64 {
        self.first_frame_of(segment) as f64 / self.fps()
    }

    /// The segment that holds the job's frame `frame`.
    pub fn segment_of_frame(&self, frame: u64) -> u64 {
        let lead = self.short_segments();
        let full = u64::from(self.segment_frames.max(1));
        if lead == 0 {
            return frame / full;
        }
        if frame >= full {
            return lead - 1 + frame / full;
        }
        (0..lead)
            .rev()
            .find(|i| self.first_frame_of(*i) <= frame)
            .unwrap_or(0)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.fps_num == 0 || self.fps_den == 0 {
            return Err(format!(
                "frame rate {}/{} is not a rate",
                self.fps_num, self.fps_den
            ));
        }
        let fps = self.fps();
        if !(1.0..=240.0).contains(&fps) {
            return Err(format!(
                "frame rate {fps:.3} is outside 1 to 240 frames per second"
            ));
        }
        if self.segment_frames == 0 || self.segment_seconds() > MAX_SEGMENT_SECONDS {
            return Err(format!(
                "{} frames per segment is not between 1 frame and {MAX_SEGMENT_SECONDS} s",
                self.segment_frames
            ));
        }
        if self.lead > MAX_LEAD || (self.lead > 1 && self.segment_frames >> (self.lead - 1) == 0) {
            return Err(format!(
                "{} short segments in the first of {} frames: at most {MAX_LEAD}, each at least a frame",
                self.lead, self.segment_frames
            ));
        }
        Ok(())
    }
}

/// One part of a split job (`is_mesh_mode`) as the orchestrator sees it:
/// segments `[first_segment, end_segment)` run by one worker. A chunk is
/// named by the attempt number of its run, which is unique within the job;
/// its worker reports on `.../jobs/{job_id}/chunks/{attempt}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkStatus {
    pub attempt: u32,
    pub worker_id: String,
    pub first_segment: u64,
    /// Exclusive; absent: to the end of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_segment: Option<u64>,
    /// `assigned`, `processing`, `completed`, `failed` or `cancelled`.
    pub state: super::JobState,
    /// Percent of this chunk done.
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub fps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One finished HLS segment: its number in the job and its length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub index: u64,
    /// Seconds, as in the segment's `#EXTINF`.
    pub duration: f64,
}

/// A worker's word on the segments it holds for a job, on
/// `.../workers/{worker_id}/segments` (QoS 1, not retained). During a run
/// each new segment is reported as soon as it is complete; after every
/// (re)connection the worker sends an `inventory` per job folder it keeps,
/// listing everything it holds, so that a lost message never makes the
/// playlist skip or invent a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentReport {
    pub worker_id: String,
    pub job_id: Uuid,
    /// The run that wrote these segments.
    pub attempt: u32,
    pub segments: Vec<SegmentInfo>,
    /// True: this lists every segment the worker holds for the job (within
    /// `covers`).
    #[serde(default)]
    pub inventory: bool,
    /// The segment numbers `[from, to)` an inventory speaks for: one that
    /// it does not list, the worker does not hold. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<[u64; 2]>,
    /// The grid the segments were cut on.
    pub grid: Grid,
    /// What the segments were encoded with (encoder, size, bitrate): two
    /// neighbours with different encodings are joined with a discontinuity.
    pub encoding: String,
    /// How many segments the whole job has on this grid by the worker's
    /// probe of the source: an estimate (containers misstate lengths) that
    /// cuts a split job into chunks; the run that reaches the end of the
    /// source tells the truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_segments: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// Most segments one report may carry (an inventory is sent in parts).
pub const MAX_REPORT_SEGMENTS: usize = 1000;

impl SegmentReport {
    pub fn validate(&self) -> Result<(), String> {
        validate::worker_id(&self.worker_id).map_err(|e| format!("worker_id: {e}"))?;
        self.grid.validate().map_err(|e| format!("grid: {e}"))?;
        if self.encoding.is_empty() || self.encoding.len() > 200 {
            return Err("encoding: must name the encoder settings in 1 to 200 bytes".into());
        }
        if self
            .job_segments
            .is_some_and(|n| n == 0 || n > MAX_SEGMENTS)
        {
            return Err(format!(
                "job_segments: must be between 1 and the {MAX_SEGMENTS} segments a job may have"
            ));
        }
        if self.segments.len() > MAX_REPORT_SEGMENTS {
            return Err(format!(
                "segments: {} entries, more than the {MAX_REPORT_SEGMENTS} one report may carry",
                self.segments.len()
            ));
        }
        let longest = MAX_SEGMENT_SECONDS.min(self.grid.segment_seconds() * 2.0 + 1.0);
        let mut previous: Option<u64> = None;
        for s in &self.segments {
            if s.index >= MAX_SEGMENTS {
                return Err(format!(
                    "segments: number {} is beyond the {MAX_SEGMENTS} a job may have",
                    s.index
                ));
            }
            if !s.duration.is_finite() || s.duration <= 0.0 || s.duration > longest {
                return Err(format!(
                    "segments: segment {} lasts {} s, which is not between 0 and {longest:.1} s on this grid",
                    s.index, s.duration
                ));
            }
            if previous.is_some_and(|p| s.index <= p) {
                return Err(format!(
                    "segments: segment {} comes after segment {}; list them in increasing order",
                    s.index,
                    previous.unwrap_or_default()
                ));
            }
            previous = Some(s.index);
        }
        Ok(())
    }
}

/// What the orchestrator tells a worker about a job's output folder, on
/// `.../workers/{worker_id}/outputs` (QoS 1, not retained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputCommand {
    pub job_id: Uuid,
    pub action: OutputAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputAction {
    /// A player is watching the job through the orchestrator's playlist:
    /// count it as a request, so the output is kept.
    Keep,
    /// The job was cancelled or pruned: delete its output now.
    Delete,
    /// Send an inventory of the job's folder (a report was lost).
    Report,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(segment_frames: u32, fps: (u32, u32), lead: u8) -> Grid {
        Grid {
            segment_frames,
            fps_num: fps.0,
            fps_den: fps.1,
            lead,
        }
    }

    #[test]
    fn short_segments_lead_the_grid() {
        // (grid, segment) → (frames in it, its first frame)
        let cases = [
            (grid(120, (30, 1), 0), 0, (120, 0)),
            (grid(120, (30, 1), 0), 3, (120, 360)),
            // 1 s, 1 s, 2 s, then 4 s from 4 s on, as without a lead.
            (grid(120, (30, 1), 3), 0, (30, 0)),
            (grid(120, (30, 1), 3), 1, (30, 30)),
            (grid(120, (30, 1), 3), 2, (60, 60)),
            (grid(120, (30, 1), 3), 3, (120, 120)),
            (grid(120, (30, 1), 3), 5, (120, 360)),
            // 2 s, 2 s.
            (grid(120, (30, 1), 2), 1, (60, 60)),
            (grid(120, (30, 1), 2), 2, (120, 120)),
            // A lead of 1 cuts nothing.
            (grid(120, (30, 1), 1), 1, (120, 120)),
            // 23.976: 1.001 s, 1.001 s, 2.002 s, then 4.004 s.
            (grid(96, (24000, 1001), 3), 2, (48, 48)),
            (grid(96, (24000, 1001), 3), 4, (96, 192)),
            // Uneven halves: the last short one takes what is left.
            (grid(150, (25, 1), 3), 1, (37, 37)),
            (grid(150, (25, 1), 3), 2, (76, 74)),
            (grid(150, (25, 1), 3), 3, (150, 150)),
            (grid(300, (30, 1), 4), 2, (75, 74)),
            (grid(300, (30, 1), 4), 3, (151, 149)),
        ];
        for (g, segment, (frames, first)) in cases {
            assert_eq!(g.frames_in(segment), frames, "{g:?} segment {segment}");
            assert_eq!(g.first_frame_of(segment), first, "{g:?} segment {segment}");
            // Every frame of the segment maps back to it.
            assert_eq!(g.segment_of_frame(first), segment, "{g:?} frame {first}");
            assert_eq!(
                g.segment_of_frame(first + frames - 1),
                segment,
                "{g:?} frame {}",
                first + frames - 1
            );
        }
        assert!((grid(120, (30, 1), 3).start_of(3) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn grids_are_checked() {
        let cases = [
            (grid(120, (30, 1), 3), true),
            (grid(120, (30, 1), 4), true),
            (grid(120, (30, 1), 5), false),
            (grid(2, (30, 1), 3), false),
            (grid(2, (30, 1), 2), true),
            (grid(0, (30, 1), 0), false),
            (grid(120, (0, 1), 0), false),
            (grid(3000, (30, 1), 0), false),
        ];
        for (g, ok) in cases {
            assert_eq!(g.validate().is_ok(), ok, "{g:?}");
        }
    }

    #[test]
    fn a_grid_without_a_lead_reads_and_writes_as_before() {
        let old = r#"{"segment_frames":120,"fps_num":30,"fps_den":1}"#;
        let g: Grid = serde_json::from_str(old).expect("an old grid reads");
        assert_eq!(g.lead, 0);
        assert_eq!(serde_json::to_string(&g).expect("writes"), old);
    }
}
