//! The worker process: probe, HTTP server, and the MQTT session that keeps
//! its retained heartbeat and availability true.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::watch;
use transcode_common::mqtt::{self, SessionEvent};
use transcode_common::topics::{Topic, Topics, OFFLINE, ONLINE};
use transcode_common::{mqtt_url, unix_ms, wire};

use crate::config::WorkerConfig;
use crate::heartbeat::{self, Activity, Identity};
use crate::jobs::{JobSettings, Jobs};
use crate::outputs::Outputs;
use crate::stats::Stats;
use crate::{discover, http, probe};
use transcode_common::net;

/// How long shutdown waits for the broker to take our last words.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often expired outputs are looked for.
const OUTPUT_SWEEP: Duration = Duration::from_secs(1);
/// How long shutdown waits for running FFmpeg processes to stop.
const JOBS_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the worker until `shutdown` resolves.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let worker_id = config.worker_id.clone();
    let topics = config.topics();

    let listen = config.http_listen();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("worker {worker_id}: cannot listen for HTTP on {listen} (http.listen); is the port taken?")
    })?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(listen.port());

    let report = probe::run(
        &config.transcode.ffmpeg,
        &config.hw_accel(),
        Duration::from_secs(config.transcode.probe_timeout_s),
    )
    .await;
    if let Some(e) = &report.ffmpeg_error {
        tracing::error!(worker_id = %worker_id, error = %e, "hardware probe could not run FFmpeg; this worker will take no jobs");
    }
    tracing::info!(
        worker_id = %worker_id,
        hw_accel = ?report.hw_accel(),
        encoders = ?report.encoders(),
        took_ms = report.elapsed.as_millis() as u64,
        "hardware probe finished"
    );

    let advertise_host = if config.http.advertise.trim().is_empty() {
        net::lan_address().to_string()
    } else {
        config.http.advertise.trim().to_string()
    };
    let mut stats = Stats::new();
    let identity = Identity {
        worker_id: worker_id.clone(),
        advertise_host: advertise_host.clone(),
        port,
        hostname: sysinfo::System::host_name().unwrap_or_else(|_| worker_id.clone()),
        cpu_cores: stats.cpu_cores(),
        max_jobs: config.transcode.max_jobs,
        weight: config.transcode.weight,
        interval_s: config.heartbeat.interval_s,
        hw_accel: report.hw_accel(),
        encoders: report.encoders(),
    };

    // Every connection (and every switch to a broker found again over mDNS)
    // uses the same identity, last will and credentials.
    let make_options = {
        let client_id = format!("worker-{worker_id}");
        let keepalive = Duration::from_secs(config.broker.keepalive_s);
        let credentials = config
            .broker
            .username
            .clone()
            .map(|u| (u, config.broker.password.clone().unwrap_or_default()));
        let will_topic = topics.worker_availability(&worker_id);
        // Only broker.url can say mqtts:// (brokers found over mDNS are
        // plain `_mqtt._tcp`).
        let tls = match mqtt_url::parse(&config.broker.url) {
            Ok(addr) => mqtt::tls_for(&addr, &config.broker.ca_file)
                .map_err(|e| anyhow::anyhow!("worker {worker_id}: broker.ca_file: {e}"))?,
            Err(_) => None,
        };
        move |addr: &mqtt_url::BrokerAddr| {
            let mut opts = mqtt::options(
                &client_id,
                addr,
                keepalive,
                credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                tls.as_ref(),
            );
            // A persistent session keeps job assignments queued while we
            // reconnect, and (NOTES.md) keeps the last will armed across
            // takeovers.
            opts.set_clean_session(false);
            opts.set_last_will(LastWill::new(
                will_topic.clone(),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
            opts
        }
    };
    // Orders are taken only sealed with our login (or, in a lab without
    // logins, as they come when worker.accept_unsigned_jobs says so).
    // Only a worker's own login (`worker-{id}`, made by add-worker) is a
    // key the orchestrator seals with; a shared or external broker's login
    // is not (the broker's own rules decide who publishes there).
    let own_login = config.broker.username.as_deref() == Some(&format!("worker-{worker_id}"));
    let orders = crate::orders::Orders::new(
        config.broker.password.as_deref().filter(|_| own_login),
        config.worker.accept_unsigned_jobs,
    );
    tokio::pin!(shutdown);
    // Whether the session is up, for the broker finder (over mDNS).
    let (up_tx, up_rx) = watch::channel(false);
    let (broker, redirect) = if config.broker.url.trim().is_empty() {
        tracing::info!(worker_id = %worker_id, "broker.url is empty: looking for the broker over mDNS (_mqtt._tcp)");
        let (found_tx, mut found_rx) = watch::channel(None);
        let (refused_tx, refused_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(discover::watch_brokers(
            worker_id.clone(),
            topics.prefix().to_string(),
            found_tx,
            discover::Links {
                connected: up_rx,
                refused: refused_rx,
            },
        ));
        let first = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            first = async {
                loop {
                    if let Some(addr) = found_rx.borrow_and_update().clone() {
                        return Some(addr);
                    }
                    if found_rx.changed().await.is_err() {
                        return None;
                    }
                }
            } => first,
        };
        let Some(first) = first else {
            bail!("worker {worker_id}: no broker found (mDNS stopped); set broker.url");
        };
        let redirect = mqtt::Redirect {
            addresses: found_rx,
            options: Box::new(make_options.clone()),
            refused: refused_tx,
        };
        (first, Some(redirect))
    } else {
        let addr = mqtt_url::parse(&config.broker.url)
            .map_err(|e| anyhow::anyhow!("worker {worker_id}: broker.url: {e}"))?;
        (addr, None)
    };
    let (client, mut events) = mqtt::connect(make_options(&broker), broker.to_string(), redirect);

    let (activity_tx, mut activity_rx) = watch::channel(Activity::default());
    let stream_base = format!("http://{}:{port}/hls/", net::url_host(&advertise_host));
    // Outputs an earlier process left are kept (the orchestrator may still
    // list their segments) and expire like any other.
    let outputs = Arc::new(Outputs::new(
        config.transcode.output_dir.clone(),
        Duration::from_secs(config.transcode.keep_outputs_s),
    ));
    match outputs.open().await {
        Ok(kept) if !kept.is_empty() => {
            tracing::info!(worker_id = %worker_id, kept = kept.len(), "outputs of an earlier run kept; the orchestrator hears what they hold")
        }
        Ok(_) => {}
        Err(e) => bail!(
            "worker {worker_id}: cannot use the output folder {}: {e} (transcode.output_dir)",
            config.transcode.output_dir.display()
        ),
    }
    let jobs = Jobs::new(
        JobSettings {
            worker_id: worker_id.clone(),
            media_root: config.media.root(),
            ffmpeg: config.transcode.ffmpeg.clone(),
            ffprobe: config.transcode.ffprobe.clone(),
            max_jobs: config.transcode.max_jobs,
            threads: config.transcode.threads,
            segment_seconds: config.transcode.segment_seconds,
            probe_timeout: Duration::from_secs(config.transcode.probe_timeout_s),
            stream_base: stream_base.clone(),
            encoders: report.encoders(),
        },
        outputs.clone(),
        topics.clone(),
        client.clone(),
        activity_tx.clone(),
    );
    let metrics: http::MetricsSource = {
        let jobs = jobs.clone();
        let max_jobs = config.transcode.max_jobs;
        let report = report.clone();
        std::sync::Arc::new(move || crate::metrics::render(&jobs.metrics(), max_jobs, &report))
    };
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        warp::serve(http::routes(worker_id.clone(), outputs.clone(), metrics))
            .incoming(listener)
            .graceful(async {
                let _ = http_stopped.await;
            })
            .run(),
    );
    tracing::info!(
        worker_id = %worker_id,
        %stream_base,
        "HTTP server listening on {}",
        std::net::SocketAddr::new(listen.ip(), port)
    );

    let session = Session {
        client: client.clone(),
        topics: topics.clone(),
        identity,
    };
    let mut connected = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(config.heartbeat.interval_s));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(OUTPUT_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sweep.tick() => jobs.sweep_outputs().await,
            _ = ticker.tick() => {
                if connected {
                    session.publish_heartbeat(&activity_rx.borrow(), &mut stats);
                }
            }
            changed = activity_rx.changed() => {
                if changed.is_ok() && connected {
                    session.publish_heartbeat(&activity_rx.borrow_and_update(), &mut stats);
                }
            }
            event = events.recv() => match event {
                Some(SessionEvent::Connected { session_present }) => {
                    connected = true;
                    up_tx.send_replace(true);
                    if !session_present {
                        session.subscribe().await;
                    }
                    session.publish_online(&activity_rx.borrow(), &mut stats).await;
                    if activity_rx.borrow().active_jobs.is_empty() {
                        jobs.publish_idle();
                    }
                    // Whatever the orchestrator missed while we were apart:
                    // the last final statuses, and what our folders hold.
                    let jobs = jobs.clone();
                    tokio::spawn(async move {
                        jobs.publish_finals().await;
                        jobs.publish_inventory().await;
                    });
                }
                Some(SessionEvent::Message(p)) => match topics.parse(&p.topic) {
                    Some(Topic::WorkerJobs(id) | Topic::WorkerCancel(id) | Topic::WorkerOutputs(id))
                        if id == worker_id =>
                    {
                        match orders.open(&p.topic, &p.payload, transcode_common::unix_ms()) {
                            Ok(order) => match topics.parse(&p.topic) {
                                Some(Topic::WorkerJobs(_)) => jobs.on_assignment(&order).await,
                                Some(Topic::WorkerCancel(_)) => jobs.on_cancel(&order).await,
                                _ => jobs.on_output(&order).await,
                            },
                            Err(why) => tracing::warn!(
                                worker_id = %worker_id,
                                topic = %p.topic,
                                job_id = ?transcode_common::wire::job_id_of(&p.payload),
                                "order refused: {why}"
                            ),
                        }
                    }
                    _ => tracing::debug!(worker_id = %worker_id, topic = %p.topic, "message on a topic we do not handle"),
                },
                Some(SessionEvent::Lost(_)) => {
                    connected = false;
                    // Over mDNS: look again, the broker may have moved.
                    up_tx.send_replace(false);
                }
                Some(SessionEvent::Closed) | None => {
                    bail!("worker {worker_id}: the MQTT connection stopped unexpectedly");
                }
            },
        }
    }

    tracing::info!(worker_id = %worker_id, "shutting down");
    activity_tx.send_modify(|a| a.draining = true);
    jobs.shutdown(JOBS_STOP_TIMEOUT).await;
    if connected {
        session.publish_heartbeat(&activity_tx.borrow(), &mut stats);
        session.say_goodbye().await;
        let closed = async {
            while let Some(event) = events.recv().await {
                if matches!(event, SessionEvent::Closed) {
                    break;
                }
            }
        };
        if tokio::time::timeout(GOODBYE_TIMEOUT, closed).await.is_err() {
            tracing::warn!(worker_id = %worker_id, "the broker did not take our goodbye in time; its last will reports us offline");
        }
    }
    let _ = http_stop.send(());
    let _ = server.await;
    Ok(())
}

