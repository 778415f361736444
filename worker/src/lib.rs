//! A transcode-worker machine: it says what it can do, takes jobs from its
//! MQTT topic, runs FFmpeg and serves the result as HLS.
//!
//! - [`config`]: the settings and their checks.
//! - [`probe`]: which encoders really work here (one-frame test encodes).
//! - [`stats`]: CPU and memory figures; [`net`]: the LAN address.
//! - [`heartbeat`]: the retained self-description, built without IO.
//! - [`http`]: the warp server.
//! - [`app`]: the process that ties them together ([`app::run`]).

pub mod app;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod net;
pub mod probe;
pub mod stats;
