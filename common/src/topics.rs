//! MQTT topic names under the configurable prefix (`transcode` by default).

/// Builds and recognises every topic of the system for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What a topic we receive on is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    WorkerHeartbeat(String),
    WorkerAvailability(String),
    WorkerJobs(String),
    WorkerCancel(String),
    /// A request to the orchestrator: cancel what this worker runs.
    WorkerStop(String),
    WorkerJob(String),
    WorkerSegments(String),
    WorkerOutputs(String),
    JobStatus(String),
    /// A part of a split job: the job id and the chunk's attempt number.
    ChunkStatus(String, String),
    JobCancel(String),
    JobsSubmit,
    OrchestratorAvailability,
    OrchestratorStats,
}

impl Topics {
    /// A prefix is one or more topic levels without wildcards.
    pub fn new(prefix: &str) -> Result<Topics, String> {
        let prefix = prefix.trim();
        if prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#', '\0'])
            || prefix.contains("//")
        {
            return Err(format!(
                "topic prefix {prefix:?} must be one or more topic levels without '+', '#' or empty levels, e.g. \"transcode\""
            ));
        }
        Ok(Topics {
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn worker_heartbeat(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/heartbeat", self.prefix)
    }
    pub fn worker_availability(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/availability", self.prefix)
    }
    pub fn worker_jobs(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/jobs", self.prefix)
    }
    /// The status of the job a worker runs now (retained; `idle` when none),
    /// so dashboards have one fixed topic per worker.
    pub fn worker_job(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/job", self.prefix)
    }
    /// Segment reports of a worker (see `wire::SegmentReport`).
    pub fn worker_segments(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/segments", self.prefix)
    }
    /// The orchestrator's word on a worker's job outputs (keep, delete).
    pub fn worker_outputs(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/outputs", self.prefix)
    }
    /// Every worker's segment reports.
    pub fn all_segments(&self) -> String {
        self.worker_segments("+")
    }
    pub fn worker_cancel(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/cancel", self.prefix)
    }
    /// Any payload here asks the orchestrator to cancel the jobs the worker
    /// runs (Home Assistant's cancel button): the orchestrator's cancel is
    /// what the worker takes.
    pub fn worker_stop(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/stop", self.prefix)
    }
    /// Every worker's stop requests.
    pub fn all_worker_stop(&self) -> String {
        self.worker_stop("+")
    }
    pub fn job_status(&self, job_id: &str) -> String {
        format!("{}/jobs/{job_id}/status", self.prefix)
    }
    /// The status of one part of a split job, named by the attempt number
    /// of its run (retained, published by the worker that runs it).
    pub fn chunk_status(&self, job_id: &str, attempt: &str) -> String {
        format!("{}/jobs/{job_id}/chunks/{attempt}", self.prefix)
    }
    /// Every chunk's status.
    pub fn all_chunk_status(&self) -> String {
        self.chunk_status("+", "+")
    }
    /// Any payload here cancels the job, wherever it runs.
    pub fn job_cancel(&self, job_id: &str) -> String {
        format!("{}/jobs/{job_id}/cancel", self.prefix)
    }
    pub fn jobs_submit(&self) -> String {
        format!("{}/jobs/submit", self.prefix)
    }
    /// Counters of the whole system (retained): queued and running jobs,
    /// workers online.
    pub fn orchestrator_stats(&self) -> String {
        format!("{}/orchestrator/stats", self.prefix)
    }
    pub fn orchestrator_availability(&self) -> String {
        format!("{}/orchestrator/availability", self.prefix)
    }

    /// Every worker's heartbeat.
    pub fn all_heartbeats(&self) -> String {
        self.worker_heartbeat("+")
    }
    /// Every worker's availability.
    pub fn all_availability(&self) -> String {
        self.worker_availability("+")
    }
    /// Every job's status.
    pub fn all_job_status(&self) -> String {
        self.job_status("+")
    }
    /// Every job's cancel topic.
    pub fn all_job_cancel(&self) -> String {
        self.job_cancel("+")
    }

    /// The worker id of a heartbeat topic, without allocating (the
    /// broker asks for every publish it reads).
    pub fn heartbeat_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let id = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/workers/")?
            .strip_suffix("/heartbeat")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    /// Recognises a topic of ours; `None` for anything else.
    pub fn parse(&self, topic: &str) -> Option<Topic> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["workers", id, kind] if !id.is_empty() => {
                let id = id.to_string();
                match *kind {
                    "heartbeat" => Some(Topic::WorkerHeartbeat(id)),
                    "availability" => Some(Topic::WorkerAvailability(id)),
                    "jobs" => Some(Topic::WorkerJobs(id)),
                    "cancel" => Some(Topic::WorkerCancel(id)),
                    "stop" => Some(Topic::WorkerStop(id)),
                    "job" => Some(Topic::WorkerJob(id)),
                    "segments" => Some(Topic::WorkerSegments(id)),
                    "outputs" => Some(Topic::WorkerOutputs(id)),
                    _ => None,
                }
            }
            ["jobs", "submit"] => Some(Topic::JobsSubmit),
            ["jobs", id, "status"] if !id.is_empty() => Some(Topic::JobStatus(id.to_string())),
            ["jobs", id, "cancel"] if !id.is_empty() => Some(Topic::JobCancel(id.to_string())),
            ["jobs", id, "chunks", attempt] if !id.is_empty() && !attempt.is_empty() => {
                Some(Topic::ChunkStatus(id.to_string(), attempt.to_string()))
            }
            ["orchestrator", "availability"] => Some(Topic::OrchestratorAvailability),
            ["orchestrator", "stats"] => Some(Topic::OrchestratorStats),
            _ => None,
        }
    }
}

/// Payloads of the availability topics.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_topics_are_told_apart_without_parsing() {
        let t = Topics::new("transcode").expect("a good prefix");
        let cases = [
            ("transcode/workers/w1/heartbeat", Some("w1")),
            ("transcode/workers//heartbeat", None),
            ("transcode/workers/a/b/heartbeat", None),
            ("transcode/workers/w1/availability", None),
            ("other/workers/w1/heartbeat", None),
            ("transcodex/workers/w1/heartbeat", None),
            ("transcode/workers/w1/heartbeat/x", None),
        ];
        for (topic, want) in cases {
            assert_eq!(t.heartbeat_of(topic), want, "{topic}");
            let parsed = matches!(t.parse(topic), Some(Topic::WorkerHeartbeat(_)));
            assert_eq!(parsed, want.is_some(), "parse agrees on {topic}");
        }
    }

    #[test]
    fn prefixes() {
        let cases = [
            ("transcode", true),
            ("home/transcode", true),
            ("", false),
            ("/transcode", false),
            ("transcode/", false),
            ("trans+code", false),
            ("a//b", false),
            ("#", false),
        ];
        for (p, ok) in cases {
            assert_eq!(Topics::new(p).is_ok(), ok, "{p:?}");
        }
    }

    #[test]
    fn builds_and_parses() {
        let t = Topics::new("transcode").unwrap();
        let cases = [
            (
                t.worker_heartbeat("w1"),
                Some(Topic::WorkerHeartbeat("w1".into())),
            ),
            (
                t.worker_availability("w1"),
                Some(Topic::WorkerAvailability("w1".into())),
            ),
            (t.worker_jobs("w1"), Some(Topic::WorkerJobs("w1".into()))),
            (
                t.worker_cancel("w1"),
                Some(Topic::WorkerCancel("w1".into())),
            ),
            (t.worker_stop("w1"), Some(Topic::WorkerStop("w1".into()))),
            (
                t.worker_segments("w1"),
                Some(Topic::WorkerSegments("w1".into())),
            ),
            (t.job_status("j"), Some(Topic::JobStatus("j".into()))),
            (t.job_cancel("j"), Some(Topic::JobCancel("j".into()))),
            (
                t.chunk_status("j", "3"),
                Some(Topic::ChunkStatus("j".into(), "3".into())),
            ),
            ("transcode/jobs/j/chunks/".into(), None),
            ("transcode/jobs/j/chunks/3/x".into(), None),
            (t.jobs_submit(), Some(Topic::JobsSubmit)),
            (
                t.orchestrator_availability(),
                Some(Topic::OrchestratorAvailability),
            ),
            ("transcode/workers/w1/other".into(), None),
            ("transcode/workers//heartbeat".into(), None),
            ("transcode/workers/a/b/heartbeat".into(), None),
            ("other/workers/w1/heartbeat".into(), None),
            ("transcodex/workers/w1/heartbeat".into(), None),
        ];
        for (topic, want) in cases {
            assert_eq!(t.parse(&topic), want, "{topic}");
        }
        assert_eq!(t.all_heartbeats(), "transcode/workers/+/heartbeat");
    }
}
