//! What every transcode-worker binary shares, and the only place that defines
//! what crosses a process boundary.
//!
//! - [`wire`]: the MQTT payloads (Heartbeat, JobAssignment, JobStatus,
//!   JobRequest) with their JSON encoding and the decoder that turns untrusted
//!   bytes into them.
//! - [`topics`]: topic names under the configurable prefix, built and parsed.
//! - [`validate`]: the rules for worker ids, resolutions, bitrates, start times
//!   and source paths; pure functions, tested by table.
//! - [`config`]: loading a binary's configuration from built-in defaults, an
//!   optional TOML file and `TRANSCODE_...` environment variables.
//! - [`mqtt`]: one self-healing MQTT connection (backoff, reconnect events).
//! - [`metrics`]: `/metrics` in Prometheus text, through `prometheus-client`.
//! - [`mqtt_url`]: parsing `mqtt://host:port` broker addresses.
//! - [`http_range`]: what a request for a file's bytes gets: its `Range` and
//!   its conditions (`304`); pure, tested by table.

pub mod config;
pub mod files;
pub mod http_range;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod mqtt_url;
pub mod net;
pub mod seal;
pub mod topics;
pub mod validate;
pub mod wire;

/// The version every binary reports in heartbeats and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, as carried in `timestamp` fields.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sets up logging for a binary: `RUST_LOG` when set, otherwise `default`.
/// Logs go to stderr so that stdout stays for a command's own output.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM: the signal for a graceful shutdown.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
