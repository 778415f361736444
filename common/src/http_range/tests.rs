use super::*;

#[test]
fn ranges() {
    let cases = [
        (None, 10, Span::Whole),
        (Some("bytes=0-"), 10, Span::Part { start: 0, end: 9 }),
        (Some("bytes=4-"), 10, Span::Part { start: 4, end: 9 }),
        (Some("bytes=2-5"), 10, Span::Part { start: 2, end: 5 }),
        (Some("bytes=2-50"), 10, Span::Part { start: 2, end: 9 }),
        (Some("bytes=-3"), 10, Span::Part { start: 7, end: 9 }),
        (Some("bytes=-30"), 10, Span::Part { start: 0, end: 9 }),
        (Some(" bytes= 0-0 "), 10, Span::Part { start: 0, end: 0 }),
        (Some("bytes=10-"), 10, Span::Unsatisfiable),
        (Some("bytes=10-12"), 10, Span::Unsatisfiable),
        (Some("bytes=-0"), 10, Span::Unsatisfiable),
        (Some("bytes=0-"), 0, Span::Unsatisfiable),
        (Some("bytes=-5"), 0, Span::Unsatisfiable),
        // Ignored: the whole file.
        (Some("bytes=5-2"), 10, Span::Whole),
        (Some("bytes=0-1,4-5"), 10, Span::Whole),
        (Some("items=0-1"), 10, Span::Whole),
        (Some("bytes=a-"), 10, Span::Whole),
        (Some("bytes=+1-2"), 10, Span::Whole),
        (Some("bytes=-"), 10, Span::Whole),
        (Some("bytes=0-99999999999999999999999"), 10, Span::Whole),
        (Some("bytes=1"), 10, Span::Whole),
        (Some(""), 10, Span::Whole),
    ];
    for (header, len, want) in cases {
        assert_eq!(span(header, len), want, "{header:?} of {len}");
    }
}

#[test]
fn content_ranges() {
    assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
    assert_eq!(unsatisfied_range(1000), "bytes */1000");
}

#[test]
fn entity_tag_lists() {
    type Tags<'a> = Option<Vec<(bool, &'a str)>>;
    let cases: [(&str, Tags); 11] = [
        ("\"a\"", Some(vec![(false, "a")])),
        ("W/\"a\"", Some(vec![(true, "a")])),
        (
            " \"a\" , W/\"b\",\"\"",
            Some(vec![(false, "a"), (true, "b"), (false, "")]),
        ),
        ("\"a\",,\"b\",", Some(vec![(false, "a"), (false, "b")])),
        ("\"a,b\"", Some(vec![(false, "a,b")])),
        // Malformed: never a match.
        ("a", None),
        ("\"a", None),
        ("\"a\"b", None),
        ("\"a\" \"b\"", None),
        ("w/\"a\"", None),
        ("", None),
    ];
    for (list, want) in cases {
        assert_eq!(entity_tags(list), want, "{list:?}");
    }
}

/// 2023-11-14T22:13:20.25Z, and what a request can name it by.
fn at(seconds: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(seconds, nanos)
}
const T: u64 = 1_700_000_000;
const T_DATE: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

fn file() -> Version {
    Version {
        len: 100,
        modified: Some(at(T, 250_000_000)),
        inode: 7,
    }
}

#[test]
fn every_change_of_a_file_changes_its_tag() {
    let v = file();
    assert_eq!(
        v.etag(),
        format!("\"7-64-{:x}\"", T as u128 * 1_000_000_000 + 250_000_000)
    );
    let others = [
        Version { inode: 8, ..v },
        Version { len: 101, ..v },
        Version {
            modified: Some(at(T, 250_000_001)),
            ..v
        },
        Version {
            modified: None,
            ..v
        },
    ];
    for other in others {
        assert_ne!(other.etag(), v.etag(), "{other:?}");
    }
}

#[test]
fn a_modification_date_is_given_only_once_firm() {
    let v = file();
    let cases = [
        (at(T, 300_000_000), None),
        (at(T + 1, 999_999_999), None),
        (at(T + 2, 0), Some(T_DATE)),
        (at(T + 3600, 0), Some(T_DATE)),
        // A clock behind the file's time.
        (at(T - 5, 0), None),
    ];
    for (now, want) in cases {
        assert_eq!(v.last_modified(now).as_deref(), want, "at {now:?}");
    }
    let timeless = Version {
        modified: None,
        ..v
    };
    assert_eq!(timeless.last_modified(at(T + 10, 0)), None);
}

