//! The orchestrator's side of the MQTT conversation: what it subscribes to
//! after each connection, and which event of the core each message is.

use std::sync::Arc;

use rumqttc::QoS;
use transcode_broker::tap::Tap;
use transcode_common::topics::{Topic, Topics, ONLINE};
use transcode_common::wire::{self, JobRequest};

use crate::bus::Bus;
use crate::core::{Core, JobError, Now, Publish};
use crate::runner::Runner;

/// Wildcards with retained messages: availability first, so that a dead
/// worker's retained `offline` arrives before its retained heartbeat.
/// Subscribed at QoS 0: rumqttd sends at most 100 retained messages to a new
/// QoS 1 subscription. Heartbeats are not among them when the embedded
/// broker's tap copies them to us.
fn retained_filters(topics: &Topics, tapped: bool) -> Vec<String> {
    let mut filters = vec![topics.all_availability()];
    if !tapped {
        filters.push(topics.all_heartbeats());
    }
    filters.push(topics.all_job_status());
    filters.push(topics.all_chunk_status());
    filters
}

pub struct Session {
    pub bus: Bus,
    pub topics: Topics,
    pub runner: Runner,
    /// Home Assistant's status topic, when discovery is on.
    pub ha_status: Option<String>,
    /// Heartbeats heard and not yet handed to the core (see [`HEARTBEATS_EVERY`]).
    heartbeats: Vec<Heard>,
    /// On the embedded broker: its copies of the heartbeats as they came
    /// in, instead of a subscription.
    tap: Option<Arc<Tap>>,
    /// When the tap is looked at next.
    next_look: tokio::time::Instant,
}

/// One heartbeat as it arrived.
pub struct Heard {
    worker_id: String,
    payload: bytes::Bytes,
    retained: bool,
    at: Now,
}

/// Heartbeats go to the core together, at most this long after the first
/// of them arrived: a thousand workers beating every second wake the core
/// ten times a second, not a thousand. Anything else that arrives hands
/// the waiting heartbeats over first, so the core hears everything in the
/// order it arrived.
pub const HEARTBEATS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// More waiting heartbeats than this go at once.
const HEARTBEATS_AT_MOST: usize = 1000;

impl Session {
    pub fn new(
        bus: Bus,
        topics: Topics,
        runner: Runner,
        ha_status: Option<String>,
        tap: Option<Arc<Tap>>,
    ) -> Session {
        Session {
            bus,
            topics,
            runner,
            ha_status,
            heartbeats: Vec::new(),
            tap,
            next_look: tokio::time::Instant::now() + HEARTBEATS_EVERY,
        }
    }

    /// When the waiting heartbeats are due at the core; `None` when none
    /// waits. With a tap, at least every [`HEARTBEATS_EVERY`], since what
    /// waits in it wakes nobody.
    pub fn heartbeats_due(&self) -> Option<tokio::time::Instant> {
        let first = self
            .heartbeats
            .first()
            .map(|h| tokio::time::Instant::from_std(h.at.instant) + HEARTBEATS_EVERY);
        match (&self.tap, first) {
            (Some(_), Some(first)) => Some(first.min(self.next_look)),
            (Some(_), None) => Some(self.next_look),
            (None, first) => first,
        }
    }

    /// The heartbeats the tap copied since the last look, as heard now.
    /// The tap copies a heartbeat when the broker reads it, before the
    /// router has handed us what was read just before it on other topics:
    /// taken before any other message, a heartbeat read before it reaches
    /// the core first, and one read just after may too. The core does not
    /// lean on the order across topics (a final status overtaken by a
    /// heartbeat that no longer lists its run is expected, see `reconcile`).
    fn take_tapped(&mut self) {
        let Some(tap) = &self.tap else {
            return;
        };
        self.next_look = tokio::time::Instant::now() + HEARTBEATS_EVERY;
        let tapped = tap.take();
        if tapped.is_empty() {
            return;
        }
        let at = Now::current();
        for t in tapped {
            let Some(worker_id) = self.topics.heartbeat_of(t.topic()) else {
                continue;
            };
            self.heartbeats.push(Heard {
                worker_id: worker_id.to_string(),
                payload: t.payload,
                retained: false,
                at,
            });
        }
    }

    /// Hands the waiting heartbeats to the core, in the order they came.
    pub async fn flush_heartbeats(&mut self) {
        self.take_tapped();
        if self.heartbeats.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.heartbeats);
        self.runner
            .send(move |core| {
                let mut out = Vec::new();
                for h in batch {
                    match core.on_heartbeat(&h.worker_id, &h.payload, h.retained, h.at) {
                        Ok(more) => out.extend(more),
                        Err(e) => tracing::warn!(worker_id = %h.worker_id, "{e}"),
                    }
                }
                out
            })
            .await;
    }
}

