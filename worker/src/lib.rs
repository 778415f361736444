//! A transcode-worker machine: it says what it can do, takes jobs from its
//! MQTT topic, runs FFmpeg and serves the result as HLS.
//!
//! - [`config`]: the settings and their checks.
//! - [`probe`]: which encoders really work here (one-frame test encodes).
//! - [`stats`]: CPU and memory figures; [`net`]: the LAN address.
//! - [`discover`]: finding the broker over mDNS when `broker.url` is empty.
//! - [`heartbeat`]: the retained self-description, built without IO.
//! - [`media`]: a job's `source_path`, confined to the media root.
//! - [`ffprobe`]: duration, size, rotation, frame rate and audio of a source.
//! - [`window`]: a run's frames and audio on the job's grid (pure).
//! - [`command`]: the FFmpeg command line (pure, tested by table).
//! - [`progress`]: FFmpeg's `-progress` blocks and failure lines (pure).
//! - [`jobs`]: assignments in, FFmpeg supervised, statuses and segment
//!   reports out, cancels.
//! - [`outputs`]: the job folders, what they hold, and when they go.
//! - [`http`]: the warp server with the HLS streams and `/metrics`.
//! - [`metrics`]: the Prometheus text of `/metrics` (pure).
//! - [`app`]: the process that ties them together ([`app::run`]).

pub mod app;
pub mod command;
pub mod config;
pub mod discover;
pub mod ffprobe;
pub mod heartbeat;
pub mod http;
pub mod jobs;
pub mod join;
pub mod media;
pub mod metrics;
pub mod orders;
pub mod outputs;
pub mod probe;
pub mod progress;
pub mod stats;
pub mod window;
