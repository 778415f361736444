//! `/stream/{id}/...`: a job's playlist, written by the core from its
//! segment map, and its segments, each a redirect to the worker that holds
//! it. Open to every player (no token), with CORS.

use std::time::Duration;

use uuid::Uuid;
use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::Filter;

use super::{error, job_error, not_a_job_id, retry_later, ApiState};
use crate::core::{JobError, Now, PlaylistAnswer, SegmentAnswer};
use crate::segments;

/// The playlist and segment routes.
pub(super) fn routes(
    with_state: impl Filter<Extract = (ApiState,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
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

    playlist.or(segment).unify()
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

/// Players fetch the stream from other origins (a web page, a TV app).
fn with_cors(mut r: warp::reply::Response) -> warp::reply::Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    r
}
