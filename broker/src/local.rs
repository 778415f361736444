//! A client inside the broker's own process: it talks to rumqttd's router
//! over its in-memory link, with no socket, no MQTT encoding and no second
//! event loop on either side.
//!
//! The orchestrator hears every worker's heartbeat; over loopback TCP each
//! one was written by the broker, read back by rumqttc and decoded again,
//! which cost more than the broker's own work for that message. Through
//! the link the router hands over the message it already holds.
//!
//! What the router does for a local link, read in rumqttd 0.20's
//! `link/local.rs` and `router/routing.rs`:
//! - A subscription's QoS decides the QoS of what is forwarded, not the
//!   publish's: a QoS 0 publish from here reaches a worker's QoS 1
//!   subscription (and its persistent session) as QoS 1. So this link
//!   publishes and subscribes at QoS 0 and has no acknowledgements to keep.
//! - After about 200 undelivered notifications the router stops serving the
//!   link (`Unschedule`) until it says it is ready again: [`LocalEvents`]
//!   does, as soon as it has taken them.
//! - A second connection with the same client id replaces the first, so
//!   the link's id carries a random part no remote client can guess.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Filter, Packet, Publish, QoS, RetainForwardRule, Subscribe, Unsubscribe};
use rumqttd::Notification;

/// Builds links to a running router (its sender cannot be named outside
/// rumqttd, so it lives inside this closure).
pub(crate) type LinkMaker = Arc<dyn Fn(&str) -> Result<(LinkTx, LinkRx), LocalError> + Send + Sync>;

/// Why the link did not take a request: the router is gone, which only
/// happens when the broker stopped.
#[derive(Debug, thiserror::Error)]
#[error("the embedded broker's router is gone: {0}")]
pub struct LocalError(String);

fn gone(e: LinkError) -> LocalError {
    LocalError(e.to_string())
}

/// Publishes and subscribes through the link. Clones share it.
#[derive(Clone)]
pub struct LocalClient {
    tx: Arc<Mutex<LinkTx>>,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalClient")
    }
}

/// One message on a subscription of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    /// Set on a retained message handed to a new subscription.
    pub retain: bool,
}

/// What the router sends to the link, read in order.
pub struct LocalEvents {
    rx: LinkRx,
    client_id: String,
}

impl std::fmt::Debug for LocalEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalEvents({})", self.client_id)
    }
}

/// Connects a new link named `name` plus a random part.
pub(crate) fn connect(
    make: &LinkMaker,
    name: &str,
) -> Result<(LocalClient, LocalEvents), LocalError> {
    let client_id = format!("{name}-local-{:016x}", random());
    let (tx, rx) = make(&client_id)?;
    tracing::debug!(%client_id, "in-process link to the broker's router connected");
    Ok((
        LocalClient {
            tx: Arc::new(Mutex::new(tx)),
        },
        LocalEvents { rx, client_id },
    ))
}

/// Links with `builder`: clean session, topics may be published before
/// anyone subscribes.
pub(crate) fn build(builder: LinkBuilder<'_>) -> Result<(LinkTx, LinkRx), LocalError> {
    let (tx, rx, _connack) = builder
        .clean_session(true)
        .dynamic_filters(true)
        .build()
        .map_err(gone)?;
    Ok((tx, rx))
}

/// Enough to keep two links of one process apart from each other and from
/// remote clients.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

impl LocalClient {
    fn push(&self, packet: Packet) -> Result<(), LocalError> {
        // The router's queue is bounded: a full one blocks this thread until
        // the router takes the next event, as rumqttd's own local links do.
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        send_now(&mut tx, packet)
    }

    /// Publishes `payload` on `topic`; delivered at each subscription's QoS.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        retain: bool,
    ) -> Result<(), LocalError> {
        let publish = Publish::new(
            Bytes::copy_from_slice(topic.as_bytes()),
            payload.into(),
            retain,
        );
        self.push(Packet::Publish(publish, None))
    }

    /// Subscribes to `filter`; its retained messages come at once. rumqttd
    /// sends them only for a filter the link does not hold yet: to read
    /// them again, unsubscribe first.
    pub fn subscribe(&self, filter: &str) -> Result<(), LocalError> {
        let filters = vec![Filter {
            path: filter.to_string(),
            qos: QoS::AtMostOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        }];
        self.push(Packet::Subscribe(Subscribe { pkid: 0, filters }, None))
    }

    /// Ends the subscription to `filter`.
    pub fn unsubscribe(&self, filter: &str) -> Result<(), LocalError> {
        let unsubscribe = Unsubscribe {
            pkid: 0,
            filters: vec![filter.to_string()],
        };
        self.push(Packet::Unsubscribe(unsubscribe, None))
    }
}

/// `LinkTx::send` is the only way to hand the router a packet of our own
/// making. It is an `async fn` without an await point (it blocks on the
/// router's bounded queue instead), so one poll finishes it.
fn send_now(tx: &mut LinkTx, packet: Packet) -> Result<(), LocalError> {
    use std::future::Future;
    let mut future = std::pin::pin!(tx.send(packet));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.map(drop).map_err(gone),
        // Not reachable while rumqttd's `send` has no await point.
        std::task::Poll::Pending => Err(LocalError(
            "rumqttd's link waited where it never did before".into(),
        )),
    }
}

impl LocalEvents {
    /// The next message; `None` once the router is gone. Cancel-safe: what
    /// the router handed over waits inside until read.
    pub async fn next(&mut self) -> Option<Received> {
        loop {
            let notification = match self.rx.next().await {
                Ok(Some(n)) => n,
                // A wake-up with nothing behind it.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, error = %e, "the in-process link to the broker closed");
                    return None;
                }
            };
            match notification {
                Notification::Forward(forward) => {
                    let publish = forward.publish;
                    match String::from_utf8(publish.topic.to_vec()) {
                        Ok(topic) => {
                            return Some(Received {
                                topic,
                                payload: publish.payload,
                                retain: publish.retain,
                            })
                        }
                        Err(_) => {
                            tracing::debug!("a message whose topic is not UTF-8 was skipped");
                        }
                    }
                }
                Notification::Unschedule => {
                    // Everything before it is in our hands already: ask for
                    // more. Not awaited, so a cancelled read loses no wake-up.
                    if let Err(e) = self.rx.ready() {
                        tracing::warn!(client_id = %self.client_id, error = %e, "the in-process link to the broker closed");
                        return None;
                    }
                }
                // Acknowledgements of our subscriptions and the like.
                _ => {}
            }
        }
    }
}
