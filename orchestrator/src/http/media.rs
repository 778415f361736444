//! The media library over HTTP: `GET /api/media?path=DIR` lists a folder,
//! `GET /source/{job_id}/{attempt}/{path}?sig=...` sends a worker its run's
//! source (byte ranges, streamed). Every check runs before a file is
//! opened; a refused request reads nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use transcode_common::http_range::{self, Span};
use transcode_common::media::SourceError;
use uuid::Uuid;
use warp::http::{header, HeaderValue, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Reply;

use super::{error, ApiState};
use crate::media::{self, Media, Refusal};

/// How much of a file one read sends.
const CHUNK: usize = 16 * 1024;

/// `GET /api/media?path=DIR`.
pub async fn listing(s: ApiState, query: Option<String>) -> warp::reply::Response {
    let Some(m) = s.media.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this orchestrator has no media library: set media.root to the folder of your films",
        );
    };
    let dir = query
        .as_deref()
        .and_then(|q| query_value(q, "path"))
        .unwrap_or_default();
    match media::listing::list(m.root(), &dir, &s.durations).await {
        Ok(listing) => warp::reply::json(&listing).into_response(),
        Err(e) => {
            let status = match e {
                SourceError::NotFound { .. } | SourceError::NotAFolder { .. } => {
                    StatusCode::NOT_FOUND
                }
                SourceError::BadRoot { .. } | SourceError::Unreadable { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::FORBIDDEN,
            };
            error(status, format!("cannot list the media folder: {e}"))
        }
    }
}

/// What a source request names.
pub struct SourceRequest {
    pub job: String,
    pub attempt: String,
    /// The file's path as sent, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub range: Option<String>,
    pub head: bool,
    pub client: Option<SocketAddr>,
}

/// `GET` or `HEAD /source/{job_id}/{attempt}/{path}?sig=...`.
pub async fn source(s: ApiState, r: SourceRequest) -> warp::reply::Response {
    let Some(m) = s.media.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this orchestrator serves no media (media.root is not set)",
        );
    };
    match open(&s, &m, &r).await {
        Ok(reply) => {
            m.counters.served.fetch_add(1, Ordering::Relaxed);
            reply
        }
        Err(refusal) => {
            m.counters.refused.fetch_add(1, Ordering::Relaxed);
            let client = r.client.map(|c| c.to_string()).unwrap_or_default();
            tracing::warn!(job_id = %validate_shown(&r.job), attempt = %validate_shown(&r.attempt), client, "source request refused: {refusal}");
            match refusal {
                Refusal::Forbidden(e) => error(StatusCode::FORBIDDEN, e),
                Refusal::NotFound(e) => error(StatusCode::NOT_FOUND, e),
                Refusal::Unusable(e) => error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e),
            }
        }
    }
}

fn validate_shown(s: &str) -> String {
    transcode_common::validate::truncate(s, 40)
}

/// Checks the request, then answers with the file or the part asked for.
async fn open(
    s: &ApiState,
    m: &Arc<Media>,
    r: &SourceRequest,
) -> Result<warp::reply::Response, Refusal> {
    let not_found = || Refusal::NotFound("no such source; source URLs come in assignments".into());
    let job_id = Uuid::try_parse(&r.job).map_err(|_| not_found())?;
    let attempt: u32 = r.attempt.parse().map_err(|_| not_found())?;
    let sig = r.query.as_deref().and_then(|q| query_value(q, "sig"));
    let path = m.check(job_id, attempt, &r.path, sig.as_deref())?;
    // The run must still be going, and this must be its job's source.
    let source = s.core().source_of_run(job_id, attempt).ok_or_else(|| {
        Refusal::Forbidden(format!(
            "run {attempt} of job {job_id} is over: its source URL has expired"
        ))
    })?;
    if transcode_common::validate::source_path(&source)
        .ok()
        .as_deref()
        != Some(path.as_str())
    {
        return Err(Refusal::Forbidden(format!(
            "{path:?} is not the source of job {job_id}"
        )));
    }
    let lib = m.clone();
    let rel = path.clone();
    let (file, len) = tokio::task::spawn_blocking(move || {
        let (file, len) = lib.file(&rel).map_err(|e| match e {
            SourceError::NotFound { .. } => Refusal::NotFound(format!(
                "job {job_id}'s source is gone from the media library: {e}"
            )),
            e => Refusal::Forbidden(format!("job {job_id}'s source cannot be served: {e}")),
        })?;
        transcode_common::media::sniff(&transcode_common::media::read_head(&file))
            .map_err(|e| Refusal::Unusable(format!("job {job_id}'s source {rel:?}: {e}")))?;
        Ok::<_, Refusal>((file, len))
    })
    .await
    .map_err(|e| Refusal::NotFound(format!("the source of job {job_id} cannot be read: {e}")))??;

    let span = http_range::span(r.range.as_deref(), len);
    let (status, start, count) = match span {
        Span::Whole => (StatusCode::OK, 0, len),
        Span::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Span::Unsatisfiable => {
            let mut reply = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "job {job_id}'s source has {len} bytes; the range asked for is past its end"
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&http_range::unsatisfied_range(len)) {
                reply.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(reply);
        }
    };
    let mut reply = if r.head || count == 0 {
        Response::new(Bytes::new()).into_response()
    } else {
        let mut f = tokio::fs::File::open(&file).await.map_err(|e| {
            Refusal::NotFound(format!("job {job_id}'s source cannot be opened: {e}"))
        })?;
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Refusal::NotFound(format!("job {job_id}'s source cannot be read: {e}")))?;
        let counters = m.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(count), CHUNK).inspect(
            move |chunk| {
                if let Ok(bytes) = chunk {
                    counters
                        .counters
                        .bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            },
        );
        warp::reply::stream(stream).into_response()
    };
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = http_range::content_range(start, start + count - 1, len);
        if let Ok(v) = HeaderValue::from_str(&range) {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    tracing::debug!(%job_id, attempt, start, count, "sending source");
    Ok(reply)
}

/// The (percent-decoded) value of `key` in a query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values() {
        let cases = [
            ("path=films%2Fold&x=1", "path", Some("films/old")),
            ("x=1&path=a+b", "path", Some("a b")),
            ("path", "path", Some("")),
            ("paths=a", "path", None),
            ("", "sig", None),
        ];
        for (q, key, want) in cases {
            assert_eq!(query_value(q, key).as_deref(), want, "{q}");
        }
    }
}
