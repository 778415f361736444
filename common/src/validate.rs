//! Validation of everything a job or a worker tells us about itself.
//!
//! Each function is pure and returns a sentence that names the offending value,
//! so callers can prefix it with the field and the worker or job it came from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest worker id we accept; it becomes part of topics and client ids.
pub const MAX_WORKER_ID_LEN: usize = 64;
/// Longest source path we accept, in bytes.
pub const MAX_SOURCE_PATH_LEN: usize = 4096;
/// Latest start time we accept: a week of video is far past any real file.
pub const MAX_START_TIME_S: f64 = 7.0 * 24.0 * 3600.0;
/// Lowest video bitrate that still yields a picture.
pub const MIN_BITRATE: u64 = 64_000;
/// Highest video bitrate: beyond this nobody is transcoding for a LAN player.
pub const MAX_BITRATE: u64 = 200_000_000;

/// A worker id is used in topic names and MQTT client ids, so it must not
/// contain MQTT wildcards or separators: letters, digits, `-`, `_` and `.`
/// only, starting with a letter or digit.
pub fn worker_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a worker id must not be empty".into());
    }
    if id.len() > MAX_WORKER_ID_LEN {
        return Err(format!(
            "worker id {:?} is {} characters long; at most {MAX_WORKER_ID_LEN} are allowed",
            truncate(id, 80),
            id.len()
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "worker id {id:?} must start with a letter or a digit"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "worker id {id:?} contains {bad:?}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    Ok(())
}

/// Turns a host name into a valid worker id (the default id of a worker).
pub fn worker_id_from_hostname(hostname: &str) -> String {
    let mut id: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while id.starts_with(|c: char| !c.is_ascii_alphanumeric()) {
        id.remove(0);
    }
    id.truncate(MAX_WORKER_ID_LEN);
    if id.is_empty() {
        "worker".into()
    } else {
        id
    }
}

/// The size a job's video must fit in: a bounding box, never exceeded and never
/// upscaled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// One of the named heights (`480p` ... `2160p`); the box is 16:9.
    Named(u32),
    /// An explicit `WxH` box.
    Box { width: u32, height: u32 },
}

/// The named resolutions and the 16:9 box each stands for.
pub const NAMED_RESOLUTIONS: [(u32, u32); 5] = [
    (480, 854),
    (720, 1280),
    (1080, 1920),
    (1440, 2560),
    (2160, 3840),
];

impl Resolution {
    /// Width and height of the bounding box.
    pub fn bounding_box(&self) -> (u32, u32) {
        match *self {
            Resolution::Named(h) => {
                let w = NAMED_RESOLUTIONS
                    .iter()
                    .find(|(nh, _)| *nh == h)
                    .map(|(_, w)| *w)
                    .unwrap_or(h * 16 / 9);
                (w, h)
            }
            Resolution::Box { width, height } => (width, height),
        }
    }
}

impl FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let lower = text.to_ascii_lowercase();
        if let Some(h) = lower.strip_suffix('p') {
            if let Ok(h) = h.parse::<u32>() {
                if NAMED_RESOLUTIONS.iter().any(|(nh, _)| *nh == h) {
                    return Ok(Resolution::Named(h));
                }
            }
        }
        if let Some((w, h)) = lower.split_once('x') {
            if let (Ok(width), Ok(height)) = (w.parse::<u32>(), h.parse::<u32>()) {
                if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
                    return Err(format!(
                        "resolution {text:?} is out of range: width must be 16-7680 and height 16-4320"
                    ));
                }
                return Ok(Resolution::Box { width, height });
            }
        }
        Err(format!(
            "resolution {:?} is not one of 480p, 720p, 1080p, 1440p, 2160p or WIDTHxHEIGHT (e.g. 1280x720)",
            truncate(text, 40)
        ))
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Named(h) => write!(f, "{h}p"),
            Resolution::Box { width, height } => write!(f, "{width}x{height}"),
        }
    }
}

