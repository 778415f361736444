//! The worker's HTTP server (warp): the HLS streams of its jobs, health and
//! metrics.
//!
//! Only `GET /hls/{job_id}/index.m3u8` and `GET /hls/{job_id}/seg<N>.ts` are
//! served, where `job_id` parses as a UUID and the file name matches exactly:
//! no path a client sends, however encoded, can name anything else.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::Filter;

use crate::command::{self, PLAYLIST};
use crate::outputs::Outputs;

/// `seg<N>.ts` → N.
fn segments_name(file: &str) -> Option<u64> {
    file.strip_prefix("seg")?.strip_suffix(".ts")?.parse().ok()
}

/// Renders `/metrics` on request.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

pub fn routes(
    worker_id: String,
    outputs: Arc<Outputs>,
    metrics: MetricsSource,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        Response::builder()
            .header(
                header::CONTENT_TYPE,
                transcode_common::metrics::CONTENT_TYPE,
            )
            .body(Bytes::from(metrics()).into())
            .unwrap_or_else(|_| not_found())
    });
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(move || warp::reply::json(&json!({"status": "ok", "worker_id": worker_id})));
    let hls = warp::path!("hls" / String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::any().map(move || outputs.clone()))
        .then(serve_hls);
    let preflight = warp::path("hls").and(warp::options()).map(|| {
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "Range, Content-Type")
            .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
            .body(Bytes::new())
            .unwrap_or_default()
    });
    health
        .map(warp::Reply::into_response)
        .or(hls)
        .unify()
        .or(metrics)
        .unify()
        .or(preflight.map(warp::Reply::into_response))
        .unify()
        .recover(|_rejection: warp::Rejection| async { Ok::<_, Infallible>(not_found()) })
}

fn not_found() -> warp::reply::Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"error": "not found"})),
        StatusCode::NOT_FOUND,
    )
    .into_response_with_cors()
}

trait WithCors {
    fn into_response_with_cors(self) -> warp::reply::Response;
}

impl<T: warp::Reply> WithCors for T {
    fn into_response_with_cors(self) -> warp::reply::Response {
        let mut r = self.into_response();
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_static("*"),
        );
        r
    }
}

async fn serve_hls(job: String, file: String, outputs: Arc<Outputs>) -> warp::reply::Response {
    let Ok(job_id) = Uuid::try_parse(&job) else {
        return not_found();
    };
    if !command::is_output_file(&file) {
        return not_found();
    }
    // The folder name comes from the parsed UUID, the file name from the
    // whitelist: nothing of the request's path reaches the file system.
    let path = outputs.folder(job_id).join(&file);
    let body = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) => return not_found(),
    };
    // Every request keeps the output alive (transcode.keep_outputs_s).
    match segments_name(&file) {
        Some(index) => outputs.served(job_id, index),
        None => outputs.touch(job_id),
    }
    let (content_type, cache) = if file == PLAYLIST {
        // An event playlist grows while FFmpeg runs: never cache it.
        (
            "application/vnd.apple.mpegurl",
            "no-cache, no-store, must-revalidate",
        )
    } else {
        // A finished segment never changes.
        ("video/mp2t", "public, max-age=3600")
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Bytes::from(body).into())
        .unwrap_or_else(|_| not_found())
}
