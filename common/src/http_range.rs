//! What a request for a file's bytes gets: the part its `Range` asks for
//! (RFC 9110 14) and whether its conditions (RFC 9110 13: `If-None-Match`,
//! `If-Modified-Since`, `If-Range`) make it a `304`. Pure: the caller reads
//! the headers and the file's [`Version`], and builds the answer. Used by the
//! orchestrator's `/source` and the worker's `/hls`.
//!
//! A file that changes (a live playlist) must never be answered `304` for a
//! version the client does not have: the entity tag names the file's inode,
//! length and modification time in nanoseconds (FFmpeg replaces its playlist
//! by renaming a new file over it, so every version has its own inode), and
//! a modification date, which only counts whole seconds, is given out and
//! trusted only once no later write can carry the same second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Span {
    /// The whole file (no range, or one that is ignored).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110 14.2): one `bytes` range, `a-b`, `a-`
/// or `-n`. Anything else is ignored (the whole file), as the RFC allows.
pub fn span(header: Option<&str>, len: u64) -> Span {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Span::Whole;
    };
    if spec.contains(',') {
        return Span::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Span::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        (Some(start), _, true) if start < len => Span::Part {
            start,
            end: len - 1,
        },
        (Some(start), Some(end), false) if start <= end && start < len => Span::Part {
            start,
            end: end.min(len - 1),
        },
        (Some(start), Some(end), false) if start <= end => Span::Unsatisfiable,
        (Some(_), _, true) => Span::Unsatisfiable,
        (None, Some(n), false) if first.trim().is_empty() => {
            if n == 0 || len == 0 {
                Span::Unsatisfiable
            } else {
                Span::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        _ => Span::Whole,
    }
}

/// `Content-Range` of a `206`: bytes `start..=end` of `len`.
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// `Content-Range` of a `416`: the file's length.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// One version of a file, as the file system describes the open file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Version {
    pub len: u64,
    /// None where the file system keeps no modification time.
    pub modified: Option<SystemTime>,
    /// The inode: a file renamed over the old one is another version even
    /// with the same length and time.
    pub inode: u64,
}

impl Version {
    /// The entity tag (strong: two versions FFmpeg writes differ in it).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.opaque_tag())
    }

    fn opaque_tag(&self) -> String {
        let nanos = self
            .modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}-{nanos:x}", self.inode, self.len)
    }

    /// The modification time in whole seconds, once it is firm: at least a
    /// second has passed since that second ended (with a second to spare
    /// for the kernel's coarse clock), so any later write carries a later
    /// second. Before that, a date cannot tell two versions apart.
    fn firm_seconds(&self, now: SystemTime) -> Option<u64> {
        let modified = self.modified?.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        (now >= modified.checked_add(2)?).then_some(modified)
    }

    /// `Last-Modified`, when the modification time is firm (see above).
    pub fn last_modified(&self, now: SystemTime) -> Option<String> {
        self.firm_seconds(now)
            .map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s)))
    }
}

/// The request's headers that decide the answer (absent or not text: None).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub range: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// What a `GET` or `HEAD` of an existing file gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// `304`: the client's copy is this version.
    NotModified,
    /// `200` (whole), `206` (part) or `416`.
    Send(Span),
}

/// Evaluates the conditions in the order of RFC 9110 13.2.2 for a file
/// that exists, at `now`. A malformed condition never yields a `304`.
pub fn answer(c: &Conditions, v: &Version, now: SystemTime) -> Answer {
    let tag = v.opaque_tag();
    if let Some(list) = c.if_none_match {
        // Weak comparison; with If-None-Match, If-Modified-Since is ignored.
        let matched = list.trim() == "*"
            || entity_tags(list).is_some_and(|tags| tags.iter().any(|(_, t)| *t == tag));
        if matched {
            return Answer::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (
        c.if_modified_since.and_then(seconds_of_date),
        v.firm_seconds(now),
    ) {
        if modified <= since {
            return Answer::NotModified;
        }
    }
    let range_holds = match c.if_range.map(str::trim) {
        None => true,
        // A strong comparison: a weak tag never matches.
        Some(value) if value.starts_with('"') || value.starts_with("W/") => {
            entity_tags(value).is_some_and(|tags| tags == [(false, tag.as_str())])
        }
        Some(date) => matches!(
            (seconds_of_date(date), v.firm_seconds(now)),
            (Some(asked), Some(ours)) if asked == ours
        ),
    };
    if range_holds {
        Answer::Send(span(c.range, v.len))
    } else {
        Answer::Send(Span::Whole)
    }
}

/// An HTTP date in seconds since the epoch (IMF-fixdate, RFC 850 or
/// asctime); None when it is not one.
fn seconds_of_date(text: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// The entity tags of a list (`"a", W/"b"`): (weak, opaque tag) each, or
/// None when the list is malformed.
fn entity_tags(list: &str) -> Option<Vec<(bool, &str)>> {
    let is_etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let inner = quoted.strip_prefix('"')?;
        let close = inner.find('"')?;
        let tag = &inner[..close];
        if !tag.bytes().all(is_etagc) {
            return None;
        }
        tags.push((weak, tag));
        rest = inner[close + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    (!tags.is_empty()).then_some(tags)
}

#[cfg(test)]
mod tests;
