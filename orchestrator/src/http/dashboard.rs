//! The dashboard: `GET /` and `GET /jobs/{id}` answer its page, `GET
//! /assets/{name}` its script, style, icon and the vendored hls.js. The
//! files are compiled into the binary (`orchestrator/web/`), so a LAN
//! without internet gets the whole page from the orchestrator; the page
//! itself holds no secret and asks for the API token.
//!
//! Every answer carries an `ETag` (a `304` for a browser that has the
//! file) and asks to be revalidated, so a new binary's page is seen at the
//! next load. The page's Content-Security-Policy lets it run only its own
//! scripts and talk to its own origin, plus the workers' HLS servers
//! (their addresses are the workers' own, so any `http:`/`https:` host).

use std::sync::OnceLock;

use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Reply;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/index.html"),
};

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/icon.svg"),
    },
    Asset {
        name: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/hls.min.js"),
    },
    Asset {
        name: "hls.js-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../web/vendor/hls.js-LICENSE.txt"),
    },
];

/// What the page may load and talk to. `style-src` has no
/// `'unsafe-inline'`: the script sets widths through the CSSOM.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob: http: https:; \
     connect-src 'self' http: https:; worker-src 'self' blob:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page, for `/` and `/jobs/{id}` (the script reads the path).
pub fn page(if_none_match: Option<&str>) -> warp::reply::Response {
    let mut r = answer(&PAGE, if_none_match);
    let headers = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    }
    r
}

/// `/assets/{name}`; `404` for a name that is not one of ours.
pub fn asset(name: &str, if_none_match: Option<&str>) -> warp::reply::Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => answer(a, if_none_match),
        None => super::error(
            StatusCode::NOT_FOUND,
            format!("the dashboard has no file {name:?}"),
        ),
    }
}

/// A strong validator for an embedded file: FNV-1a of its bytes, worked
/// out once per file.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&PAGE)
            .chain(ASSETS.iter())
            .map(|a| format!("\"{:016x}\"", fnv1a(a.body)))
            .collect()
    });
    let index = if asset.name == PAGE.name {
        0
    } else {
        1 + ASSETS
            .iter()
            .position(|a| a.name == asset.name)
            .unwrap_or_default()
    };
    tags.get(index).map(String::as_str).unwrap_or("\"0\"")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether an `If-None-Match` value names `tag` (or is `*`).
fn matches(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

fn answer(asset: &Asset, if_none_match: Option<&str>) -> warp::reply::Response {
    let tag = etag(asset);
    let fresh = if_none_match.is_some_and(|v| matches(v, tag));
    let builder = Response::builder()
        .header(header::ETAG, tag)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    let built = if fresh {
        builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Bytes::new().into())
    } else {
        builder
            .header(header::CONTENT_TYPE, asset.content_type)
            .body(Bytes::from_static(asset.body).into())
    };
    built.unwrap_or_else(|_| {
        super::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the dashboard could not be sent",
        )
    })
}

/// The routes: `GET`/`HEAD` of `/`, `/jobs/{id}` and `/assets/{name}`.
pub fn routes(
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    let method = warp::get().or(warp::head()).unify();
    let cached = warp::header::optional::<String>("if-none-match");
    let root = warp::path::end()
        .and(method)
        .and(cached)
        .map(|tag: Option<String>| page(tag.as_deref()));
    let job = warp::path!("jobs" / String)
        .and(method)
        .and(cached)
        .map(|_id: String, tag: Option<String>| page(tag.as_deref()));
    let file = warp::path!("assets" / String)
        .and(method)
        .and(cached)
        .map(|name: String, tag: Option<String>| asset(&name, tag.as_deref()));
    root.or(job)
        .unify()
        .or(file)
        .unify()
        .map(|r: warp::reply::Response| r.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_read_as_a_list_of_tags() {
        let tag = "\"00ff\"";
        for (header, fresh) in [
            ("\"00ff\"", true),
            ("W/\"00ff\"", true),
            ("\"aa\", \"00ff\"", true),
            ("*", true),
            ("\"00fe\"", false),
            ("", false),
            ("00ff", false),
        ] {
            assert_eq!(matches(header, tag), fresh, "{header:?}");
        }
    }

    #[test]
    fn every_file_has_its_own_tag_and_type() {
        let mut seen = std::collections::HashSet::new();
        for a in std::iter::once(&PAGE).chain(ASSETS.iter()) {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            assert!(seen.insert(etag(a)), "{} shares a tag", a.name);
            let r = answer(a, None);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(
                r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
                Some(a.content_type.as_bytes())
            );
            assert_eq!(answer(a, Some(etag(a))).status(), StatusCode::NOT_MODIFIED);
        }
    }

    #[test]
    fn unknown_assets_are_not_found() {
        for name in ["", "..", "../Cargo.toml", "app.js.map", "index.html"] {
            assert_eq!(asset(name, None).status(), StatusCode::NOT_FOUND, "{name}");
        }
    }

    #[test]
    fn the_page_names_only_embedded_assets() {
        let page = std::str::from_utf8(PAGE.body).unwrap_or_default();
        for part in page.split("/assets/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
                .collect();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html asks for /assets/{name}, which is not embedded"
            );
        }
    }
}