#[test]
fn conditions_in_the_order_of_the_rfc() {
    let v = file();
    let (tag, older) = (v.etag(), Version { len: 99, ..v }.etag());
    let (weak, list) = (format!("W/{tag}"), format!("\"other\", {tag}"));
    let (tag, older, weak, list) = (tag.as_str(), older.as_str(), weak.as_str(), list.as_str());
    let firm = at(T + 10, 0);
    let fresh = at(T + 1, 0);
    let part = Answer::Send(Span::Part { start: 0, end: 9 });
    let whole = Answer::Send(Span::Whole);
    let c = |range, inm, ims, if_range| Conditions {
        range,
        if_none_match: inm,
        if_modified_since: ims,
        if_range,
    };
    let r = Some("bytes=0-9");
    let cases = [
        (c(None, None, None, None), firm, whole),
        (c(None, Some(tag), None, None), firm, Answer::NotModified),
        (c(None, Some(tag), None, None), fresh, Answer::NotModified),
        (c(None, Some(weak), None, None), firm, Answer::NotModified),
        (c(None, Some(list), None, None), firm, Answer::NotModified),
        (c(None, Some("*"), None, None), firm, Answer::NotModified),
        (c(None, Some(older), None, None), firm, whole),
        (c(None, Some("\"other\""), None, None), firm, whole),
        (c(None, Some("garbage"), None, None), firm, whole),
        // With If-None-Match, the date is not asked.
        (c(None, Some(older), Some(T_DATE), None), firm, whole),
        (c(None, None, Some(T_DATE), None), firm, Answer::NotModified),
        (
            c(None, None, Some("Wed, 15 Nov 2023 00:00:00 GMT"), None),
            firm,
            Answer::NotModified,
        ),
        (
            c(None, None, Some("Tue, 14 Nov 2023 22:13:19 GMT"), None),
            firm,
            whole,
        ),
        // Written in the same second as the date asked about: may be newer.
        (c(None, None, Some(T_DATE), None), fresh, whole),
        (c(None, None, Some("yesterday"), None), firm, whole),
        (c(r, None, None, None), firm, part),
        (c(r, Some(older), None, None), firm, part),
        (c(r, Some(tag), None, None), firm, Answer::NotModified),
        (
            c(Some("bytes=100-"), None, None, None),
            firm,
            Answer::Send(Span::Unsatisfiable),
        ),
        // If-Range: the part only of the version the client has.
        (c(r, None, None, Some(tag)), firm, part),
        (c(r, None, None, Some(weak)), firm, whole),
        (c(r, None, None, Some(older)), firm, whole),
        (c(r, None, None, Some("\"bad")), firm, whole),
        (c(r, None, None, Some(T_DATE)), firm, part),
        (c(r, None, None, Some(T_DATE)), fresh, whole),
        (
            c(r, None, None, Some("Wed, 15 Nov 2023 00:00:00 GMT")),
            firm,
            whole,
        ),
        (c(r, None, None, Some("soon")), firm, whole),
        (c(None, None, None, Some(tag)), firm, whole),
    ];
    for (i, (conditions, now, want)) in cases.iter().enumerate() {
        assert_eq!(
            answer(conditions, &v, *now),
            *want,
            "case {i}: {conditions:?}"
        );
    }
}

#[test]
fn a_playlist_rewritten_within_a_second_is_never_not_modified() {
    // FFmpeg renames a new playlist over the old one: same second, maybe
    // the same length, another inode; or, written in place, another time.
    let old = file();
    let renamed = Version { inode: 8, ..old };
    let rewritten = Version {
        modified: Some(at(T, 250_000_001)),
        ..old
    };
    let old_tag = old.etag();
    for new in [renamed, rewritten] {
        let by_tag = Conditions {
            if_none_match: Some(&old_tag),
            ..Conditions::default()
        };
        assert_eq!(
            answer(&by_tag, &new, at(T, 900_000_000)),
            Answer::Send(Span::Whole)
        );
        // No date was given out within that second, and a client's own
        // date of that second is not trusted either.
        assert_eq!(old.last_modified(at(T, 900_000_000)), None);
        let by_date = Conditions {
            if_modified_since: Some(T_DATE),
            ..Conditions::default()
        };
        assert_eq!(
            answer(&by_date, &new, at(T, 900_000_000)),
            Answer::Send(Span::Whole)
        );
    }
}
