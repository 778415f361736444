//! What each login may publish and subscribe to on the embedded broker: the
//! [`transcode_broker::guard::Policy`] the broker's gate asks about every
//! publish, last will and subscription.
//!
//! - The orchestrator's login: anything.
//! - A worker's login (`worker-{id}`): its own heartbeat, availability
//!   (also as its last will), current-job and segment topics, and the
//!   statuses of jobs and chunks, but only ones that say `"worker_id":
//!   "{id}"`: only the worker itself speaks for itself, and the core then
//!   takes a status only from the worker that holds the run. It subscribes
//!   only under its own `workers/{id}/` topics and to the orchestrator's
//!   availability.
//! - The shared tools' login (`broker.username`, Home Assistant,
//!   `mosquitto_sub`): it reads everything and may ask for things (submit,
//!   cancel a job, stop a worker's jobs, Home Assistant's own status), never
//!   speak for a worker or a job.
//!
//! A login taken away (revoked, or given a new password) loses its
//! connection within a second of its next packet.

use std::sync::Arc;

use transcode_broker::guard::{Client, Policy};
use transcode_common::topics::{Topic, Topics};
use transcode_common::wire;

use crate::logins::{Logins, Verdict, ORCHESTRATOR_LOGIN, WORKER_PREFIX};

/// The rules of one orchestrator's broker.
pub struct Rules {
    topics: Topics,
    /// `{discovery_prefix}/status`, where Home Assistant says it started.
    ha_status: Option<String>,
    /// The shared tools' login name, if there is one.
    shared: Option<String>,
    logins: Arc<Logins>,
}

/// Who a logged-in client is, by its login name (the broker already checked
/// its password when it connected).
#[derive(Debug, PartialEq)]
enum Role<'a> {
    Orchestrator,
    Worker(&'a str),
    Shared,
    Nobody,
}

impl Rules {
    pub fn new(
        topics: Topics,
        ha_status: Option<String>,
        shared: Option<String>,
        logins: Arc<Logins>,
    ) -> Rules {
        Rules {
            topics,
            ha_status,
            shared,
            logins,
        }
    }

    /// The topic refused publishes go to, as refusal notes.
    pub fn refused_topic(topics: &Topics) -> String {
        format!("{}/refused", topics.prefix())
    }

    fn role<'a>(&self, who: &'a Client) -> Role<'a> {
        let Some(user) = who.username.as_deref() else {
            return Role::Nobody;
        };
        // The same order as `Logins::check`: the shared login first.
        if self.shared.as_deref() == Some(user) {
            Role::Shared
        } else if user == ORCHESTRATOR_LOGIN {
            Role::Orchestrator
        } else if let Some(id) = user.strip_prefix(WORKER_PREFIX) {
            Role::Worker(id)
        } else {
            Role::Nobody
        }
    }

    fn worker_publish(&self, id: &str, topic: &str, payload: &[u8]) -> Result<(), String> {
        let own = |w: &str| w == id;
        // A worker's payloads that name a worker must name this one; its
        // own retained topics may also be cleared (an empty payload).
        let speaks_for_itself = |needed: bool| match wire::speaker_of(payload) {
            Some(w) if w == id => Ok(()),
            Some(w) => Err(format!(
                "worker {id} may not speak for worker {:?}",
                transcode_common::validate::truncate(&w, 60)
            )),
            None if !needed => Ok(()),
            None => Err(format!(
                "a status from worker {id} must say \"worker_id\": \"{id}\""
            )),
        };
        match self.topics.parse(topic) {
            Some(Topic::WorkerAvailability(w)) if own(&w) => Ok(()),
            Some(Topic::WorkerHeartbeat(w) | Topic::WorkerJob(w) | Topic::WorkerSegments(w))
                if own(&w) =>
            {
                speaks_for_itself(false)
            }
            Some(Topic::JobStatus(_) | Topic::ChunkStatus(..)) => speaks_for_itself(true),
            _ => Err(format!(
                "worker {id} may publish only its own heartbeat, availability, current job and segment reports, and the statuses of its runs"
            )),
        }
    }

    fn shared_publish(&self, topic: &str) -> Result<(), String> {
        if self.ha_status.as_deref() == Some(topic) {
            return Ok(());
        }
        match self.topics.parse(topic) {
            Some(Topic::JobsSubmit | Topic::JobCancel(_) | Topic::WorkerStop(_)) => Ok(()),
            _ => Err(
                "the shared login may submit and cancel jobs and stop a worker's jobs; it never speaks for a worker or a job"
                    .into(),
            ),
        }
    }
}

