//! The worker's HTTP server (warp): health now, the HLS streams it serves.

use serde_json::json;
use warp::Filter;

/// `GET /healthz`: the worker is up; says which worker answers.
pub fn routes(
    worker_id: String,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(move || warp::reply::json(&json!({"status": "ok", "worker_id": worker_id})));
    health.recover(|_rejection: warp::Rejection| async {
        Ok::<_, std::convert::Infallible>(warp::reply::with_status(
            warp::reply::json(&json!({"error": "not found"})),
            warp::http::StatusCode::NOT_FOUND,
        ))
    })
}
