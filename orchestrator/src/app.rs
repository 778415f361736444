//! The orchestrator process: the embedded broker, the job store, the MQTT
//! session that feeds the core (`session`), the seal on orders to workers
//! (`orders`), the timer, and the HTTP API.

mod orders;
mod session;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{LastWill, QoS};
use transcode_common::mqtt;
use transcode_common::topics::OFFLINE;

use crate::access::Access;
use crate::bus::{Bus, BusEvent, BusEvents};
use crate::config::OrchestratorConfig;
use crate::core::{Core, CoreSettings, Now};
use crate::gate::Rules;
use crate::http::{self, ApiState};
use crate::logins::{join_line, Logins, Verdict, FIRST_WORKER};
use crate::media::listing::Durations;
use crate::media::Media;
use crate::runner::Runner;
use crate::store::Store;
use orders::Orders;
use session::Session;
use transcode_common::validate;

/// How often time-driven work runs (timeouts, dispatch, pruning).
const TICK_EVERY: Duration = Duration::from_millis(500);
/// Sleeps until `deadline`; forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Heartbeats the embedded broker's tap keeps between two looks (every
/// 100 ms): ten thousand workers beating every second fill a tenth of it.
const TAP_CAPACITY: usize = 10_000;

/// How long shutdown waits for open HTTP requests.
const HTTP_GOODBYE: Duration = Duration::from_secs(5);
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
            max_heartbeat_interval: Duration::from_secs(config.registry.max_heartbeat_interval_s),
            forget_after: Duration::from_secs(config.registry.forget_after_s),
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
    // On our own broker the heartbeats come from its tap (see
    // transcode_broker::tap): a thousand a second wake nobody.
    let tap = config.broker.embedded.then(|| {
        let topics = topics.clone();
        Arc::new(transcode_broker::tap::Tap::new(TAP_CAPACITY, move |t| {
            topics.heartbeat_of(t).is_some()
        }))
    });
    let (bus, mut events) = if config.broker.embedded {
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
        settings.tap = tap.clone();
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
        // Our own broker is in this process: talk to its router directly.
        let (link, events) = running
            .local_client("transcode-orchestrator")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        (
            Bus::Local(link),
            BusEvents::Local {
                events,
                greeted: false,
            },
        )
    } else {
        let broker = config
            .broker_url()
            .context("broker.url is not a usable broker address")?;
        let tls = mqtt::tls_for(&broker, &config.broker.ca_file)
            .map_err(|e| anyhow::anyhow!("broker.ca_file: {e}"))?;
        let credentials = config.credentials();
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
        let (client, events) = mqtt::connect(opts, broker.to_string(), None);
        (Bus::Remote(client), BusEvents::Remote(events))
    };
    let orders = Orders {
        topics: topics.clone(),
        logins: keys,
    };
    let ha_status = core
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .ha_status_topic();
    let runner = Runner::start(
        core.clone(),
        bus.clone(),
        Box::new(move |topic, payload| orders.seal(topic, payload)),
    );
    let mut session = Session::new(bus.clone(), topics, runner.clone(), ha_status, tap);

    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let streams: Arc<http::events::Streams> = Default::default();
    let server = tokio::spawn(
        warp::serve(http::routes(ApiState {
            core,
            runner: runner.clone(),
            media,
            durations: Durations::new(&config.media.ffprobe),
            access,
            streams: streams.clone(),
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
    // Set by a tick that found the store writable again.
    let resync = Arc::new(tokio::sync::Notify::new());
    let mut connected = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // While our own connection is down we hear from nobody: time-driven
            // decisions (a worker lost, a run stalled) wait until it is back.
            _ = tick.tick(), if connected => {
                let resync = resync.clone();
                runner.send(move |core| {
                    let out = core.tick(Now::current());
                    if core.take_resync() {
                        resync.notify_one();
                    }
                    out
                }).await;
            }
            _ = resync.notified() => session.resync().await,
            _ = sleep_until_some(session.heartbeats_due()) => session.flush_heartbeats().await,
            event = events.recv() => match event {
                Some(BusEvent::Connected) => {
                    connected = true;
                    session.flush_heartbeats().await;
                    session.on_connected().await;
                }
                Some(BusEvent::Message { topic, payload, retain }) => session.on_message(topic, payload, retain).await,
                Some(BusEvent::Lost) => connected = false,
                Some(BusEvent::Closed) | None => {
                    anyhow::bail!("the MQTT connection stopped unexpectedly");
                }
            },
        }
    }

    session.flush_heartbeats().await;
    tracing::info!("shutting down");
    if connected {
        bus.goodbye(
            &mut events,
            &session.topics.orchestrator_availability(),
            OFFLINE,
            GOODBYE_TIMEOUT,
        )
        .await;
    }
    drop(advertisement);
    // Open dashboards end their event streams; a request still running
    // (a segment held for its new holder) gets a little while.
    streams.close();
    let _ = http_stop.send(());
    if tokio::time::timeout(HTTP_GOODBYE, server).await.is_err() {
        tracing::warn!(
            "HTTP requests still open after {} s were cut off",
            HTTP_GOODBYE.as_secs()
        );
    }
    Ok(())
}
