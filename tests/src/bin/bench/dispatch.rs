//! Dispatch: from `POST /api/jobs` until the worker holds the assignment,
//! beside a bare QoS 1 hop through the same (embedded) broker between two
//! clients of this process.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use transcode_common::mqtt::send_at_once;
use transcode_common::topics::Topics;
use transcode_common::wire::{self, ErrorKind, JobState, JobStatus};
use transcode_tests::System;

/// Jobs submitted one after the other in each round.
const JOBS: usize = 300;
const ROUNDS: usize = 3;
/// How long one assignment or hop may take before the bench gives up.
const TOO_LONG: Duration = Duration::from_secs(10);

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// A worker that only takes assignments: it tells the bench when each
/// arrives and ends the job at once (failed for its input, which is never
/// retried), so the next one can come.
async fn taker(port: u16, arrived: mpsc::Sender<Instant>) {
    let id = "taker";
    let topics = Topics::new("transcode").expect("prefix");
    let mut opts = MqttOptions::new(format!("worker-{id}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    send_at_once(&mut eventloop);
    let heartbeat = wire::encode(&transcode_tests::simulated_heartbeat(id));
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = beat.tick() => {
                let _ = client.try_publish(
                    topics.worker_heartbeat(id),
                    QoS::AtLeastOnce,
                    true,
                    heartbeat.clone(),
                );
                continue;
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(topics.worker_jobs(id), QoS::AtLeastOnce);
                let _ = client.try_publish(
                    topics.worker_availability(id),
                    QoS::AtLeastOnce,
                    true,
                    "online",
                );
                let _ = client.try_publish(
                    topics.worker_heartbeat(id),
                    QoS::AtLeastOnce,
                    true,
                    heartbeat.clone(),
                );
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = Instant::now();
                let order: serde_json::Value =
                    serde_json::from_slice(&p.payload).unwrap_or_default();
                let Some(job_id) = order["job_id"].as_str().and_then(|j| j.parse().ok()) else {
                    continue;
                };
                let _ = arrived.send(now);
                let mut status = JobStatus::new(job_id, JobState::Failed);
                status.worker_id = Some(id.to_string());
                status.attempt = order["attempt"].as_u64().map(|a| a as u32);
                status.error = Some("the dispatch bench takes jobs and runs none".into());
                status.error_kind = Some(ErrorKind::Input);
                let _ = client
                    .publish(
                        topics.job_status(&job_id.to_string()),
                        QoS::AtLeastOnce,
                        false,
                        wire::encode(&status),
                    )
                    .await;
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Two clients of the broker, one subscribed to what the other sends.
struct Hop {
    client: AsyncClient,
    arrived: mpsc::Receiver<Instant>,
}

impl Hop {
    fn connect(runtime: &tokio::runtime::Runtime, port: u16) -> Hop {
        let (tx, rx) = mpsc::channel::<Instant>();
        let topic = HOP_TOPIC;
        let (subscribed_tx, subscribed) = mpsc::channel::<()>();
        runtime.spawn(async move {
            let opts = MqttOptions::new("bench-hop-in", "127.0.0.1", port);
            let (client, mut eventloop) = AsyncClient::new(opts, 64);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(_))) => {
                        let _ = tx.send(Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        subscribed
            .recv_timeout(TOO_LONG)
            .expect("the hop's subscriber");
        let opts = MqttOptions::new("bench-hop-out", "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        send_at_once(&mut eventloop);
        runtime.spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Hop {
            client,
            arrived: rx,
        }
    }

    /// Milliseconds of `n` QoS 1 hops, one after the other, each about the
    /// size of an assignment.
    fn time(&self, runtime: &tokio::runtime::Runtime, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                runtime
                    .block_on(self.client.publish(
                        HOP_TOPIC,
                        QoS::AtLeastOnce,
                        false,
                        vec![b'x'; 600],
                    ))
                    .expect("the hop is sent");
                let got = self
                    .arrived
                    .recv_timeout(TOO_LONG)
                    .expect("the hop arrives");
                got.duration_since(t).as_secs_f64() * 1000.0
            })
            .collect()
    }
}

const HOP_TOPIC: &str = "bench/hop";

/// p50 and p99 of both, median of 3 rounds each, and the goal
/// (p99 at most 2 × the hop's + 2 ms).
pub fn dispatch() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut sys = System::new();
    // The bench submits faster than a person may (20 a second).
    sys.orchestrator_env.extend([
        transcode_tests::env("TRANSCODE_HTTP__SUBMIT_RATE", "100000"),
        transcode_tests::env("TRANSCODE_HTTP__SUBMIT_BURST", "100000"),
    ]);
    transcode_tests::decode::make_film(&sys.dir.path().join("media/film.mkv"), 2);
    let _o = sys.start_orchestrator();
    let (arrived_tx, arrived) = mpsc::channel();
    runtime.spawn(taker(sys.broker_port, arrived_tx));
    sys.wait_online("taker", true, TOO_LONG);
    let hop = Hop::connect(&runtime, sys.broker_port);
    let request =
        serde_json::json!({"source_path": "film.mkv", "resolution": "720p", "bitrate": "2M"})
            .to_string();
    let length = request.len().to_string();
    let bearer = transcode_tests::bearer();
    // The request as a client that sends it in one piece does (curl): the
    // bench measures the orchestrator, not Nagle's algorithm.
    let submit = || {
        let (code, _, body) = transcode_tests::http_request_with_body(
            sys.http_port,
            "POST",
            "/api/jobs",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Content-Length", &length),
            ],
            &request,
        );
        let job: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(code, 202, "{job}");
        job["job_id"].as_str().unwrap_or_default().to_string()
    };
    let (mut ours, mut hops) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let mut took = Vec::with_capacity(JOBS);
        let started = Instant::now();
        for _ in 0..JOBS {
            let t = Instant::now();
            let id = submit();
            let got = arrived
                .recv_timeout(TOO_LONG)
                .unwrap_or_else(|_| panic!("job {id} never reached the worker"));
            took.push(got.duration_since(t).as_secs_f64() * 1000.0);
            // The worker's slot is free again before the next job.
            transcode_tests::wait_until(TOO_LONG, &format!("job {id} to end"), || {
                let job = sys.job(&id);
                let state = job["state"].as_str().unwrap_or_default();
                ["failed", "completed", "cancelled"]
                    .contains(&state)
                    .then_some(())
            });
        }
        let all = started.elapsed();
        let mut bare = hop.time(&runtime, JOBS);
        let (p50, p99) = (percentile(&mut took, 0.5), percentile(&mut took, 0.99));
        let (h50, h99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
        eprintln!(
            "  round {round}: dispatch p50 {p50:.2} ms p99 {p99:.2} ms ({JOBS} jobs in {:.2} s); bare hop p50 {h50:.2} ms p99 {h99:.2} ms",
            all.as_secs_f64()
        );
        ours.push(p99);
        hops.push(h99);
    }
    let (p99, h99) = (crate::median(ours), crate::median(hops));
    let goal = 2.0 * h99 + 2.0;
    println!(
        "{:<52} {p99:>8.2} ms  bare QoS 1 hop p99 {h99:>6.2} ms   goal ≤ {goal:.2} ms   {}",
        "dispatch p99, POST to the worker (median of 3)",
        if p99 <= goal { "within" } else { "OVER" }
    );
}
