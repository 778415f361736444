//! The orchestrator's connection to MQTT: an in-process link to the
//! embedded broker's router, or a client of an external broker.
//!
//! Both carry the same conversation (the session's subscriptions, the
//! runner's publishes); only how the bytes travel differs. On its own
//! broker the orchestrator skips the socket: every heartbeat it reads would
//! otherwise be written to loopback by the broker and decoded again by
//! rumqttc (`./dev bench load` measures what that cost).

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use transcode_broker::local::{LocalClient, LocalEvents};
use transcode_common::mqtt::SessionEvent;

/// Publishes and subscribes; clones share the connection.
#[derive(Clone, Debug)]
pub enum Bus {
    /// An MQTT client of an external broker (at QoS 1).
    Remote(AsyncClient),
    /// The embedded broker's router, in memory.
    Local(LocalClient),
}

/// What happened on the connection.
#[derive(Debug)]
pub enum BusEvent {
    /// Connected (again): subscribe and say we are here.
    Connected,
    Message {
        topic: String,
        payload: Bytes,
        retain: bool,
    },
    /// The connection broke; it comes back by itself.
    Lost,
    /// It ended: our goodbye went out, or the broker is gone.
    Closed,
}

/// Where [`BusEvent`]s come from.
pub enum BusEvents {
    Remote(mpsc::Receiver<SessionEvent>),
    Local {
        events: LocalEvents,
        /// The link is up from the start; the first read says so.
        greeted: bool,
    },
}

impl Bus {
    /// Publishes `payload` on `topic` (retained when `retain`).
    pub async fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Bus::Remote(client) => client
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Bus::Local(link) => link
                .publish(topic, payload, retain)
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes to `filter`; its retained messages follow.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), String> {
        match self {
            Bus::Remote(client) => client
                .subscribe(filter, qos)
                .await
                .map_err(|e| e.to_string()),
            // In memory nothing is lost on the way: QoS 0 (see
            // transcode_broker::local).
            Bus::Local(link) => link.subscribe(filter).map_err(|e| e.to_string()),
        }
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Bus::Remote(client) => client.unsubscribe(filter).await.map_err(|e| e.to_string()),
            Bus::Local(link) => link.unsubscribe(filter).map_err(|e| e.to_string()),
        }
    }

    /// Says goodbye: `last` is published retained on `topic`, and this
    /// returns once the broker has it (or after `timeout`).
    pub async fn goodbye(
        &self,
        events: &mut BusEvents,
        topic: &str,
        last: &str,
        timeout: std::time::Duration,
    ) {
        if let Err(e) = self.publish(topic, true, last.as_bytes().to_vec()).await {
            tracing::warn!(%topic, "our goodbye was not published: {e}");
            return;
        }
        let done = async {
            match self {
                Bus::Remote(client) => {
                    let _ = client.disconnect().await;
                    while let Some(event) = events.recv().await {
                        if matches!(event, BusEvent::Closed) {
                            break;
                        }
                    }
                }
                // The router takes a link's packets in order: once our own
                // goodbye comes back on a subscription, it holds it.
                Bus::Local(link) => {
                    if link.subscribe(topic).is_err() {
                        return;
                    }
                    while let Some(event) = events.recv().await {
                        if let BusEvent::Message {
                            topic: t, payload, ..
                        } = event
                        {
                            if t == topic && payload.as_ref() == last.as_bytes() {
                                break;
                            }
                        }
                    }
                }
            }
        };
        if tokio::time::timeout(timeout, done).await.is_err() {
            tracing::warn!(%topic, "the broker did not confirm our goodbye");
        }
    }
}

impl BusEvents {
    /// The next event; `None` when the connection is gone for good.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        match self {
            BusEvents::Remote(rx) => rx.recv().await.map(|event| match event {
                SessionEvent::Connected { .. } => BusEvent::Connected,
                SessionEvent::Message(p) => BusEvent::Message {
                    topic: p.topic,
                    payload: p.payload,
                    retain: p.retain,
                },
                SessionEvent::Lost(_) => BusEvent::Lost,
                SessionEvent::Closed => BusEvent::Closed,
            }),
            BusEvents::Local { events, greeted } => {
                if !*greeted {
                    *greeted = true;
                    return Some(BusEvent::Connected);
                }
                // `None`: the router is gone, and with it the broker.
                events.next().await.map(|m| BusEvent::Message {
                    topic: m.topic,
                    payload: m.payload,
                    retain: m.retain,
                })
            }
        }
    }
}