impl Serialize for Resolution {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A video bitrate in bits per second, written `10M`, `2500k` or as a plain
/// number of bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bitrate(pub u64);

impl Bitrate {
    pub fn bits_per_second(&self) -> u64 {
        self.0
    }
    /// The rate in kbit/s, as FFmpeg's `-b:v 2500k` wants it.
    pub fn kbps(&self) -> u64 {
        self.0.div_ceil(1000)
    }
}

impl FromStr for Bitrate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let invalid = || {
            format!(
                "bitrate {:?} is not a number of bits per second, nor like 2500k or 10M",
                truncate(text, 40)
            )
        };
        let (number, factor) = match text.char_indices().last() {
            Some((i, 'k' | 'K')) => (&text[..i], 1_000.0),
            Some((i, 'm' | 'M')) => (&text[..i], 1_000_000.0),
            Some(_) => (text, 1.0),
            None => return Err("bitrate must not be empty".into()),
        };
        let number = number.trim();
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        from_bits(value * factor, text)
    }
}

fn from_bits(bits: f64, shown: &str) -> Result<Bitrate, String> {
    if !bits.is_finite() || bits < MIN_BITRATE as f64 || bits > MAX_BITRATE as f64 {
        return Err(format!(
            "bitrate {:?} is out of range: it must be between 64k and 200M",
            truncate(shown, 40)
        ));
    }
    Ok(Bitrate(bits.round() as u64))
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1_000_000 == 0 {
            write!(f, "{}M", self.0 / 1_000_000)
        } else if self.0 % 1_000 == 0 {
            write!(f, "{}k", self.0 / 1_000)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Bitrate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "bitrate must be a string like \"2500k\" or \"10M\", or a number of bits per second",
            )
        })? {
            Raw::Number(n) => from_bits(n, &n.to_string()).map_err(serde::de::Error::custom),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A start time in seconds: finite, not negative, not absurd.
pub fn start_time(seconds: f64) -> Result<(), String> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "start_time {seconds} must be a number of seconds, 0 or more"
        ));
    }
    if seconds > MAX_START_TIME_S {
        return Err(format!(
            "start_time {seconds} is past any real video (more than a week)"
        ));
    }
    Ok(())
}

/// Checks a source path relative to the media root and returns it in a
/// normal form (components joined by `/`, no `.` or empty components).
///
/// Refused: empty paths, absolute paths (`/x`, `\\x`, `C:\x`), `..`
/// anywhere, a leading `-` (FFmpeg would read an option), any `name:`
/// prefix (FFmpeg would open a protocol such as `concat:` or `http:`),
/// control characters and NUL. Symlinks are checked by the worker against
/// its real media root, since only it sees the file system.
pub fn source_path(path: &str) -> Result<String, String> {
    if path.trim().is_empty() {
        return Err("source_path must not be empty".into());
    }
    if path.len() > MAX_SOURCE_PATH_LEN {
        return Err(format!(
            "source_path is {} bytes long; at most {MAX_SOURCE_PATH_LEN} are allowed",
            path.len()
        ));
    }
    let shown = truncate(path, 120);
    if path.chars().any(|c| c.is_control()) {
        return Err(format!("source_path {shown:?} contains control characters"));
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(format!(
            "source_path {shown:?} is absolute; give it relative to the worker's media root"
        ));
    }
    if path.starts_with('-') {
        return Err(format!(
            "source_path {shown:?} starts with '-', which FFmpeg would read as an option"
        ));
    }
    let first = path.split(['/', '\\']).next().unwrap_or_default();
    if first.contains(':') {
        return Err(format!(
            "source_path {shown:?} starts with a protocol or drive prefix ({first:?}); only plain files under the media root are allowed"
        ));
    }
    let mut parts = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "source_path {shown:?} contains '..'; it must stay inside the media root"
                ))
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("source_path {shown:?} names no file"));
    }
    Ok(parts.join("/"))
}

