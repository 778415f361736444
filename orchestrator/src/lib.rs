//! The orchestrator: it embeds the MQTT broker, keeps the registry of
//! workers, and answers the HTTP API. No video byte passes through it.
//!
//! - [`config`]: the settings and their checks.
//! - [`registry`]: who is online, from heartbeats, availability and time;
//!   pure, tested by table.
//! - [`http`]: the warp API (`/api/workers`, `/healthz`).
//! - [`app`]: the process that ties them together ([`app::run`]).

pub mod app;
pub mod config;
pub mod http;
pub mod registry;