impl Policy for Rules {
    fn publish(&self, who: &Client, topic: &str, payload: &[u8]) -> Result<(), String> {
        match self.role(who) {
            Role::Orchestrator => Ok(()),
            Role::Worker(id) => self.worker_publish(id, topic, payload),
            Role::Shared => self.shared_publish(topic),
            Role::Nobody => Err("no login of this broker".into()),
        }
    }

    fn subscribe(&self, who: &Client, filter: &str) -> Result<(), String> {
        match self.role(who) {
            Role::Orchestrator | Role::Shared => Ok(()),
            Role::Worker(id) => {
                let own = format!("{}/workers/{id}/", self.topics.prefix());
                let orchestrator = self.topics.orchestrator_availability();
                (filter.starts_with(&own) || filter == orchestrator)
                    .then_some(())
                    .ok_or_else(|| {
                        format!("worker {id} may subscribe only under {own} and to {orchestrator}")
                    })
            }
            Role::Nobody => Err("no login of this broker".into()),
        }
    }

    fn still_valid(&self, who: &Client) -> Result<(), String> {
        let (Some(user), Some(password)) = (who.username.as_deref(), who.password()) else {
            return Err("it has no login".into());
        };
        match self.logins.check(&who.client_id, user, password) {
            Verdict::Refused(why) => Err(format!("its login no longer holds: {why}")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> (tempfile::TempDir, Rules) {
        let dir = tempfile::tempdir().unwrap();
        let logins = Logins::open(dir.path(), Some(("ha".into(), "pw".into()))).unwrap();
        let rules = Rules::new(
            Topics::new("transcode").unwrap(),
            Some("homeassistant/status".into()),
            Some("ha".into()),
            Arc::new(logins),
        );
        (dir, rules)
    }

    fn client(user: &str) -> Client {
        Client::new(user, Some((user, "x")))
    }

    #[test]
    fn each_login_publishes_only_what_is_its_own() {
        let (_dir, rules) = rules();
        let job = "transcode/jobs/6f0c2a8e-0000-4000-8000-000000000001";
        let status = |w: &str| format!(r#"{{"job_id":"x","state":"completed","worker_id":"{w}"}}"#);
        // (login, topic, payload, allowed)
        let cases: Vec<(&str, String, String, bool)> = vec![
            (
                "transcode-orchestrator",
                format!("{job}/status"),
                "{}".into(),
                true,
            ),
            (
                "transcode-orchestrator",
                "transcode/workers/w1/jobs".into(),
                "{}".into(),
                true,
            ),
            (
                "worker-w1",
                "transcode/workers/w1/heartbeat".into(),
                r#"{"worker_id":"w1"}"#.into(),
                true,
            ),
            (
                "worker-w1",
                "transcode/workers/w1/heartbeat".into(),
                String::new(),
                true,
            ),
            (
                "worker-w1",
                "transcode/workers/w1/availability".into(),
                "offline".into(),
                true,
            ),
            (
                "worker-w1",
                "transcode/workers/w1/segments".into(),
                r#"{"worker_id":"w1"}"#.into(),
                true,
            ),
            (
                "worker-w1",
                "transcode/workers/w1/job".into(),
                r#"{"state":"idle","worker_id":"w1"}"#.into(),
                true,
            ),
            ("worker-w1", format!("{job}/status"), status("w1"), true),
            ("worker-w1", format!("{job}/chunks/3"), status("w1"), true),
            // Another worker's topics, or speaking for it.
            (
                "worker-w2",
                "transcode/workers/w1/heartbeat".into(),
                r#"{"worker_id":"w2"}"#.into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/workers/w1/availability".into(),
                "offline".into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/workers/w2/heartbeat".into(),
                r#"{"worker_id":"w1"}"#.into(),
                false,
            ),
            ("worker-w2", format!("{job}/status"), status("w1"), false),
            ("worker-w2", format!("{job}/chunks/3"), status("w1"), false),
            (
                "worker-w2",
                format!("{job}/status"),
                r#"{"state":"completed"}"#.into(),
                false,
            ),
            ("worker-w2", format!("{job}/status"), String::new(), false),
            // Orders and requests are not a worker's to give.
            (
                "worker-w2",
                "transcode/workers/w1/jobs".into(),
                "{}".into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/workers/w2/jobs".into(),
                "{}".into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/workers/w1/cancel".into(),
                "CANCEL".into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/jobs/submit".into(),
                "{}".into(),
                false,
            ),
            (
                "worker-w2",
                "transcode/orchestrator/availability".into(),
                "offline".into(),
                false,
            ),
            (
                "worker-w2",
                "homeassistant/device/x/config".into(),
                "{}".into(),
                false,
            ),
            // The shared login asks; it never speaks for a worker or a job.
            ("ha", "transcode/jobs/submit".into(), "{}".into(), true),
            ("ha", format!("{job}/cancel"), String::new(), true),
            (
                "ha",
                "transcode/workers/w1/stop".into(),
                "PRESS".into(),
                true,
            ),
            ("ha", "homeassistant/status".into(), "online".into(), true),
            ("ha", format!("{job}/status"), status("w1"), false),
            (
                "ha",
                "transcode/workers/w1/availability".into(),
                "offline".into(),
                false,
            ),
            ("ha", "transcode/workers/w1/jobs".into(), "{}".into(), false),
            (
                "ha",
                "transcode/workers/w1/cancel".into(),
                "CANCEL".into(),
                false,
            ),
            (
                "ha",
                "homeassistant/device/x/config".into(),
                "{}".into(),
                false,
            ),
            (
                "stranger",
                "transcode/jobs/submit".into(),
                "{}".into(),
                false,
            ),
        ];
        for (user, topic, payload, allowed) in cases {
            let got = rules.publish(&client(user), &topic, payload.as_bytes());
            assert_eq!(
                got.is_ok(),
                allowed,
                "{user} on {topic} with {payload}: {got:?}"
            );
        }
        let anonymous = Client::new("x", None);
        assert!(rules
            .publish(&anonymous, "transcode/jobs/submit", b"{}")
            .is_err());
    }

    #[test]
    fn a_worker_subscribes_only_under_its_own_topics() {
        let (_dir, rules) = rules();
        let cases = [
            ("worker-w1", "transcode/workers/w1/jobs", true),
            ("worker-w1", "transcode/workers/w1/#", true),
            ("worker-w1", "transcode/workers/w2/jobs", false),
            ("worker-w1", "transcode/workers/+/jobs", false),
            ("worker-w1", "transcode/orchestrator/availability", true),
            ("worker-w1", "transcode/orchestrator/#", false),
            ("worker-w1", "transcode/#", false),
            ("worker-w1", "#", false),
            ("ha", "#", true),
            (
                "transcode-orchestrator",
                "transcode/workers/+/heartbeat",
                true,
            ),
            ("stranger", "transcode/#", false),
        ];
        for (user, filter, allowed) in cases {
            let got = rules.subscribe(&client(user), filter);
            assert_eq!(got.is_ok(), allowed, "{user} to {filter}: {got:?}");
        }
    }

    #[test]
    fn a_login_holds_until_it_is_revoked_or_rekeyed() {
        let (dir, rules) = rules();
        let (pass, _) = Logins::add_worker(dir.path(), "w1").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let w1 = Client::new("worker-w1", Some(("worker-w1", &pass)));
        assert!(rules.still_valid(&w1).is_ok());
        // A new password: the old connection's login no longer holds.
        Logins::add_worker(dir.path(), "w1").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let why = rules.still_valid(&w1).unwrap_err();
        assert!(why.contains("wrong password for worker w1"), "{why}");
        Logins::revoke_worker(dir.path(), "w1").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let why = rules.still_valid(&w1).unwrap_err();
        assert!(why.contains("no login"), "{why}");
        assert!(rules.still_valid(&Client::new("x", None)).is_err());
    }
}
