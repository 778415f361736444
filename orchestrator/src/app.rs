//! The orchestrator process: the embedded broker, the MQTT session that feeds
//! the registry, and the HTTP API.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, LastWill, QoS};
use transcode_common::mqtt::{self, SessionEvent};
use transcode_common::mqtt_url::BrokerAddr;
use transcode_common::topics::{Topic, Topics, OFFLINE, ONLINE};
use transcode_common::unix_ms;

use crate::config::OrchestratorConfig;
use crate::http::{self, ApiState};
use crate::registry::{Registry, Transition};

/// How often worker liveness is re-checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How long shutdown waits for the broker to take our goodbye.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the orchestrator until `shutdown` resolves.
pub async fn run(
    config: OrchestratorConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let topics = config.topics();

    let http_listen = config.http_listen();
    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .with_context(|| {
            format!("cannot listen for HTTP on {http_listen} (http.listen); is the port taken?")
        })?;

    let broker = if config.broker.embedded {
        let mut settings = transcode_broker::BrokerSettings::new(config.broker_listen());
        settings.credentials = config.credentials();
        settings.max_connections = config.broker.max_connections;
        let running = tokio::task::spawn_blocking(move || transcode_broker::start(&settings))
            .await
            .context("the broker start-up task failed")??;
        tracing::info!(listen = %config.broker.listen, "embedded MQTT broker ready");
        BrokerAddr {
            host: running.connect_addr.ip().to_string(),
            port: running.connect_addr.port(),
        }
    } else {
        config
            .broker_url()
            .context("broker.url is not a usable broker address")?
    };

    let registry = Arc::new(Mutex::new(Registry::new(Duration::from_secs(
        config.scheduler.heartbeat_timeout_s,
    ))));

    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        warp::serve(http::routes(ApiState {
            registry: registry.clone(),
        }))
        .incoming(listener)
        .graceful(async {
            let _ = http_stopped.await;
        })
        .run(),
    );
    tracing::info!("HTTP API listening on {http_listen}");

    let credentials = config.credentials();
    let mut opts = mqtt::options(
        "transcode-orchestrator",
        &broker,
        Duration::from_secs(5),
        credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    );
    opts.set_clean_session(true);
    opts.set_last_will(LastWill::new(
        topics.orchestrator_availability(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut events) = mqtt::connect(opts, broker.to_string());
    let session = Session {
        client,
        topics,
        registry,
    };

    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sweep.tick() => session.sweep(),
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
        let _ = session
            .client
            .publish(
                session.topics.orchestrator_availability(),
                QoS::AtLeastOnce,
                true,
                OFFLINE,
            )
            .await;
        let _ = session.client.disconnect().await;
        let closed = async {
            while let Some(event) = events.recv().await {
                if matches!(event, SessionEvent::Closed) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, closed).await;
    }
    let _ = http_stop.send(());
    let _ = server.await;
    Ok(())
}

/// The orchestrator's side of the MQTT conversation.
struct Session {
    client: AsyncClient,
    topics: Topics,
    registry: Arc<Mutex<Registry>>,
}

impl Session {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes (our session is clean, so every time) and says we are here.
    /// Wildcards with many retained messages are subscribed at QoS 0: rumqttd
    /// sends at most 100 retained messages to a new QoS 1 subscription.
    async fn on_connected(&self) {
        for topic in [self.topics.all_heartbeats(), self.topics.all_availability()] {
            if let Err(e) = self.client.subscribe(&topic, QoS::AtMostOnce).await {
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
    }

    fn on_message(&self, topic: &str, payload: &[u8], retained: bool) {
        let now = Instant::now();
        let result = match self.topics.parse(topic) {
            Some(Topic::WorkerHeartbeat(id)) => self
                .registry()
                .on_heartbeat(&id, payload, retained, now, unix_ms())
                .map(|t| (id, t)),
            Some(Topic::WorkerAvailability(id)) => self
                .registry()
                .on_availability(&id, payload, now, unix_ms())
                .map(|t| (id, t)),
            _ => {
                tracing::debug!(%topic, "message on a topic we do not handle");
                return;
            }
        };
        match result {
            Ok((id, Some(transition))) => self.log_transition(&id, &transition),
            Ok((_, None)) => {}
            Err(e) => tracing::warn!(%topic, "{e}"),
        }
    }

    fn sweep(&self) {
        let changes = self.registry().sweep(Instant::now());
        for (id, transition) in changes {
            self.log_transition(&id, &transition);
        }
    }

    fn log_transition(&self, worker_id: &str, transition: &Transition) {
        match transition {
            Transition::Online => tracing::info!(worker_id, "worker is online"),
            Transition::Offline(why) => tracing::warn!(worker_id, "worker is offline: {why}"),
        }
    }
}
