//! The orchestrator: it embeds the MQTT broker, keeps the registry of
//! workers, and answers the HTTP API. No video byte passes through it.
//!
//! - [`config`]: the settings and their checks.
//! - [`registry`]: who is online, from heartbeats, availability and time;
//!   pure, tested by table.
//! - [`scheduler`]: which worker gets a job; pure, tested by table.
//! - [`job`]: the job record; [`store`]: the jobs on disk (redb).
//! - [`chunks`]: where the next part of a split job starts and ends; pure.
//! - [`segments`]: a job's segment map, the next run's range and the
//!   playlist; pure, tested by table.
//! - [`core`]: the state machine of jobs and workers: events in, MQTT
//!   messages out, every change stored first.
//! - [`logins`]: who may log in to the embedded broker; [`gate`]: what each
//!   login may publish and subscribe to there.
//! - [`ctl`]: what `transcodectl` prints.
//! - [`http`]: the warp API (`/api/workers`, `/healthz`).
//! - [`runner`]: the thread the core's events run on, and the publisher.
//! - [`bus`]: the MQTT connection, in memory to the embedded broker or a
//!   client of an external one.
//! - [`app`]: the process that ties them together ([`app::run`]).

pub mod access;
pub mod app;
pub mod bus;
pub mod chunks;
pub mod config;
pub mod core;
pub mod ctl;
pub mod gate;
pub mod homeassistant;
pub mod http;
pub mod job;
pub mod logins;
pub mod media;
pub mod registry;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod segments;
pub mod store;