/// Cuts a string for an error message without splitting a character.
pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids() {
        let cases: &[(&str, bool)] = &[
            ("gaming-pc-room", true),
            ("nas.local", true),
            ("w_1", true),
            ("A1", true),
            ("", false),
            ("-leading", false),
            (".hidden", false),
            ("has/slash", false),
            ("plus+", false),
            ("hash#", false),
            ("dollar$", false),
            ("space here", false),
            ("ünicode", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ];
        for (id, ok) in cases {
            assert_eq!(worker_id(id).is_ok(), *ok, "{id:?}: {:?}", worker_id(id));
        }
    }

    #[test]
    fn hostnames_become_ids() {
        let cases = [
            ("Gaming-PC", "gaming-pc"),
            ("my host", "my-host"),
            ("--x", "x"),
            ("", "worker"),
            ("日本", "worker"),
        ];
        for (host, id) in cases {
            assert_eq!(worker_id_from_hostname(host), id);
            assert!(worker_id(&worker_id_from_hostname(host)).is_ok());
        }
    }

    #[test]
    fn resolutions() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("480p", Some((854, 480))),
            ("720p", Some((1280, 720))),
            ("1080P", Some((1920, 1080))),
            ("1440p", Some((2560, 1440))),
            ("2160p", Some((3840, 2160))),
            ("1280x720", Some((1280, 720))),
            (" 640X360 ", Some((640, 360))),
            ("999p", None),
            ("0x0", None),
            ("8000x100", None),
            ("x720", None),
            ("1280x", None),
            ("720", None),
            ("", None),
            ("-1x-1", None),
            ("1280x720x3", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Resolution>().map(|r| r.bounding_box());
            assert_eq!(got.as_ref().ok().copied(), *want, "{text:?}: {got:?}");
        }
    }

    #[test]
    fn bitrates() {
        let cases: &[(&str, Option<u64>)] = &[
            ("10M", Some(10_000_000)),
            ("10m", Some(10_000_000)),
            ("2500k", Some(2_500_000)),
            ("2.5M", Some(2_500_000)),
            ("2500000", Some(2_500_000)),
            ("64k", Some(64_000)),
            ("200M", Some(200_000_000)),
            ("63k", None),
            ("201M", None),
            ("0", None),
            ("-5M", None),
            ("", None),
            ("M", None),
            ("abc", None),
            ("10MB", None),
            ("1e9", None),
            ("NaN", None),
            ("99999999999999999999999999M", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Bitrate>().map(|b| b.0);
            assert_eq!(got.as_ref().ok().copied(), *want, "{text:?}: {got:?}");
        }
    }

    #[test]
    fn bitrates_from_json() {
        let cases: &[(&str, Option<u64>)] = &[
            ("\"10M\"", Some(10_000_000)),
            ("2500000", Some(2_500_000)),
            ("2500000.0", Some(2_500_000)),
            ("-1", None),
            ("true", None),
            ("null", None),
            ("[1]", None),
        ];
        for (json, want) in cases {
            let got = serde_json::from_str::<Bitrate>(json).map(|b| b.0);
            assert_eq!(got.as_ref().ok().copied(), *want, "{json}: {got:?}");
        }
    }

    #[test]
    fn bitrates_print_compactly() {
        let cases = [
            (10_000_000, "10M"),
            (2_500_000, "2500k"),
            (1_234_567, "1234567"),
        ];
        for (bits, text) in cases {
            assert_eq!(Bitrate(bits).to_string(), text);
            assert_eq!(text.parse::<Bitrate>().map(|b| b.0), Ok(bits));
        }
    }

    #[test]
    fn start_times() {
        let cases: &[(f64, bool)] = &[
            (0.0, true),
            (6.0, true),
            (5400.5, true),
            (-1.0, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
            (1e9, false),
        ];
        for (t, ok) in cases {
            assert_eq!(start_time(*t).is_ok(), *ok, "{t}");
        }
    }

    #[test]
    fn source_paths() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "movies/sci-fi/interstellar.mkv",
                Some("movies/sci-fi/interstellar.mkv"),
            ),
            ("a.mkv", Some("a.mkv")),
            ("./a.mkv", Some("a.mkv")),
            ("dir//a.mkv", Some("dir/a.mkv")),
            ("dir\\a.mkv", Some("dir/a.mkv")),
            ("movies/-odd-name.mkv", Some("movies/-odd-name.mkv")),
            ("movies/a:b.mkv", Some("movies/a:b.mkv")),
            ("", None),
            ("   ", None),
            ("/etc/passwd", None),
            ("\\\\server\\share\\a.mkv", None),
            ("C:\\movies\\a.mkv", None),
            ("c:/a.mkv", None),
            ("../../etc/passwd", None),
            ("movies/../../etc/passwd", None),
            ("movies/..", None),
            ("..", None),
            ("-i.mkv", None),
            ("-", None),
            ("concat:a|b", None),
            ("http://evil/x.mkv", None),
            ("file:a.mkv", None),
            ("pipe:0", None),
            ("subfile,,start,0,end,0,,:a.mkv", None),
            ("a\0b.mkv", None),
            ("a\nb.mkv", None),
            (".", None),
            ("./", None),
        ];
        for (path, want) in cases {
            let got = source_path(path);
            assert_eq!(got.as_deref().ok(), *want, "{path:?}: {got:?}");
        }
        let long = "a/".repeat(3000);
        assert!(source_path(&long).is_err());
    }
}
