//! The orchestrator's in-process link to the embedded broker's router,
//! beside real MQTT clients on the broker's socket: retained messages,
//! delivery at each subscription's QoS, and a burst larger than the
//! router hands a link at once.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use transcode_broker::local::{LocalClient, LocalEvents, Received};
use transcode_broker::{BrokerSettings, RunningBroker};

const DEADLINE: Duration = Duration::from_secs(10);

fn broker() -> RunningBroker {
    let port = transcode_tests::free_port();
    let settings = BrokerSettings::new(format!("127.0.0.1:{port}").parse().expect("address"));
    transcode_broker::start(&settings).expect("the broker starts")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A remote client, connected (CONNACK seen), with its event loop polled on
/// a task that forwards every incoming publish.
async fn remote(
    broker: &RunningBroker,
    id: &str,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.connect_addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 2000);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (up, connected) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut up = Some(up);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(up) = up.take() {
                        let _ = up.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => panic!("remote client {e}"),
            }
        }
    });
    tokio::time::timeout(DEADLINE, connected)
        .await
        .expect("the remote client connects in time")
        .expect("its event loop runs");
    (client, rx)
}

async fn next(events: &mut LocalEvents) -> Received {
    tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("a message within the deadline")
        .expect("the link is open")
}

/// Waits until the router has taken everything `link` sent before: a
/// retained message published last comes back on a subscription.
async fn settle(link: &LocalClient, events: &mut LocalEvents, topic: &str) {
    link.publish(topic, "settled", true).expect("publish");
    link.subscribe(topic).expect("subscribe");
    loop {
        let m = next(events).await;
        if m.topic == topic {
            break;
        }
    }
}

#[test]
fn retained_messages_reach_a_local_subscription_and_come_again_on_a_new_one() {
    let broker = broker();
    runtime().block_on(async {
        let (client, _rx) = remote(&broker, "worker-a").await;
        client
            .publish("t/workers/a/heartbeat", QoS::AtLeastOnce, true, "beat 1")
            .await
            .expect("publish");
        client
            .publish("t/workers/a/live", QoS::AtLeastOnce, false, "not kept")
            .await
            .expect("publish");
        let (link, mut events) = broker.local_client("test").expect("link");
        // Wait until the broker holds the retained heartbeat.
        let (_watch, mut watched) = {
            let (c, rx) = remote(&broker, "watch").await;
            c.subscribe("t/workers/a/heartbeat", QoS::AtMostOnce)
                .await
                .expect("subscribe");
            (c, rx)
        };
        tokio::time::timeout(DEADLINE, watched.recv())
            .await
            .expect("the retained heartbeat is held");

        link.subscribe("t/workers/+/heartbeat").expect("subscribe");
        let m = next(&mut events).await;
        assert_eq!(
            (m.topic.as_str(), m.payload.as_ref(), m.retain),
            ("t/workers/a/heartbeat", &b"beat 1"[..], true)
        );
        client
            .publish("t/workers/a/heartbeat", QoS::AtLeastOnce, true, "beat 2")
            .await
            .expect("publish");
        let m = next(&mut events).await;
        assert_eq!(m.payload.as_ref(), b"beat 2");

        // Read again from the start: the newest retained one only.
        link.unsubscribe("t/workers/+/heartbeat")
            .expect("unsubscribe");
        link.subscribe("t/workers/+/heartbeat").expect("subscribe");
        let m = next(&mut events).await;
        assert_eq!((m.payload.as_ref(), m.retain), (&b"beat 2"[..], true));
    });
}

#[test]
fn local_publishes_reach_remote_subscribers_at_their_qos_and_stay_retained() {
    let broker = broker();
    runtime().block_on(async {
        let (link, mut events) = broker.local_client("test").expect("link");
        let (worker, mut orders) = remote(&broker, "worker-b").await;
        worker
            .subscribe("t/workers/b/jobs", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        // The subscription is in place once a retained message on it
        // comes back.
        link.publish("t/workers/b/jobs", "ping", true)
            .expect("publish");
        let first = tokio::time::timeout(DEADLINE, orders.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(first.payload.as_ref(), b"ping");
        link.publish("t/workers/b/jobs", "", true).expect("clear");

        link.publish("t/workers/b/jobs", "order 1", false)
            .expect("publish");
        let order = loop {
            let p = tokio::time::timeout(DEADLINE, orders.recv())
                .await
                .expect("in time")
                .expect("open");
            if !p.payload.is_empty() {
                break p;
            }
        };
        assert_eq!(order.payload.as_ref(), b"order 1");
        assert_eq!(
            order.qos,
            QoS::AtLeastOnce,
            "delivered at the subscription's QoS"
        );

        // Retained from the link: a late subscriber still gets it.
        link.publish("t/jobs/j1/status", "queued", true)
            .expect("publish");
        settle(&link, &mut events, "t/settle").await;
        let (_late, mut late) = remote(&broker, "late").await;
        _late
            .subscribe("t/jobs/+/status", QoS::AtMostOnce)
            .await
            .expect("subscribe");
        let kept = tokio::time::timeout(DEADLINE, late.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(
            (kept.topic.as_str(), kept.payload.as_ref(), kept.retain),
            ("t/jobs/j1/status", &b"queued"[..], true)
        );
    });
}

/// 2,000 messages of 300 bytes on one topic are 600 KB, more than half of
/// what the broker keeps of a topic (`SEGMENT_BYTES` × `SEGMENTS_PER_TOPIC`),
/// and ten times what the router hands a link before it waits for it. Then
/// one message larger than a whole segment.
#[test]
fn a_burst_larger_than_the_router_hands_over_at_once_arrives_whole_and_in_order() {
    const N: usize = 2000;
    let broker = broker();
    runtime().block_on(async {
        let (link, mut events) = broker.local_client("test").expect("link");
        link.subscribe("t/burst/#").expect("subscribe");
        settle(&link, &mut events, "t/settle").await;
        let (client, _rx) = remote(&broker, "burster").await;
        let padding = "x".repeat(290);
        for i in 0..N {
            client
                .publish(
                    "t/burst/n",
                    QoS::AtMostOnce,
                    false,
                    format!("{i:06} {padding}"),
                )
                .await
                .expect("publish");
        }
        let large = "y".repeat(transcode_broker::SEGMENT_BYTES * 3 / 2);
        client
            .publish("t/burst/n", QoS::AtLeastOnce, false, large.clone())
            .await
            .expect("publish");
        for want in 0..N {
            let m = next(&mut events).await;
            assert_eq!(
                String::from_utf8_lossy(&m.payload[..6]),
                format!("{want:06}"),
                "message {want} of the burst"
            );
        }
        let m = next(&mut events).await;
        assert_eq!(m.payload.len(), large.len(), "the large message whole");
    });
}

#[test]
fn two_links_with_one_name_do_not_replace_each_other() {
    let broker = broker();
    runtime().block_on(async {
        let (a, mut a_events) = broker.local_client("same").expect("link");
        let (b, mut b_events) = broker.local_client("same").expect("link");
        a.subscribe("t/x").expect("subscribe");
        b.subscribe("t/x").expect("subscribe");
        settle(&a, &mut a_events, "t/a").await;
        settle(&b, &mut b_events, "t/b").await;
        a.publish("t/x", "hello", false).expect("publish");
        assert_eq!(next(&mut a_events).await.payload.as_ref(), b"hello");
        assert_eq!(next(&mut b_events).await.payload.as_ref(), b"hello");
    });
}
