//! Which worker gets a job: a pure function of what the workers said about
//! themselves and what the orchestrator has given them.
//!
//! Only online workers that are not draining, have an H.264 encoder and a
//! free slot are candidates. Among them: a working hardware H.264/HEVC
//! encoder first, then the owner's `weight`, then the lower CPU load, then
//! fewer jobs, then the name (so equal machines are picked the same way).

use std::cmp::Ordering;

use transcode_common::wire::{Heartbeat, WorkerStatus};

/// A worker as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub heartbeat: &'a Heartbeat,
    pub online: bool,
    /// Jobs the orchestrator has assigned to it and not seen finish.
    pub assigned: u32,
}

/// A working hardware H.264 or HEVC encoder (software ones are `libx264`,
/// `libx265`; every `h264_*`/`hevc_*` encoder is a hardware one).
fn has_hardware(hb: &Heartbeat) -> bool {
    hb.encoders
        .iter()
        .any(|e| e.starts_with("h264_") || e.starts_with("hevc_"))
}

fn can_encode_h264(hb: &Heartbeat) -> bool {
    hb.encoders
        .iter()
        .any(|e| e == "libx264" || e.starts_with("h264_"))
}

fn free_slots(c: &Candidate) -> u32 {
    c.heartbeat.max_jobs.unwrap_or(1).saturating_sub(c.assigned)
}

fn eligible(c: &Candidate) -> bool {
    c.online
        && c.heartbeat.status != WorkerStatus::Draining
        && can_encode_h264(c.heartbeat)
        && free_slots(c) > 0
}

/// Best first.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    has_hardware(b.heartbeat)
        .cmp(&has_hardware(a.heartbeat))
        .then_with(|| {
            let (wa, wb) = (
                a.heartbeat.weight.unwrap_or(1.0),
                b.heartbeat.weight.unwrap_or(1.0),
            );
            wb.partial_cmp(&wa).unwrap_or(Ordering::Equal)
        })
        .then_with(|| {
            a.heartbeat
                .cpu_usage
                .partial_cmp(&b.heartbeat.cpu_usage)
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| a.assigned.cmp(&b.assigned))
        .then_with(|| a.heartbeat.worker_id.cmp(&b.heartbeat.worker_id))
}

/// The worker to send the next job to, if any can take it.
pub fn pick<'a>(candidates: &[Candidate<'a>]) -> Option<&'a str> {
    candidates
        .iter()
        .filter(|c| eligible(c))
        .min_by(|a, b| rank(a, b))
        .map(|c| c.heartbeat.worker_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcode_common::wire::Os;

    fn hb(id: &str, encoders: &[&str], cpu: f64, max_jobs: u32, weight: f64) -> Heartbeat {
        Heartbeat {
            worker_id: id.into(),
            ip_address: "10.0.0.2".into(),
            port: 8080,
            os: Os::Linux,
            hw_accel: vec![],
            status: WorkerStatus::Idle,
            cpu_usage: cpu,
            hostname: None,
            version: None,
            cpu_cores: None,
            memory_total_mb: None,
            memory_available_mb: None,
            max_jobs: Some(max_jobs),
            active_jobs: vec![],
            encoders: encoders.iter().map(|s| s.to_string()).collect(),
            weight: Some(weight),
            interval_s: Some(15),
            finished_runs: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn picks() {
        let sw = ["libx264"];
        let nv = ["h264_nvenc", "hevc_nvenc", "libx264"];
        let hevc_only = ["hevc_vaapi", "libx264"];
        struct Case {
            name: &'static str,
            workers: Vec<(Heartbeat, bool, u32)>,
            want: Option<&'static str>,
        }
        let cases = vec![
            Case {
                name: "nobody",
                workers: vec![],
                want: None,
            },
            Case {
                name: "one idle",
                workers: vec![(hb("a", &sw, 5.0, 1, 1.0), true, 0)],
                want: Some("a"),
            },
            Case {
                name: "offline is skipped",
                workers: vec![(hb("a", &sw, 5.0, 1, 1.0), false, 0)],
                want: None,
            },
            Case {
                name: "full is skipped",
                workers: vec![(hb("a", &sw, 5.0, 1, 1.0), true, 1)],
                want: None,
            },
            Case {
                name: "second slot",
                workers: vec![(hb("a", &sw, 5.0, 2, 1.0), true, 1)],
                want: Some("a"),
            },
            Case {
                name: "no encoder",
                workers: vec![(hb("a", &[], 5.0, 1, 1.0), true, 0)],
                want: None,
            },
            Case {
                name: "hardware beats a quieter CPU",
                workers: vec![
                    (hb("cpu", &sw, 1.0, 1, 1.0), true, 0),
                    (hb("gpu", &nv, 90.0, 1, 1.0), true, 0),
                ],
                want: Some("gpu"),
            },
            Case {
                name: "HEVC hardware counts as hardware",
                workers: vec![
                    (hb("cpu", &sw, 1.0, 1, 1.0), true, 0),
                    (hb("nas", &hevc_only, 50.0, 1, 1.0), true, 0),
                ],
                want: Some("nas"),
            },
            Case {
                name: "lower CPU among equals",
                workers: vec![
                    (hb("busy", &sw, 80.0, 1, 1.0), true, 0),
                    (hb("calm", &sw, 10.0, 1, 1.0), true, 0),
                ],
                want: Some("calm"),
            },
            Case {
                name: "weight before CPU",
                workers: vec![
                    (hb("calm", &sw, 10.0, 1, 1.0), true, 0),
                    (hb("big", &sw, 60.0, 1, 3.0), true, 0),
                ],
                want: Some("big"),
            },
            Case {
                name: "fewer jobs among equals",
                workers: vec![
                    (hb("b", &sw, 10.0, 4, 1.0), true, 2),
                    (hb("a", &sw, 10.0, 4, 1.0), true, 3),
                ],
                want: Some("b"),
            },
            Case {
                name: "name breaks ties",
                workers: vec![
                    (hb("b", &sw, 10.0, 1, 1.0), true, 0),
                    (hb("a", &sw, 10.0, 1, 1.0), true, 0),
                ],
                want: Some("a"),
            },
            Case {
                name: "a full GPU leaves the job to the CPU",
                workers: vec![
                    (hb("gpu", &nv, 5.0, 1, 1.0), true, 1),
                    (hb("cpu", &sw, 50.0, 1, 1.0), true, 0),
                ],
                want: Some("cpu"),
            },
        ];
        for case in cases {
            let candidates: Vec<Candidate> = case
                .workers
                .iter()
                .map(|(h, online, assigned)| Candidate {
                    heartbeat: h,
                    online: *online,
                    assigned: *assigned,
                })
                .collect();
            assert_eq!(pick(&candidates), case.want, "{}", case.name);
        }
        let mut draining = hb("d", &sw, 1.0, 1, 1.0);
        draining.status = WorkerStatus::Draining;
        assert_eq!(
            pick(&[Candidate {
                heartbeat: &draining,
                online: true,
                assigned: 0
            }]),
            None
        );
    }
}
