//! The worker's HTTP server (warp): the HLS streams of its jobs, health and
//! metrics.
//!
//! Only `GET`/`HEAD /hls/{job_id}/index.m3u8` and `/hls/{job_id}/seg<N>.ts`
//! are served, where `job_id` parses as a UUID and the file name matches
//! exactly: no path a client sends, however encoded, can name anything else.
//! Files are streamed from disk in reads of [`CHUNK`] bytes, with ranges
//! (`206`, `416`), an entity tag and conditional requests (`304`), as
//! `transcode_common::http_range` decides; the file system is only touched
//! on tokio's blocking threads.

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use transcode_common::http_range::{self, Answer, Conditions, Span, Version};
use uuid::Uuid;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
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
    let health = {
        let worker_id = worker_id.clone();
        warp::path!("healthz")
            .and(warp::get())
            .map(move || warp::reply::json(&json!({"status": "ok", "worker_id": worker_id})))
    };
    let hls = warp::path!("hls" / String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || (worker_id.clone(), outputs.clone())))
        .then(
            |job, file, method, headers, state: (String, Arc<Outputs>)| async move {
                let (worker_id, outputs) = state;
                let request = HlsRequest {
                    job,
                    file,
                    head: method == Method::HEAD,
                    headers,
                };
                serve_hls(request, &worker_id, &outputs).await
            },
        );
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

/// How much of a file one read sends: memory stays flat however many
/// players download at once.
pub const CHUNK: usize = 64 * 1024;

/// A request under `/hls/`, as it came.
struct HlsRequest {
    job: String,
    file: String,
    head: bool,
    headers: HeaderMap,
}

async fn serve_hls(r: HlsRequest, worker_id: &str, outputs: &Outputs) -> warp::reply::Response {
    let Ok(job_id) = Uuid::try_parse(&r.job) else {
        return not_found();
    };
    if !command::is_output_file(&r.file) {
        return not_found();
    }
    // The folder name comes from the parsed UUID, the file name from the
    // whitelist: nothing of the request's path reaches the file system.
    let path = outputs.folder(job_id).join(&r.file);
    let (file, version) = match open(path).await {
        Ok(opened) => opened,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(worker_id, %job_id, file = r.file, "cannot open the file in transcode.output_dir (check its permissions): {e}");
            }
            return not_found();
        }
    };
    // Every request keeps the output alive (transcode.keep_outputs_s).
    match segments_name(&r.file) {
        Some(index) => outputs.served(job_id, index),
        None => outputs.touch(job_id),
    }
    let text = |name| {
        r.headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let conditions = Conditions {
        range: text(header::RANGE),
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: text(header::IF_MODIFIED_SINCE),
        if_range: text(header::IF_RANGE),
    };
    let now = SystemTime::now();
    let len = version.len;
    let (status, start, count) = match http_range::answer(&conditions, &version, now) {
        Answer::NotModified => (StatusCode::NOT_MODIFIED, 0, 0),
        Answer::Send(Span::Whole) => (StatusCode::OK, 0, len),
        Answer::Send(Span::Part { start, end }) => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Answer::Send(Span::Unsatisfiable) => {
            let message = format!(
                "{} of job {job_id} has {len} bytes; the range asked for lies past its end",
                r.file
            );
            let mut reply = warp::reply::with_status(
                warp::reply::json(&json!({ "error": message })),
                StatusCode::RANGE_NOT_SATISFIABLE,
            )
            .into_response_with_cors();
            insert(
                &mut reply,
                header::CONTENT_RANGE,
                http_range::unsatisfied_range(len),
            );
            return reply;
        }
    };
    let mut reply = if r.head || count == 0 {
        warp::reply::Response::new(Bytes::new().into())
    } else {
        match stream(file, start, count).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(worker_id, %job_id, file = r.file, "cannot read the file in transcode.output_dir: {e}");
                return not_found();
            }
        }
    };
    *reply.status_mut() = status;
    let (content_type, cache) = if r.file == PLAYLIST {
        // An event playlist grows while FFmpeg runs: ask every time (its
        // entity tag changes with every version).
        ("application/vnd.apple.mpegurl", "no-cache")
    } else {
        // A finished segment never changes.
        ("video/mp2t", "public, max-age=3600")
    };
    let h = reply.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert(&mut reply, header::ETAG, version.etag());
    if let Some(date) = version.last_modified(now) {
        insert(&mut reply, header::LAST_MODIFIED, date);
    }
    if status != StatusCode::NOT_MODIFIED {
        reply
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let range = http_range::content_range(start, start + count - 1, len);
        insert(&mut reply, header::CONTENT_RANGE, range);
    }
    tracing::debug!(worker_id, %job_id, file = r.file, status = status.as_u16(), start, count, "HLS file served");
    reply
}

/// Sets a header whose value we made (a value that is not one is left out).
fn insert(reply: &mut warp::reply::Response, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        reply.headers_mut().insert(name, v);
    }
}

/// Opens a regular file and describes the version opened, on a blocking
/// thread: what is sent is the version the tag names, even if FFmpeg
/// renames a new one over it meanwhile.
async fn open(path: PathBuf) -> std::io::Result<(std::fs::File, Version)> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        let version = Version {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        };
        Ok((file, version))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// `count` bytes of `file` from `start`, read [`CHUNK`] bytes at a time as
/// the client takes them (tokio reads files on its blocking threads).
async fn stream(
    file: std::fs::File,
    start: u64,
    count: u64,
) -> std::io::Result<warp::reply::Response> {
    let mut file = tokio::fs::File::from_std(file);
    file.set_max_buf_size(CHUNK);
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    let chunks = tokio_util::io::ReaderStream::with_capacity(file.take(count), CHUNK);
    Ok(warp::Reply::into_response(warp::reply::stream(chunks)))
}
