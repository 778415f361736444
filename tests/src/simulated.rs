//! A simulated worker: no process and no FFmpeg, only the worker's side of
//! the MQTT protocol, so a test or a bench can put many workers (or one that
//! never runs anything) in front of the orchestrator.

use std::time::Duration;

/// The heartbeat of a simulated worker: idle, one slot, libx264, Linux.
pub fn simulated_heartbeat(id: &str) -> transcode_common::wire::Heartbeat {
    use transcode_common::wire::{Heartbeat, Os, WorkerStatus};
    Heartbeat {
        worker_id: id.to_string(),
        ip_address: "127.0.0.1".into(),
        port: 9,
        os: Os::Linux,
        hw_accel: vec![],
        status: WorkerStatus::Idle,
        cpu_usage: 1.0,
        hostname: None,
        version: None,
        cpu_cores: Some(2),
        memory_total_mb: None,
        memory_available_mb: None,
        max_jobs: Some(1),
        active_jobs: vec![],
        encoders: vec!["libx264".into()],
        weight: None,
        interval_s: Some(15),
        timestamp: Some(transcode_common::unix_ms()),
        finished_runs: Vec::new(),
    }
}

/// A worker speaking the real protocol: persistent session, retained last
/// will, `online` and a retained heartbeat on every connection.
pub async fn simulated_worker(id: String, port: u16) {
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
    let topics = transcode_common::topics::Topics::new("transcode").expect("prefix");
    let mut opts = MqttOptions::new(format!("worker-{id}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    opts.set_last_will(LastWill::new(
        topics.worker_availability(&id),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let heartbeat = simulated_heartbeat(&id);
    let payload = transcode_common::wire::encode(&heartbeat);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_publish(
                    topics.worker_availability(&id),
                    QoS::AtLeastOnce,
                    true,
                    "online",
                );
                let _ = client.try_publish(
                    topics.worker_heartbeat(&id),
                    QoS::AtLeastOnce,
                    true,
                    payload.clone(),
                );
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
