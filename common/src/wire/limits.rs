//! The bounds of what a worker says about a run: numbers a worker sends
//! are taken only within limits a real encode can reach, so a broken or
//! hostile peer cannot push the orchestrator's arithmetic or memory.

use super::{JobStatus, MAX_SEGMENTS};
use crate::validate;

/// Longest job a status may speak of: a week of video, in seconds.
pub const MAX_MEDIA_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// Frames per second no encoder reaches.
pub const MAX_FPS: f64 = 100_000.0;
/// Multiples of real time no encoder reaches.
pub const MAX_SPEED: f64 = 10_000.0;
/// Longest text (an error sentence, a URL) a status may carry.
pub const MAX_TEXT: usize = 4096;

impl JobStatus {
    /// Whether every number and text is within what a real run can say;
    /// the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let within = |name: &str, v: f64, max: f64| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name}: {v} is not between 0 and {max}"))
            }
        };
        within("progress", self.progress, 100.0)?;
        within("fps", self.fps, MAX_FPS)?;
        if let Some(s) = self.speed {
            within("speed", s, MAX_SPEED)?;
        }
        if let Some(e) = self.eta_s {
            within("eta_s", e, MAX_MEDIA_SECONDS)?;
        }
        if let Some(t) = self.resume_time {
            within("resume_time", t, MAX_MEDIA_SECONDS)?;
        }
        for (name, n) in [
            ("segments_done", self.segments_done),
            ("served_segment", self.served_segment),
        ] {
            if n.is_some_and(|n| n > MAX_SEGMENTS) {
                return Err(format!(
                    "{name}: more than the {MAX_SEGMENTS} segments a job may have"
                ));
            }
        }
        if self.attempt == Some(0) {
            return Err("attempt: runs count from 1".into());
        }
        if let Some(w) = &self.worker_id {
            validate::worker_id(w).map_err(|e| format!("worker_id: {e}"))?;
        }
        for (name, text) in [("error", &self.error), ("stream_url", &self.stream_url)] {
            if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
                return Err(format!("{name}: longer than {MAX_TEXT} bytes"));
            }
        }
        if let Some(url) = &self.stream_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "stream_url: {:?} is not an http(s) URL",
                    validate::truncate(url, 80)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{JobState, JobStatus};
    use uuid::Uuid;

    #[test]
    fn statuses_outside_what_a_run_can_say_are_refused() {
        let ok = || {
            let mut s = JobStatus::new(Uuid::new_v4(), JobState::Processing);
            s.progress = 42.0;
            s.fps = 120.0;
            s.speed = Some(4.0);
            s.eta_s = Some(30.0);
            s.segments_done = Some(10);
            s.resume_time = Some(40.0);
            s.attempt = Some(1);
            s.worker_id = Some("nas".into());
            s.stream_url = Some("http://10.0.0.2:8080/hls/x/index.m3u8".into());
            s
        };
        assert_eq!(ok().validate(), Ok(()));
        type Break = fn(&mut JobStatus);
        let cases: [(Break, &str); 12] = [
            (|s| s.progress = 100.5, "progress"),
            (|s| s.progress = f64::NAN, "progress"),
            (|s| s.fps = -1.0, "fps"),
            (|s| s.speed = Some(1e9), "speed"),
            (|s| s.eta_s = Some(f64::INFINITY), "eta_s"),
            (|s| s.resume_time = Some(1e12), "resume_time"),
            (|s| s.segments_done = Some(u64::MAX), "segments_done"),
            (|s| s.served_segment = Some(u64::MAX), "served_segment"),
            (|s| s.attempt = Some(0), "attempt"),
            (|s| s.worker_id = Some("a/b".into()), "worker_id"),
            (
                |s| s.stream_url = Some("file:///etc/passwd".into()),
                "stream_url",
            ),
            (|s| s.error = Some("x".repeat(5000)), "error"),
        ];
        for (break_it, field) in cases {
            let mut s = ok();
            break_it(&mut s);
            let e = s.validate().unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}
