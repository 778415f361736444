//! What the worker says about its runs: their statuses on the job's (or
//! the chunk's) topic, its current job for dashboards, and the memory of
//! its last final statuses.
//!
//! A final status travels on the job's topic while the heartbeat that no
//! longer lists the run travels on the worker's: the orchestrator may hear
//! the heartbeat first. So the heartbeat recalls the runs that ended lately
//! (`finished_runs`), and after every connection the last final statuses are
//! published again: a broker that restarted lost whatever was in flight.

use std::collections::VecDeque;

use rumqttc::QoS;
use transcode_common::unix_ms;
use transcode_common::wire::{self, FinishedRun, JobState, JobStatus, MAX_FINISHED_RUNS};

use super::Jobs;

/// The last final statuses: (topic, payload, the run).
#[derive(Default)]
pub(super) struct Finals(VecDeque<(String, Vec<u8>, FinishedRun)>);

impl Finals {
    fn remember(&mut self, topic: String, payload: Vec<u8>, run: FinishedRun) {
        self.0
            .retain(|(_, _, r)| (r.job_id, r.attempt) != (run.job_id, run.attempt));
        self.0.push_back((topic, payload, run));
        while self.0.len() > MAX_FINISHED_RUNS {
            self.0.pop_front();
        }
    }
}

impl Jobs {
    /// Says on the worker's current-job topic that it runs nothing.
    pub fn publish_idle(&self) {
        let payload = wire::encode(&wire::IdleJob::of(self.worker_id()));
        let topic = self.inner.topics.worker_job(self.worker_id());
        let _ = self
            .inner
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload);
    }

    /// Publishes a retained job status, or for a part of a split job
    /// (`chunk`) the status of that part on its own topic: the job's topic
    /// is the orchestrator's, which sums up the parts. Final states wait for
    /// the client's queue, are remembered (see the module) and named in the
    /// next heartbeats; progress never waits (FFmpeg's output must keep
    /// flowing).
    pub(super) async fn publish(
        &self,
        mut status: JobStatus,
        attempt: Option<u32>,
        chunk: bool,
        wait: bool,
    ) {
        status.worker_id = Some(self.worker_id().to_string());
        status.attempt = attempt;
        status.timestamp = Some(unix_ms());
        let job_id = status.job_id.to_string();
        let topic = match attempt {
            Some(a) if chunk => self.inner.topics.chunk_status(&job_id, &a.to_string()),
            _ => self.inner.topics.job_status(&job_id),
        };
        let payload = wire::encode(&status);
        if status.state == JobState::Processing {
            // The worker's current job, on one fixed topic for dashboards.
            let current = self.inner.topics.worker_job(self.worker_id());
            let _ = self
                .inner
                .client
                .try_publish(current, QoS::AtLeastOnce, true, payload.clone());
        }
        if let (true, Some(attempt)) = (status.state.is_final(), attempt) {
            let run = FinishedRun {
                job_id: status.job_id,
                attempt,
                state: status.state,
            };
            self.state()
                .finals
                .remember(topic.clone(), payload.clone(), run);
            self.inner
                .activity
                .send_modify(|a| a.finished(run, unix_ms()));
        }
        let result = if wait {
            self.inner
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await
        } else {
            self.inner
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, payload)
        };
        if let Err(e) = result {
            tracing::warn!(job_id = %status.job_id, state = status.state.as_str(), error = %e, "job status not sent");
        }
    }

    /// The last final statuses again, after a connection: what was in
    /// flight when it dropped may be lost (a broker that restarted keeps no
    /// session). The orchestrator takes a final status once; a repeated one
    /// changes nothing.
    pub async fn publish_finals(&self) {
        let finals: Vec<(String, Vec<u8>)> = self
            .state()
            .finals
            .0
            .iter()
            .map(|(t, p, _)| (t.clone(), p.clone()))
            .collect();
        for (topic, payload) in finals {
            if let Err(e) = self
                .inner
                .client
                .publish(topic.clone(), QoS::AtLeastOnce, true, payload)
                .await
            {
                tracing::warn!(worker_id = %self.worker_id(), %topic, error = %e, "final status not sent again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn finals_keep_the_newest_of_each_run_and_a_bounded_number() {
        let mut f = Finals::default();
        let job = Uuid::new_v4();
        let run = |attempt, state| FinishedRun {
            job_id: job,
            attempt,
            state,
        };
        f.remember("t".into(), b"failed".to_vec(), run(1, JobState::Failed));
        f.remember("t".into(), b"again".to_vec(), run(1, JobState::Failed));
        f.remember("t".into(), b"done".to_vec(), run(2, JobState::Completed));
        let kept: Vec<&[u8]> = f.0.iter().map(|(_, p, _)| p.as_slice()).collect();
        assert_eq!(kept, [&b"again"[..], &b"done"[..]]);
        for i in 0..40 {
            f.remember("t".into(), vec![], run(10 + i, JobState::Completed));
        }
        assert_eq!(f.0.len(), MAX_FINISHED_RUNS);
        assert_eq!(f.0.back().map(|(_, _, r)| r.attempt), Some(49));
    }
}
