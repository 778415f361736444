//! The orchestrator's HTTP API (warp). Every error is JSON with a sentence
//! in `error`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/jobs` | `202` the job; `400`/`409`/`413` with `error` |
//! | `GET /api/jobs`, `GET /api/jobs/{id}` | the jobs / one job; `404` |
//! | `DELETE /api/jobs/{id}` | `200` the cancelled job; `404`; `409` if finished |
//! | `GET /api/workers` | every known worker |
//! | `GET /stream/{id}/index.m3u8` | the job's playlist, written from its segment map; `503` + `Retry-After` before the first segment |
//! | `GET /stream/{id}/seg<N>.ts` | `302` to the worker holding the segment; held while it is encoded again |
//! | `GET /api/media?path=DIR` | a folder of the media library; `403`/`404` |
//! | `GET /source/{id}/{attempt}/{path}?sig=` | a run's source file for its worker (byte ranges); `403`/`404` |
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus text |

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use transcode_common::wire::{self, JobRequest, MAX_PAYLOAD_BYTES};
use uuid::Uuid;
use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Reply;
use warp::Filter;

use crate::core::{Core, JobError, Now, PlaylistAnswer, Publish, SegmentAnswer};
use crate::media::listing::Durations;
use crate::media::Media;
use crate::segments;

mod media;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub core: Arc<Mutex<Core>>,
    /// Sends what the core asks to publish; never waits (it is called with
    /// the core locked).
    pub publish: Arc<dyn Fn(Vec<Publish>) + Send + Sync>,
    /// The media library, when `media.root` is set.
    pub media: Option<Arc<Media>>,
    /// The lengths of its videos, for listings.
    pub durations: Arc<Durations>,
}

impl ApiState {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> warp::reply::Response {
    warp::reply::with_status(
        warp::reply::json(&json!({ "error": message.into() })),
        status,
    )
    .into_response()
}

fn job_error(e: JobError) -> warp::reply::Response {
    let status = match &e {
        JobError::Invalid(_) => StatusCode::BAD_REQUEST,
        JobError::NotFound(_) => StatusCode::NOT_FOUND,
        JobError::Conflict(_) => StatusCode::CONFLICT,
        JobError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// A 404 for a path segment that is not even a job id.
fn not_a_job_id(id: &str) -> warp::reply::Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "job {:?} does not exist: job ids are UUIDs",
            transcode_common::validate::truncate(id, 60)
        ),
    )
}

pub fn routes(state: ApiState) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || state.clone());

    let submit = warp::path!("api" / "jobs")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_PAYLOAD_BYTES as u64))
        .and(warp::body::bytes())
        .and(with_state.clone())
        .map(|body: Bytes, s: ApiState| submit(&body, &s));

    let list = warp::path!("api" / "jobs")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| warp::reply::json(&s.core().jobs()).into_response());

    let one = warp::path!("api" / "jobs" / String)
        .and(warp::get())
        .and(with_state.clone())
        .map(|raw: String, s: ApiState| {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return not_a_job_id(&raw);
            };
            match s.core().job(id) {
                Some(job) => warp::reply::json(&job).into_response(),
                None => job_error(JobError::NotFound(id)),
            }
        });

    let cancel = warp::path!("api" / "jobs" / String)
        .and(warp::delete())
        .and(with_state.clone())
        .map(|raw: String, s: ApiState| {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return not_a_job_id(&raw);
            };
            // Published under the lock, so it cannot cross a dispatch.
            let mut core = s.core();
            match core.cancel(id, Now::current()) {
                Ok((job, out)) => {
                    (s.publish)(out);
                    warp::reply::json(&job).into_response()
                }
                Err(e) => job_error(e),
            }
        });

    let workers = warp::path!("api" / "workers")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| warp::reply::json(&s.core().workers()).into_response());

    let playlist = warp::path!("stream" / String / "index.m3u8")
        .and(warp::get().or(warp::head()).unify())
        .and(with_state.clone())
        .map(|raw: String, s: ApiState| {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return with_cors(not_a_job_id(&raw));
            };
            let answer = s.core().playlist(id, Now::current());
            with_cors(match answer {
                PlaylistAnswer::Playlist(text) => Response::builder()
                    .header(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(Bytes::from(text).into())
                    .unwrap_or_else(|_| {
                        error(StatusCode::INTERNAL_SERVER_ERROR, "playlist failed")
                    }),
                PlaylistAnswer::NotFound => job_error(JobError::NotFound(id)),
                PlaylistAnswer::Gone => error(
                    StatusCode::GONE,
                    format!("job {id} ended without a stream to play"),
                ),
                PlaylistAnswer::NotYet(retry) => retry_later(
                    format!("job {id} has no segment yet; try again in {retry} s"),
                    retry,
                ),
            })
        });

    let segment = warp::path!("stream" / String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(with_state.clone())
        .then(|raw: String, file: String, s: ApiState| async move {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return with_cors(not_a_job_id(&raw));
            };
            let Some(index) = segments::parse_segment_name(&file) else {
                return with_cors(error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "job {id} has no file {:?}: its stream is index.m3u8 and seg<N>.ts",
                        transcode_common::validate::truncate(&file, 60)
                    ),
                ));
            };
            with_cors(segment(&s, id, index).await)
        });

    let library = warp::path!("api" / "media")
        .and(warp::get())
        .and(with_state.clone())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .then(media::listing);

    let source = warp::path!("source" / String / String / ..)
        .and(
            warp::get()
                .map(|| false)
                .or(warp::head().map(|| true))
                .unify(),
        )
        .and(warp::path::tail())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(warp::header::optional::<String>("range"))
        .and(warp::addr::remote())
        .and(with_state.clone())
        .then(
            |job: String,
             attempt: String,
             head: bool,
             tail: warp::path::Tail,
             query: Option<String>,
             range: Option<String>,
             client: Option<std::net::SocketAddr>,
             s: ApiState| {
                let request = media::SourceRequest {
                    job,
                    attempt,
                    path: tail.as_str().to_string(),
                    query,
                    range,
                    head,
                    client,
                };
                media::source(s, request)
            },
        );

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| {
            let mut text = s.core().metrics_text();
            if let Some(m) = &s.media {
                text.push_str(&m.metrics_text());
            }
            Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    transcode_common::metrics::CONTENT_TYPE,
                )
                .body(Bytes::from(text).into())
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed"))
        });

    let health = warp::path!("healthz")
        .and(warp::get())
        .and(with_state)
        .map(|s: ApiState| {
            let online = s.core().online_count();
            warp::reply::json(&json!({"status": "ok", "workers_online": online})).into_response()
        });

    submit
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(cancel)
        .unify()
        .or(workers)
        .unify()
        .or(playlist)
        .unify()
        .or(segment)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(library)
        .unify()
        .or(source)
        .unify()
        .recover(handle_rejection)
}

