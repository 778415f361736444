//! One run of a job on the job's frame grid, without IO: which source
//! frames it encodes, where it seeks, how many frames it drops before its
//! first, and how its audio is cut on the job's grid of AAC frames, so that
//! runs on different machines join without a duplicated or missing frame
//! and without an audio gap (see NOTES, "Joining segments from several
//! runs"). `command::ffmpeg_args` turns a window into arguments.

use transcode_common::wire::Grid;

/// One run of a job on its frame grid: segments
/// `first_segment..first_segment + segment_count` (or to the end). See
/// NOTES "Joining segments from several runs": the run seeks a little
/// early, then cuts by frame count, so that any two runs join without a
/// duplicated or missing frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunWindow {
    pub grid: Grid,
    pub first_segment: u64,
    pub segment_count: Option<u64>,
    /// The job's first frame in the source (from its `start_time`).
    pub job_first_frame: u64,
    /// Seconds from the file's start to its first video frame.
    pub video_start: f64,
    /// The source's frames are unevenly spaced: make them constant first.
    pub variable_rate: bool,
    /// The audio's sample rate (the AAC encoder keeps it).
    pub sample_rate: u32,
}

/// The most short segments a job's first full segment is cut into (1 s,
/// 1 s, 2 s of a 4 s one takes three).
const MAX_SHORT_LEAD: u8 = 4;

/// Samples in one AAC frame.
const AAC_FRAME: u128 = 1024;

/// How a run cuts its audio so that its AAC frames lie on the job's grid
/// of 1,024-sample frames and two runs splice without a gap, an overlap or
/// a fade: every run but the job's first starts one AAC frame early (that
/// frame is what the previous run's last frame overlaps with), the
/// encoder's priming packet is dropped, and a bounded run drops its flush
/// packet, which the next run's first frame replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioCut {
    /// Seconds to skip from where the input starts (after the seek).
    pub start: f64,
    /// Samples from the run's video start to its first audio sample (0 or
    /// negative).
    pub lead: f64,
    /// Samples to keep, for a bounded run.
    pub count: Option<u128>,
    /// Encoder packets from this number on are dropped: the flush packet
    /// of a bounded run. Counted, not timed: the time base a bitstream
    /// filter sees depends on the order FFmpeg set up its streams in (with
    /// one video decoding thread it was the muxer's 1/90,000, not the
    /// encoder's 1/48,000, and a run lost half its audio).
    pub drop_from: Option<u128>,
}

impl RunWindow {
    /// The grid of a job whose first run happens here: `segment_seconds`
    /// of whole frames at the source's rate, the first of them cut into
    /// short ones (the shortest at least a second) when the encoder puts
    /// keyframes where it is told (software); a hardware encoder's fixed
    /// GOP cuts only full segments.
    pub fn grid_for(rate: (u32, u32), segment_seconds: u32, short_lead: bool) -> Grid {
        let fps = f64::from(rate.0) / f64::from(rate.1.max(1));
        let segment_frames = (f64::from(segment_seconds.max(1)) * fps).round().max(1.0) as u32;
        let one_second = fps.round().max(1.0) as u32;
        let lead = if short_lead {
            (2..=MAX_SHORT_LEAD)
                .rev()
                .find(|k| segment_frames >> (k - 1) >= one_second)
                .unwrap_or(0)
        } else {
            0
        };
        Grid {
            segment_frames,
            fps_num: rate.0,
            fps_den: rate.1.max(1),
            lead,
        }
    }

