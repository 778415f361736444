//! The orchestrator's HTTP API (warp).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use crate::registry::Registry;

/// State the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Mutex<Registry>>,
}

impl ApiState {
    fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        let guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || state.clone());

    let workers = warp::path!("api" / "workers")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| warp::reply::json(&s.with_registry(|r| r.snapshot())));

    let health = warp::path!("healthz")
        .and(warp::get())
        .and(with_state)
        .map(|s: ApiState| {
            let online = s.with_registry(|r| r.online_count());
            warp::reply::json(&json!({"status": "ok", "workers_online": online}))
        });

    workers.or(health).recover(handle_rejection)
}

/// Every error is JSON with a sentence in `error`.
async fn handle_rejection(err: warp::Rejection) -> Result<impl warp::Reply, Infallible> {
    let (status, message) = if err.is_not_found() {
        (StatusCode::NOT_FOUND, "no such resource".to_string())
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this resource".to_string(),
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("{err:?}"))
    };
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({ "error": message })),
        status,
    ))
}