/// How long a request for a segment nobody holds right now waits for it to
/// be encoded again before the player is told to retry: under hls.js's 10 s
/// time to first byte.
const SEGMENT_WAIT: Duration = Duration::from_secs(8);
const SEGMENT_POLL: Duration = Duration::from_millis(100);

/// A segment: `302` to the worker that holds it; when its holder is gone,
/// held until it exists again (a player sees a slow answer, never an
/// error), then `503` with `Retry-After`.
async fn segment(s: &ApiState, id: Uuid, index: u64) -> warp::reply::Response {
    let deadline = tokio::time::Instant::now() + SEGMENT_WAIT;
    loop {
        let answer = s.core().segment_location(id, index, Now::current());
        match answer {
            SegmentAnswer::Redirect(url) => {
                return Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, url)
                    .header(header::CACHE_CONTROL, "no-store")
                    .body(Bytes::new().into())
                    .unwrap_or_else(|_| {
                        error(StatusCode::INTERNAL_SERVER_ERROR, "redirect failed")
                    })
            }
            SegmentAnswer::NotFound => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("job {id} has no segment {index}"),
                )
            }
            SegmentAnswer::Gone => {
                return error(
                    StatusCode::GONE,
                    format!(
                    "job {id} is over and segment {index} was deleted (transcode.keep_outputs_s)"
                ),
                )
            }
            SegmentAnswer::Wait if tokio::time::Instant::now() >= deadline => {
                return retry_later(
                    format!("segment {index} of job {id} is being encoded again; try again in 1 s"),
                    1,
                )
            }
            SegmentAnswer::Wait => tokio::time::sleep(SEGMENT_POLL).await,
        }
    }
}

/// `503` with `Retry-After`.
fn retry_later(message: String, retry_s: u64) -> warp::reply::Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    if let Ok(v) = header::HeaderValue::from_str(&retry_s.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Players fetch the stream from other origins (a web page, a TV app).
fn with_cors(mut r: warp::reply::Response) -> warp::reply::Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    r
}

fn submit(body: &[u8], s: &ApiState) -> warp::reply::Response {
    let req: JobRequest = match wire::decode(body) {
        Ok(r) => r,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("invalid job request: {e}"));
        }
    };
    // Published under the lock, so it cannot cross a dispatch.
    let mut core = s.core();
    match core.submit(req, Now::current()) {
        Ok((job, out)) => {
            (s.publish)(out);
            warp::reply::with_status(warp::reply::json(&job), StatusCode::ACCEPTED).into_response()
        }
        Err(JobError::Invalid(e)) => {
            error(StatusCode::BAD_REQUEST, format!("invalid job request: {e}"))
        }
        Err(e) => job_error(e),
    }
}

async fn handle_rejection(err: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(if err.is_not_found() {
        error(
            StatusCode::NOT_FOUND,
            "no such resource; see /api/jobs, /api/workers, /stream/{job_id}/index.m3u8",
        )
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("invalid job request: the body is larger than {MAX_PAYLOAD_BYTES} bytes"),
        )
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        error(
            StatusCode::LENGTH_REQUIRED,
            "invalid job request: a Content-Length is required",
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this resource",
        )
    } else {
        error(StatusCode::BAD_REQUEST, format!("bad request: {err:?}"))
    })
}