    /// Whole segments from `first_segment` that cover `seconds` of output
    /// (an assignment's `duration`, from a sender that does not count
    /// segments).
    pub fn segments_for(seconds: f64, grid: Grid, first_segment: u64) -> Option<u64> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return None;
        }
        let frames = (seconds * grid.fps() - 1e-6).ceil().max(1.0) as u64;
        let last = grid.first_frame_of(first_segment) + frames - 1;
        Some(grid.segment_of_frame(last) + 1 - first_segment)
    }

    /// The job's first frame for a `start_time`.
    pub fn first_frame(start_time: f64, video_start: f64, fps: f64) -> u64 {
        ((start_time - video_start) * fps).round().max(0.0) as u64
    }

    fn fps(&self) -> f64 {
        self.grid.fps()
    }

    /// The source frame this run starts at.
    pub fn first_frame_of_run(&self) -> u64 {
        self.job_first_frame + self.grid.first_frame_of(self.first_segment)
    }

    /// Frames before the run's first one that are decoded and dropped (a
    /// second's worth, fewer at the start of the file).
    pub fn preroll(&self) -> u64 {
        let one_second = self.fps().round().max(1.0) as u64;
        one_second.min(self.first_frame_of_run())
    }

    /// Where the half-frame before the first decoded frame is, from the
    /// file's start (negative near it).
    pub fn seek_point(&self) -> f64 {
        let from = self.first_frame_of_run() - self.preroll();
        self.video_start + from as f64 / self.fps() - 0.5 / self.fps()
    }

    /// The input seek (`-ss`), half a frame before the first decoded frame
    /// so that rounded timestamps cannot pick its neighbour, in whole
    /// milliseconds (exact in millisecond container time bases); `None` at
    /// the start of the file, where seeking could drop audio.
    pub fn seek(&self) -> Option<f64> {
        let from = self.first_frame_of_run() - self.preroll();
        let t = (self.seek_point() * 1000.0).floor() / 1000.0;
        (from > 0 && t > 0.0).then_some(t)
    }

    /// Frames this run writes; `None`: to the end.
    pub fn frames(&self) -> Option<u64> {
        self.segment_count.map(|c| {
            self.grid.first_frame_of(self.first_segment + c)
                - self.grid.first_frame_of(self.first_segment)
        })
    }

    /// Seconds of output before this run's first frame, in the whole job.
    pub fn offset_seconds(&self) -> f64 {
        self.grid.start_of(self.first_segment)
    }

    /// Where the run's first video frame is, in seconds after what the
    /// input seek makes time 0 (the file's start without a seek).
    fn video_time_after_seek(&self) -> f64 {
        let frame_time = self.video_start + self.first_frame_of_run() as f64 / self.fps();
        match self.seek() {
            Some(seek) => frame_time - seek,
            None => frame_time,
        }
    }

    /// `first frame × sample_rate / fps` as a fraction: the job-time
    /// sample where a segment starts.
    fn segment_sample(&self, segment: u64) -> (u128, u128) {
        let g = self.grid;
        let num = u128::from(g.first_frame_of(segment))
            * u128::from(self.sample_rate)
            * u128::from(g.fps_den);
        (num, u128::from(g.fps_num.max(1)))
    }

    /// The first AAC frame boundary of the job's audio at or after a
    /// segment's start.
    fn aac_boundary(&self, segment: u64) -> u128 {
        let (num, den) = self.segment_sample(segment);
        num.div_ceil(den * AAC_FRAME) * AAC_FRAME
    }

    pub fn audio_cut(&self) -> AudioCut {
        let (num, den) = self.segment_sample(self.first_segment);
        let t0 = num as f64 / den as f64;
        let g0 = self.aac_boundary(self.first_segment);
        let early = if self.first_segment > 0 { AAC_FRAME } else { 0 };
        let lead = ((g0 - early) as f64 - t0).round();
        let sr = f64::from(self.sample_rate.max(1));
        let (count, drop_from) = match self.segment_count {
            Some(c) => {
                let g1 = self.aac_boundary(self.first_segment + c);
                let count = g1 - g0 + early;
                // Packet 0 primes the encoder; packet n ≥ 1 carries frame
                // n − 1 of the `count / 1024` frames, the last of which
                // the next run's first frame replaces.
                (Some(count), Some(count / AAC_FRAME))
            }
            None => (None, None),
        };
        AudioCut {
            start: (self.video_time_after_seek() + lead / sr).max(0.0),
            lead,
            count,
            drop_from,
        }
    }

    /// The length of the run's output, if bounded.
    pub fn duration(&self) -> Option<f64> {
        self.frames().map(|f| f as f64 / self.fps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_whole_segments() {
        let plain = RunWindow::grid_for((30, 1), 4, false);
        // 1 s, 1 s, 2 s, then 4 s.
        let short = RunWindow::grid_for((30, 1), 4, true);
        let cases = [
            (plain, 0, 8.0, Some(2)),
            (plain, 0, 8.5, Some(3)),
            (plain, 0, 0.1, Some(1)),
            (plain, 0, 4.0, Some(1)),
            (plain, 5, 4.0, Some(1)),
            (plain, 0, 0.0, None),
            (plain, 0, -3.0, None),
            (plain, 0, f64::NAN, None),
            (short, 0, 1.0, Some(1)),
            (short, 0, 2.0, Some(2)),
            (short, 0, 4.0, Some(3)),
            (short, 0, 4.5, Some(4)),
            (short, 1, 1.0, Some(1)),
            (short, 1, 7.0, Some(3)),
            (short, 3, 8.0, Some(2)),
        ];
        for (grid, first, seconds, want) in cases {
            assert_eq!(
                RunWindow::segments_for(seconds, grid, first),
                want,
                "{seconds} s from segment {first} of {grid:?}"
            );
        }
    }

    #[test]
    fn leads_start_at_a_second() {
        // (rate, segment seconds, software) → lead
        let cases = [
            ((30, 1), 4, true, 3),
            ((30, 1), 4, false, 0),
            ((24000, 1001), 4, true, 3),
            ((25, 1), 6, true, 3),
            ((30, 1), 10, true, 4),
            ((30, 1), 2, true, 2),
            ((30, 1), 1, true, 0),
            ((60000, 1001), 2, true, 2),
        ];
        for (rate, seconds, software, lead) in cases {
            let g = RunWindow::grid_for(rate, seconds, software);
            assert_eq!(g.lead, lead, "{rate:?} {seconds} s");
            assert!(g.validate().is_ok(), "{g:?}");
            assert!(g.seconds_in(0) >= 0.99, "{g:?}");
        }
    }
}