impl Session {
    /// Subscribes (our session is clean, so every time), says we are here and
    /// puts our retained job statuses back (the broker may be new).
    pub async fn on_connected(&self) {
        let requests = [
            self.topics.all_segments(),
            self.topics.jobs_submit(),
            self.topics.all_job_cancel(),
            self.topics.all_worker_stop(),
        ];
        let subscriptions = retained_filters(&self.topics, self.tap.is_some())
            .into_iter()
            .map(|t| (t, QoS::AtMostOnce))
            .chain(requests.into_iter().map(|t| (t, QoS::AtLeastOnce)))
            .chain(self.ha_status.clone().map(|t| (t, QoS::AtMostOnce)));
        for (topic, qos) in subscriptions {
            if let Err(e) = self.bus.subscribe(&topic, qos).await {
                tracing::error!(%topic, error = %e, "cannot subscribe");
            }
        }
        if let Err(e) = self
            .bus
            .publish(
                &self.topics.orchestrator_availability(),
                true,
                ONLINE.as_bytes().to_vec(),
            )
            .await
        {
            tracing::error!(error = %e, "cannot publish our availability");
        }
        self.runner
            .send(|core| core.on_connected(Now::current()))
            .await;
    }

    /// The store takes writes again: what was refused while it could not
    /// is heard again. The retained statuses, heartbeats and availabilities
    /// come back with a new subscription (a broker sends them only to new
    /// ones), the workers send their inventories, and our own statuses go
    /// out again.
    pub async fn resync(&self) {
        for topic in retained_filters(&self.topics, self.tap.is_some()) {
            if let Err(e) = self.bus.unsubscribe(&topic).await {
                tracing::warn!(%topic, error = %e, "cannot unsubscribe to read again");
            }
            if let Err(e) = self.bus.subscribe(&topic, QoS::AtMostOnce).await {
                tracing::error!(%topic, error = %e, "cannot subscribe");
            }
        }
        self.runner
            .send(|core| core.on_connected(Now::current()))
            .await;
    }

    /// A message on one of our subscriptions, handed to the core's thread.
    pub async fn on_message(&mut self, topic: String, payload: bytes::Bytes, retained: bool) {
        let parsed = self.topics.parse(&topic);
        if let Some(Topic::WorkerHeartbeat(id)) = parsed {
            self.heartbeats.push(Heard {
                worker_id: id,
                payload,
                retained,
                at: Now::current(),
            });
            if self.heartbeats.len() >= HEARTBEATS_AT_MOST {
                self.flush_heartbeats().await;
            }
            return;
        }
        self.flush_heartbeats().await;
        if self.ha_status.as_deref() == Some(topic.as_str()) {
            self.runner
                .send(move |core| core.on_ha_status(&payload))
                .await;
            return;
        }
        let Some(parsed) = parsed else {
            tracing::debug!(%topic, "message on a topic we do not handle");
            return;
        };
        let submit_topic = self.topics.jobs_submit();
        self.runner
            .send(move |core| {
                let now = Now::current();
                let out = match parsed {
                    Topic::WorkerAvailability(id) => core.on_availability(&id, &payload, now),
                    Topic::JobStatus(id) => Ok(core.on_status(&id, &payload, now)),
                    Topic::ChunkStatus(id, attempt) => {
                        Ok(core.on_chunk_status(&id, &attempt, &payload, now))
                    }
                    Topic::WorkerSegments(id) => Ok(core.on_segments(&id, &payload, now)),
                    Topic::JobsSubmit => Ok(on_submit(core, &submit_topic, &payload, now)),
                    Topic::JobCancel(id) => Ok(on_cancel(core, &id, now)),
                    Topic::WorkerStop(id) => Ok(core.cancel_on(&id, now)),
                    _ => {
                        tracing::debug!(%topic, "message on a topic we do not handle");
                        return Vec::new();
                    }
                };
                out.unwrap_or_else(|e| {
                    tracing::warn!(%topic, "{e}");
                    Vec::new()
                })
            })
            .await;
    }
}

/// A job request on `transcode/jobs/submit`.
fn on_submit(core: &mut Core, topic: &str, payload: &[u8], now: Now) -> Vec<Publish> {
    let outcome = wire::decode::<JobRequest>(payload)
        .map_err(|e| JobError::Invalid(e.to_string()))
        .and_then(|req| core.submit(req, now));
    match outcome {
        Ok((job, out)) => {
            tracing::info!(job_id = %job.job_id, "job submitted over MQTT");
            out
        }
        Err(e) => {
            let later = matches!(e, JobError::Unavailable(_));
            let reason = if later {
                format!("job request on {topic} not taken: {e}")
            } else {
                format!("invalid job request on {topic}: {e}")
            };
            match wire::job_id_of(payload) {
                Some(job_id) => {
                    tracing::warn!(%job_id, "{reason}");
                    core.reject(job_id, reason, later, now)
                }
                None => {
                    tracing::warn!("{reason} (no job id to answer on)");
                    Vec::new()
                }
            }
        }
    }
}

/// Anything on `transcode/jobs/{id}/cancel`.
fn on_cancel(core: &mut Core, id: &str, now: Now) -> Vec<Publish> {
    let Ok(job_id) = uuid::Uuid::parse_str(id) else {
        tracing::warn!(
            job_id = id,
            "cancel request for something that is not a job id"
        );
        return Vec::new();
    };
    match core.cancel(job_id, now) {
        Ok((_, out)) => out,
        Err(e) => {
            tracing::warn!(%job_id, "cancel request over MQTT: {e}");
            Vec::new()
        }
    }
}