/// The worker's side of the MQTT conversation.
struct Session {
    client: AsyncClient,
    topics: Topics,
    identity: Identity,
}

impl Session {
    async fn subscribe(&self) {
        let id = &self.identity.worker_id;
        for topic in [
            self.topics.worker_jobs(id),
            self.topics.worker_cancel(id),
            self.topics.worker_outputs(id),
        ] {
            if let Err(e) = self.client.subscribe(&topic, QoS::AtLeastOnce).await {
                tracing::error!(worker_id = %id, %topic, error = %e, "cannot subscribe");
            }
        }
    }

    async fn publish_online(&self, activity: &Activity, stats: &mut Stats) {
        let id = &self.identity.worker_id;
        if let Err(e) = self
            .client
            .publish(
                self.topics.worker_availability(id),
                QoS::AtLeastOnce,
                true,
                ONLINE,
            )
            .await
        {
            tracing::error!(worker_id = %id, error = %e, "cannot publish availability");
        }
        self.publish_heartbeat(activity, stats);
    }

    /// Publishes the retained heartbeat; never waits (a full queue means the
    /// broker is unreachable and the next heartbeat will say the same).
    fn publish_heartbeat(&self, activity: &Activity, stats: &mut Stats) {
        let hb = heartbeat::build(&self.identity, activity, &stats.sample(), unix_ms());
        let id = &self.identity.worker_id;
        if let Err(e) = self.client.try_publish(
            self.topics.worker_heartbeat(id),
            QoS::AtLeastOnce,
            true,
            wire::encode(&hb),
        ) {
            tracing::warn!(worker_id = %id, error = %e, "heartbeat not sent");
        } else {
            tracing::debug!(worker_id = %id, status = hb.status.as_str(), cpu = hb.cpu_usage, "heartbeat");
        }
    }

    /// `offline` on our availability, then a clean DISCONNECT (which the
    /// broker does not answer with our last will).
    async fn say_goodbye(&self) {
        let id = &self.identity.worker_id;
        let _ = self
            .client
            .publish(
                self.topics.worker_availability(id),
                QoS::AtLeastOnce,
                true,
                OFFLINE,
            )
            .await;
        let _ = self.client.disconnect().await;
    }
}
