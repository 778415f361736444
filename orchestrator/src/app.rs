//! The orchestrator process: the embedded broker, the job store, the MQTT
//! session that feeds the core, the timer, and the HTTP API.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, LastWill, QoS};
use transcode_common::mqtt::{self, SessionEvent};
use transcode_common::mqtt_url::BrokerAddr;
use transcode_common::topics::{Topic, Topics, OFFLINE, ONLINE};
use transcode_common::wire::{self, JobRequest};

use crate::access::Access;
use crate::config::OrchestratorConfig;
use crate::core::{Core, CoreSettings, Now, Publish};
use crate::gate::Rules;
use crate::http::{self, ApiState};
use crate::logins::{join_line, Logins, Verdict, FIRST_WORKER, ORCHESTRATOR_LOGIN};
use crate::media::listing::Durations;
use crate::media::Media;
use crate::store::Store;
use transcode_common::validate;

/// How often time-driven work runs (timeouts, dispatch, pruning).
const TICK_EVERY: Duration = Duration::from_millis(500);
/// How long shutdown waits for the broker to take our goodbye.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);

/// The send buffer of every HTTP connection (Linux doubles it). A source
/// file streams into the socket only this far ahead of the worker's reads:
/// FFmpeg seeks by closing a connection, and whatever was sent ahead is
/// wasted. Still a full gigabit at 1 ms of round trip.
const HTTP_SEND_BUFFER: u32 = 64 * 1024;

