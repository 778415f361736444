//! The orchestrator's HTTP API (warp). Every error is JSON with a sentence
//! in `error`.
//!
//! Everything under `/api/` wants `Authorization: Bearer TOKEN` (`401`);
//! `/stream`, `/healthz` and the signed `/source` URLs do not.
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/jobs` (JSON only) | `202` the job; `400`/`409`/`413`/`415`/`429` with `error` |
//! | `GET /api/jobs`, `GET /api/jobs/{id}` | the jobs / one job; `404` |
//! | `DELETE /api/jobs/{id}` | `200` the cancelled job; `404`; `409` if finished |
//! | `POST /api/jobs/{id}/again` | `202` a new job with the same request; `409` while it runs |
//! | `GET /api/events` | Server-Sent Events: a snapshot, then what changed (see `events`) |
//! | `GET /api/workers` | every known worker |
//! | `POST`/`DELETE /api/workers/{id}/login` | a broker login for the worker (its join line) / taken away; `404` without logins |
//! | `GET /stream/{id}/index.m3u8` | the job's playlist, written from its segment map; `503` + `Retry-After` before the first segment |
//! | `GET /stream/{id}/seg<N>.ts` | `302` to the worker holding the segment; held while it is encoded again |
//! | `GET /api/media?path=DIR` | a folder of the media library; `403`/`404` |
//! | `GET /source/{id}/{attempt}/{path}?sig=` | a run's source file for its worker (byte ranges); `403`/`404` |
//! | `GET /`, `GET /jobs/{id}`, `GET /assets/{name}` | the dashboard (see `dashboard`), open: it asks for the token |
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus text |

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use transcode_common::metrics;
use transcode_common::wire::{self, JobRequest, MAX_PAYLOAD_BYTES};
use uuid::Uuid;
use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Reply;
use warp::Filter;

use crate::access::Access;
use crate::core::{Core, JobError, Now};
use crate::media::listing::Durations;
use crate::media::Media;
use crate::runner::Runner;

mod dashboard;
pub mod events;
mod media;
mod stream;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub core: Arc<Mutex<Core>>,
    /// Runs the events that change jobs (submit, cancel) on the core's
    /// thread; what they publish leaves from there.
    pub runner: Runner,
    /// The media library, when `media.root` is set.
    pub media: Option<Arc<Media>>,
    /// The lengths of its videos, for listings.
    pub durations: Arc<Durations>,
    /// The API token and the submission limits.
    pub access: Arc<Access>,
    /// The dashboard's open event streams.
    pub streams: Arc<events::Streams>,
    /// The embedded broker's gate, when it takes only its logins.
    pub gate: Option<Arc<transcode_broker::guard::Gate>>,
    /// (`http.submit_rate`, `http.submit_burst`), named in a `429`.
    pub limits: (f64, u32),
    /// Where the embedded broker's logins live and where workers reach it,
    /// when it takes logins.
    pub logins: Option<(std::path::PathBuf, transcode_common::mqtt_url::BrokerAddr)>,
}

impl ApiState {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> warp::reply::Response {
    warp::reply::with_status(
        warp::reply::json(&wire::ErrorAnswer {
            error: message.into(),
        }),
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
        JobError::Full(_) => StatusCode::TOO_MANY_REQUESTS,
        JobError::Unavailable(_) => {
            return retry_later_with(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), 5)
        }
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
    let auth = authorized(state.clone());
    let with_state = warp::any().map(move || state.clone());

    let submit = warp::path!("api" / "jobs")
        .and(warp::post())
        .and(auth.clone())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::addr::remote())
        .and(warp::body::content_length_limit(MAX_PAYLOAD_BYTES as u64))
        .and(warp::body::bytes())
        .and(with_state.clone())
        .then(
            |kind: Option<String>,
             client: Option<std::net::SocketAddr>,
             body: Bytes,
             s: ApiState| async move { submit(kind.as_deref(), client, &body, &s).await },
        );

    let list = warp::path!("api" / "jobs")
        .and(warp::get())
        .and(auth.clone())
        .and(with_state.clone())
        .map(|s: ApiState| warp::reply::json(&s.core().jobs()).into_response());

    let one = warp::path!("api" / "jobs" / String)
        .and(warp::get())
        .and(auth.clone())
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

    let again = warp::path!("api" / "jobs" / String / "again")
        .and(warp::post())
        .and(auth.clone())
        .and(with_state.clone())
        .then(|raw: String, s: ApiState| async move {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return not_a_job_id(&raw);
            };
            let again = s
                .runner
                .ask(move |core| match core.run_again(id, Now::current()) {
                    Ok((job, out)) => (Ok(job), out),
                    Err(e) => (Err(e), Vec::new()),
                })
                .await;
            match again {
                Some(Ok(job)) => {
                    warp::reply::with_status(warp::reply::json(&job), StatusCode::ACCEPTED)
                        .into_response()
                }
                Some(Err(e)) => job_error(e),
                None => stopping(),
            }
        });

    let events = warp::path!("api" / "events")
        .and(warp::get())
        .and(auth.clone())
        .and(with_state.clone())
        .map(|s: ApiState| {
            let Some(slot) = s.streams.take() else {
                return retry_later_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} event streams are open already; close a dashboard and try again",
                        events::MAX_CONNECTIONS
                    ),
                    5,
                );
            };
            let stream = events::stream(s.core.clone(), s.runner.changes(), slot);
            warp::sse::reply(
                warp::sse::keep_alive()
                    .interval(Duration::from_secs(10))
                    .stream(stream),
            )
            .into_response()
        });

    let cancel = warp::path!("api" / "jobs" / String)
        .and(warp::delete())
        .and(auth.clone())
        .and(with_state.clone())
        .then(|raw: String, s: ApiState| async move {
            let Ok(id) = Uuid::try_parse(&raw) else {
                return not_a_job_id(&raw);
            };
            let cancelled = s
                .runner
                .ask(move |core| match core.cancel(id, Now::current()) {
                    Ok((job, out)) => (Ok(job), out),
                    Err(e) => (Err(e), Vec::new()),
                })
                .await;
            match cancelled {
                Some(Ok(job)) => warp::reply::json(&job).into_response(),
                Some(Err(e)) => job_error(e),
                None => stopping(),
            }
        });

    let workers = warp::path!("api" / "workers")
        .and(warp::get())
        .and(auth.clone())
        .and(with_state.clone())
        .map(|s: ApiState| warp::reply::json(&s.core().workers()).into_response());

    let login = warp::path!("api" / "workers" / String / "login")
        .and(
            warp::post()
                .map(|| true)
                .or(warp::delete().map(|| false))
                .unify(),
        )
        .and(auth.clone())
        .and(with_state.clone())
        .then(|id: String, add: bool, s: ApiState| worker_login(id, add, s));

    let library = warp::path!("api" / "media")
        .and(warp::get())
        .and(auth.clone())
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
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state.clone())
        .map(|authorization: Option<String>, s: ApiState| {
            if s.access.metrics_need_token && !s.access.allows(authorization.as_deref()) {
                return unauthorized(&s.access.refusal());
            }
            let mut r = metrics::Registry::default();
            s.core().register_metrics(&mut r);
            if let Some(media) = &s.media {
                media.register_metrics(&mut r);
            }
            if let Some(g) = &s.gate {
                metrics::counter(
                    &mut r,
                    "transcode_broker_refused_total",
                    "Publishes, last wills and subscriptions the embedded broker refused a login.",
                    g.refused(),
                );
            }
            let text = metrics::text(&r);
            Response::builder()
                .header(header::CONTENT_TYPE, metrics::CONTENT_TYPE)
                .body(Bytes::from(text).into())
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed"))
        });

    let stream = stream::routes(with_state.clone());

    let health = warp::path!("healthz")
        .and(warp::get())
        .and(with_state)
        .map(|s: ApiState| {
            let core = s.core();
            let online = core.online_count();
            match core.store_fault() {
                None => warp::reply::json(&json!({"status": "ok", "workers_online": online}))
                    .into_response(),
                Some(why) => warp::reply::with_status(
                    warp::reply::json(&json!({
                        "status": "unavailable",
                        "workers_online": online,
                        "store": format!("the job store cannot be written: {why}; no job is taken or dispatched until it can"),
                    })),
                    StatusCode::SERVICE_UNAVAILABLE,
                )
                .into_response(),
            }
        });

    submit
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(cancel)
        .unify()
        .or(again)
        .unify()
        .or(events)
        .unify()
        .or(workers)
        .unify()
        .or(login)
        .unify()
        .or(stream)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(library)
        .unify()
        .or(source)
        .unify()
        .or(dashboard::routes())
        .unify()
        // A boxed filter: the nested type of a dozen routes is too deep for
        // the compiler to prove `Unpin` in a release build.
        .boxed()
        .recover(handle_rejection)
}

/// `503` with `Retry-After`.
pub(super) fn retry_later(message: String, retry_s: u64) -> warp::reply::Response {
    retry_later_with(StatusCode::SERVICE_UNAVAILABLE, message, retry_s)
}

/// `status` with `Retry-After`.
fn retry_later_with(status: StatusCode, message: String, retry_s: u64) -> warp::reply::Response {
    let mut r = error(status, message);
    if let Ok(v) = header::HeaderValue::from_str(&retry_s.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `POST /api/workers/{id}/login`: a new login for the worker and the line
/// it joins with; `DELETE`: the login taken away.
async fn worker_login(id: String, add: bool, s: ApiState) -> warp::reply::Response {
    let Some((dir, broker)) = s.logins.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this orchestrator's broker takes no logins (broker.allow_anonymous, or an external broker)",
        );
    };
    let worker = id.clone();
    let done = tokio::task::spawn_blocking(move || {
        if add {
            crate::logins::Logins::add_worker(&dir, &worker).map(|(password, replaced)| {
                json!({
                    "worker_id": worker,
                    "join": crate::logins::join_line(&worker, &password, &broker),
                    "replaced": replaced,
                })
            })
        } else {
            crate::logins::Logins::revoke_worker(&dir, &worker)
                .map(|had| json!({"worker_id": worker, "revoked": had}))
        }
    })
    .await;
    match done {
        Ok(Ok(body)) if body["revoked"] == json!(false) => error(
            StatusCode::NOT_FOUND,
            format!("worker {id} has no login to revoke"),
        ),
        Ok(Ok(body)) => {
            tracing::info!(worker_id = %transcode_common::validate::truncate(&id, 60), add, "worker login changed through the API");
            warp::reply::json(&body).into_response()
        }
        Ok(Err(e)) if add && transcode_common::validate::worker_id(&id).is_err() => {
            error(StatusCode::BAD_REQUEST, format!("{e:#}"))
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The API token is missing or wrong.
#[derive(Debug)]
struct Unauthorized(String);

impl warp::reject::Reject for Unauthorized {}

/// Passes requests that carry the API token.
fn authorized(state: ApiState) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |h: Option<String>| {
            let access = state.access.clone();
            async move {
                if access.allows(h.as_deref()) {
                    Ok(())
                } else {
                    Err(warp::reject::custom(Unauthorized(access.refusal())))
                }
            }
        })
        .untuple_one()
}

/// `401` with the sentence and `WWW-Authenticate`.
fn unauthorized(sentence: &str) -> warp::reply::Response {
    let mut r = error(StatusCode::UNAUTHORIZED, sentence);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"transcode-orchestrator\""),
    );
    r
}

/// Whether a `Content-Type` says JSON (parameters such as `charset` aside).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The answer while the process shuts down (the core's thread is gone).
fn stopping() -> warp::reply::Response {
    retry_later_with(
        StatusCode::SERVICE_UNAVAILABLE,
        "the orchestrator is shutting down; try again when it is back".into(),
        5,
    )
}

async fn submit(
    content_type: Option<&str>,
    client: Option<std::net::SocketAddr>,
    body: &[u8],
    s: &ApiState,
) -> warp::reply::Response {
    // A web page may POST text/plain across sites without asking first:
    // only JSON is read.
    if !is_json(content_type) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a job request must be sent as Content-Type: application/json, not {:?}",
                transcode_common::validate::truncate(content_type.unwrap_or("nothing"), 60)
            ),
        );
    }
    if let Err(wait) = s
        .access
        .admit(client.map(|c| c.ip()), std::time::Instant::now())
    {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let who = client.map(|c| c.ip().to_string()).unwrap_or_default();
        tracing::warn!(client = %who, "submissions refused: too many from this client");
        return retry_later_with(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many job requests from {who}: at most {} at once and {} a second (http.submit_burst, http.submit_rate); try again in {seconds} s",
                s.limits.1,
                s.limits.0
            ),
            seconds,
        );
    }
    let req: JobRequest = match wire::decode(body) {
        Ok(r) => r,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("invalid job request: {e}"));
        }
    };
    let submitted = s
        .runner
        .ask(move |core| match core.submit(req, Now::current()) {
            Ok((job, out)) => (Ok(job), out),
            Err(e) => (Err(e), Vec::new()),
        })
        .await;
    match submitted {
        Some(Ok(job)) => {
            warp::reply::with_status(warp::reply::json(&job), StatusCode::ACCEPTED).into_response()
        }
        Some(Err(JobError::Invalid(e))) => {
            error(StatusCode::BAD_REQUEST, format!("invalid job request: {e}"))
        }
        Some(Err(e)) => job_error(e),
        None => stopping(),
    }
}

async fn handle_rejection(err: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(
        if let Some(Unauthorized(sentence)) = err.find::<Unauthorized>() {
            unauthorized(sentence)
        } else if err.is_not_found() {
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
        },
    )
}