/// Binds the HTTP listener; its connections inherit the send buffer.
fn http_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(HTTP_SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Runs the orchestrator until `shutdown` resolves.
pub async fn run(
    config: OrchestratorConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let topics = config.topics();

    let http_listen = config.http_listen();
    let listener = http_listener(http_listen).with_context(|| {
        format!("cannot listen for HTTP on {http_listen} (http.listen); is the port taken?")
    })?;

    let store = Store::open(&config.state.dir)?;
    let core = Core::open(
        store,
        topics.clone(),
        CoreSettings {
            heartbeat_timeout: Duration::from_secs(config.scheduler.heartbeat_timeout_s),
            max_attempts: config.scheduler.max_attempts,
            assign_timeout: Duration::from_secs(config.scheduler.assign_timeout_s),
            stall_timeout: Duration::from_secs(config.scheduler.stall_timeout_s),
            retention: Duration::from_secs(config.state.retention_s),
            max_queued: config.scheduler.max_queued_jobs,
        },
        config.homeassistant.enabled.then(|| {
            crate::homeassistant::Discovery::new(
                &config.homeassistant.discovery_prefix,
                topics.clone(),
            )
        }),
        Now::current(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut core = core;
    let media = match config.media_root() {
        Some(root) => {
            let media = Media::open(
                root,
                config.media_serves(),
                &config.state.dir,
                config.public_url(),
            )?;
            if media.serves() {
                tracing::info!(root = %media.root().display(), url = %config.public_url(), "serving the media library to workers without their own copy");
            } else {
                tracing::info!(root = %media.root().display(), "media library listed, not served (media.serve = false)");
            }
            Some(Arc::new(media))
        }
        None => None,
    };
    core.set_media(media.clone());
    let access = Arc::new(Access::open(
        &config.state.dir,
        config.http.metrics_need_token,
        config.http.submit_rate,
        f64::from(config.http.submit_burst),
    )?);
    tracing::info!(token = %access.token_path().display(), "the HTTP API wants the token in this file (Authorization: Bearer TOKEN); transcodectl on this machine reads it, elsewhere set TRANSCODE_TOKEN");
    let core = Arc::new(Mutex::new(core));

    // Who may log in to the embedded broker (not used with an external one,
    // or with broker.allow_anonymous).
    let logins = if config.broker.embedded && !config.broker.allow_anonymous {
        if !config.state.dir.join(crate::logins::LOGINS_FILE).exists() {
            // The first start: one worker's join line, ready to paste.
            let (password, _) = Logins::add_worker(&config.state.dir, FIRST_WORKER)?;
            let line = join_line(FIRST_WORKER, &password, &config.broker_public_addr());
            println!(
                "transcode-orchestrator: first start; the broker takes only its logins. On the machine that will transcode, run:\n  transcode-worker --config worker.toml join {line}\nIts password is shown only now; more workers: transcode-orchestrator add-worker NAME (revoke-worker {FIRST_WORKER} takes this one away)."
            );
        }
        let logins = Logins::open(&config.state.dir, config.credentials())?;
        tracing::info!(path = %logins.path().display(), "the embedded broker takes only its logins: add a worker with `transcode-orchestrator add-worker NAME`");
        Some(Arc::new(logins))
    } else {
        None
    };
    // The workers' passwords seal the orders sent to them: the embedded
    // broker's logins, or on an external broker the ones add-worker made
    // (which its password file must know too).
    let keys = match (&logins, config.broker.embedded) {
        (Some(l), _) => Some(l.clone()),
        (None, false) => {
            let found = Logins::open_existing(&config.state.dir)?.map(Arc::new);
            if let Some(l) = &found {
                tracing::info!(path = %l.path().display(), "orders to workers with a login in this file are sealed with its password");
            }
            found
        }
        (None, true) => None,
    };
    // What each of those logins may publish and subscribe to: rumqttd has
    // no access rules, the gate in front of its router has ours.
    let gate = logins.clone().map(|logins| {
        transcode_broker::guard::Gate::new(
            Arc::new(Rules::new(
                topics.clone(),
                core.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ha_status_topic(),
                config.credentials().map(|(user, _)| user),
                logins,
            )),
            Rules::refused_topic(&topics),
        )
    });
    // Kept until the process ends; dropping it says goodbye over mDNS.
    let mut advertisement = None;
    let broker = if config.broker.embedded {
        let mut settings = transcode_broker::BrokerSettings::new(config.broker_listen());
        settings.credentials = config.credentials();
        settings.authenticator = logins.clone().map(|logins| {
            transcode_broker::Authenticator(Arc::new(
                move |client_id: &str, username: &str, password: &str| match logins
                    .check(client_id, username, password)
                {
                    Verdict::Refused(why) => {
                        tracing::warn!(
                            client_id = ?validate::truncate(client_id, 60),
                            "MQTT login refused: {why}"
                        );
                        false
                    }
                    _ => true,
                },
            ))
        });
        settings.max_connections = config.broker.max_connections;
        settings.gate = gate.clone();
        let running = tokio::task::spawn_blocking(move || transcode_broker::start(&settings))
            .await
            .context("the broker start-up task failed")??;
        tracing::info!(listen = %config.broker.listen, "embedded MQTT broker ready");
        if config.broker.mdns {
            match transcode_broker::mdns::advertise(
                config.broker_listen().port(),
                topics.prefix(),
                transcode_common::VERSION,
            ) {
                Ok(ad) => advertisement = Some(ad),
                Err(e) => tracing::warn!("workers will need broker.url: {e}"),
            }
        }
        BrokerAddr {
            host: running.connect_addr.ip().to_string(),
            port: running.connect_addr.port(),
            tls: false,
        }
    } else {
        config
            .broker_url()
            .context("broker.url is not a usable broker address")?
    };

    // On our own broker the orchestrator logs in as itself.
    let credentials = match &logins {
        Some(l) => Some((ORCHESTRATOR_LOGIN.to_string(), l.orchestrator_password())),
        None => config.credentials(),
    };
    let tls = mqtt::tls_for(&broker, &config.broker.ca_file)
        .map_err(|e| anyhow::anyhow!("broker.ca_file: {e}"))?;
    let mut opts = mqtt::options(
        "transcode-orchestrator",
        &broker,
        Duration::from_secs(5),
        credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        tls.as_ref(),
    );
    opts.set_clean_session(true);
    opts.set_last_will(LastWill::new(
        topics.orchestrator_availability(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut events) = mqtt::connect(opts, broker.to_string(), None);
    let orders = Orders {
        topics: topics.clone(),
        logins: keys,
    };
    let http_orders = orders.clone();
    let session = Session {
        client: client.clone(),
        topics,
        core: core.clone(),
        orders,
    };

    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = client.clone();
    let server = tokio::spawn(
        warp::serve(http::routes(ApiState {
            core,
            publish: Arc::new(move |out| send(&publisher, out, &http_orders)),
            media,
            durations: Durations::new(&config.media.ffprobe),
            access,
            gate,
            limits: (config.http.submit_rate, config.http.submit_burst),
            logins: logins
                .as_ref()
                .map(|_| (config.state.dir.clone(), config.broker_public_addr())),
        }))
        .incoming(listener)
        .graceful(async {
            let _ = http_stopped.await;
        })
        .run(),
    );
    tracing::info!("HTTP API listening on {http_listen}");

    let mut tick = tokio::time::interval(TICK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // While our own connection is down we hear from nobody: time-driven
            // decisions (a worker lost, a run stalled) wait until it is back.
            _ = tick.tick(), if connected => session.tick(),
            event = events.recv() => match event {
                Some(SessionEvent::Connected { .. }) => {
                    connected = true;
                    session.on_connected().await;
                }
                Some(SessionEvent::Message(p)) => session.on_message(&p.topic, &p.payload, p.retain),
                Some(SessionEvent::Lost(_)) => connected = false,
                Some(SessionEvent::Closed) | None => {
                    anyhow::bail!("the MQTT connection stopped unexpectedly");
                }
            },
        }
    }

    tracing::info!("shutting down");
    if connected {
        let _ = client
            .publish(
                session.topics.orchestrator_availability(),
                QoS::AtLeastOnce,
                true,
                OFFLINE,
            )
            .await;
        let _ = client.disconnect().await;
        let closed = async {
            while let Some(event) = events.recv().await {
                if matches!(event, SessionEvent::Closed) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, closed).await;
    }
    drop(advertisement);
    let _ = http_stop.send(());
    let _ = server.await;
    Ok(())
}

/// Publishes what the core asked for. Never waits: when the broker is away
/// the store still holds the truth, and statuses are published again on
/// reconnection.
/// Publishes what the core decided. Orders to a worker that has a login
/// (assignments, cancels, output notices) are sealed with its password: the
/// broker has no access rules, so that is how the worker knows they are ours.
fn send(client: &AsyncClient, out: Vec<Publish>, orders: &Orders) {
    for p in out {
        let payload = orders.seal(&p.topic, p.payload);
        if let Err(e) = client.try_publish(p.topic.clone(), QoS::AtLeastOnce, p.retain, payload) {
            tracing::warn!(topic = %p.topic, error = %e, "not published");
        }
    }
}

/// What seals the orders to workers.
#[derive(Clone)]
struct Orders {
    topics: Topics,
    logins: Option<Arc<Logins>>,
}

impl Orders {
    fn seal(&self, topic: &str, payload: Vec<u8>) -> Vec<u8> {
        let Some(logins) = &self.logins else {
            return payload;
        };
        let worker = match self.topics.parse(topic) {
            Some(Topic::WorkerJobs(id) | Topic::WorkerCancel(id) | Topic::WorkerOutputs(id)) => id,
            _ => return payload,
        };
        match logins.password_of(&worker) {
            Some(key) => {
                // The time goes inside the seal: a recorded order replayed
                // later is refused as stale.
                let stamped = match serde_json::from_slice::<serde_json::Value>(&payload) {
                    Ok(serde_json::Value::Object(mut order)) => {
                        order.insert(
                            transcode_common::seal::SEALED_AT.into(),
                            transcode_common::unix_ms().into(),
                        );
                        serde_json::to_vec(&order).unwrap_or(payload)
                    }
                    _ => payload,
                };
                transcode_common::seal::seal(&stamped, key.as_bytes(), topic)
            }
            None => payload,
        }
    }
}

/// The orchestrator's side of the MQTT conversation.
struct Session {
    client: AsyncClient,
    topics: Topics,
    core: Arc<Mutex<Core>>,
    orders: Orders,
}

impl Session {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, out: Vec<Publish>) {
        send(&self.client, out, &self.orders);
    }

    /// Publishes while the core is still locked (publishing never waits), so
    /// messages leave in the order the core decided them.
    fn tick(&self) {
        let mut core = self.core();
        let out = core.tick(Now::current());
        self.send(out);
    }

    /// Subscribes (our session is clean, so every time), says we are here and
    /// puts our retained job statuses back (the broker may be new).
    /// Wildcards with many retained messages are subscribed at QoS 0: rumqttd
    /// sends at most 100 retained messages to a new QoS 1 subscription.
    async fn on_connected(&self) {
        let subscriptions = [
            // Availability first: its retained `offline` should arrive before
            // a dead worker's retained heartbeat.
            (self.topics.all_availability(), QoS::AtMostOnce),
            (self.topics.all_heartbeats(), QoS::AtMostOnce),
            (self.topics.all_job_status(), QoS::AtMostOnce),
            (self.topics.all_chunk_status(), QoS::AtMostOnce),
            (self.topics.all_segments(), QoS::AtLeastOnce),
            (self.topics.jobs_submit(), QoS::AtLeastOnce),
            (self.topics.all_job_cancel(), QoS::AtLeastOnce),
            (self.topics.all_worker_stop(), QoS::AtLeastOnce),
        ];
        let ha_status = self.core().ha_status_topic();
        for (topic, qos) in subscriptions
            .into_iter()
            .chain(ha_status.map(|t| (t, QoS::AtMostOnce)))
        {
            if let Err(e) = self.client.subscribe(&topic, qos).await {
                tracing::error!(%topic, error = %e, "cannot subscribe");
            }
        }
        if let Err(e) = self
            .client
            .publish(
                self.topics.orchestrator_availability(),
                QoS::AtLeastOnce,
                true,
                ONLINE,
            )
            .await
        {
            tracing::error!(error = %e, "cannot publish our availability");
        }
        // Possibly hundreds of retained statuses: wait for room in the
        // client's queue rather than drop any.
        let out = self.core().on_connected(Now::current());
        for p in out {
            if let Err(e) = self
                .client
                .publish(p.topic.clone(), QoS::AtLeastOnce, p.retain, p.payload)
                .await
            {
                tracing::warn!(topic = %p.topic, error = %e, "not published");
            }
        }
    }

    fn on_message(&self, topic: &str, payload: &[u8], retained: bool) {
        let now = Now::current();
        let mut core = self.core();
        let out = if core.ha_status_topic().as_deref() == Some(topic) {
            Ok(core.on_ha_status(payload))
        } else {
            match self.topics.parse(topic) {
                Some(Topic::WorkerHeartbeat(id)) => core.on_heartbeat(&id, payload, retained, now),
                Some(Topic::WorkerAvailability(id)) => core.on_availability(&id, payload, now),
                Some(Topic::JobStatus(id)) => Ok(core.on_status(&id, payload, now)),
                Some(Topic::ChunkStatus(id, attempt)) => {
                    Ok(core.on_chunk_status(&id, &attempt, payload, now))
                }
                Some(Topic::WorkerSegments(id)) => Ok(core.on_segments(&id, payload, now)),
                Some(Topic::JobsSubmit) => Ok(self.on_submit(&mut core, payload, now)),
                Some(Topic::JobCancel(id)) => Ok(self.on_cancel(&mut core, &id, now)),
                Some(Topic::WorkerStop(id)) => Ok(core.cancel_on(&id, now)),
                _ => {
                    tracing::debug!(%topic, "message on a topic we do not handle");
                    return;
                }
            }
        };
        // Still under the lock: see `tick`.
        match out {
            Ok(out) => self.send(out),
            Err(e) => tracing::warn!(%topic, "{e}"),
        }
    }

    /// A job request on `transcode/jobs/submit`.
    fn on_submit(&self, core: &mut Core, payload: &[u8], now: Now) -> Vec<Publish> {
        let outcome = wire::decode::<JobRequest>(payload)
            .map_err(|e| e.to_string())
            .and_then(|req| core.submit(req, now).map_err(|e| e.to_string()));
        match outcome {
            Ok((job, out)) => {
                tracing::info!(job_id = %job.job_id, "job submitted over MQTT");
                out
            }
            Err(e) => {
                let reason = format!("invalid job request on {}: {e}", self.topics.jobs_submit());
                match wire::job_id_of(payload) {
                    Some(job_id) => {
                        tracing::warn!(%job_id, "{reason}");
                        core.reject(job_id, reason, now)
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
    fn on_cancel(&self, core: &mut Core, id: &str, now: Now) -> Vec<Publish> {
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
}
