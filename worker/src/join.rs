//! `transcode-worker join LINE`: writes the login the orchestrator made for
//! this worker (`transcode-orchestrator add-worker NAME`) into the worker's
//! config file, keeping everything else in it (comments too).

use std::path::Path;

/// What a join line (`mqtt://worker-NAME:PASSWORD@HOST:PORT`, or `mqtts://`)
/// carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub worker_id: String,
    pub username: String,
    pub password: String,
    /// `mqtt://HOST:PORT` (or `mqtts://`).
    pub url: String,
}

/// Reads a join line.
pub fn parse(line: &str) -> Result<Join, String> {
    let shown = "a join line looks like mqtt://worker-NAME:PASSWORD@HOST:PORT (or mqtts:// for TLS; transcode-orchestrator add-worker NAME prints it)";
    let (scheme, rest) = line
        .trim()
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "mqtt" | "mqtts"))
        .ok_or_else(|| format!("this is not a join line: {shown}"))?;
    let (login, address) = rest
        .rsplit_once('@')
        .ok_or_else(|| format!("the join line has no login: {shown}"))?;
    let (username, password) = login
        .split_once(':')
        .ok_or_else(|| format!("the join line has no password: {shown}"))?;
    let worker_id = username
        .strip_prefix("worker-")
        .ok_or_else(|| format!("the join line's login is not a worker's: {shown}"))?;
    transcode_common::validate::worker_id(worker_id).map_err(|e| format!("the join line's {e}"))?;
    if password.is_empty() || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("the join line's password is damaged: {shown}"));
    }
    let url = format!("{scheme}://{address}");
    transcode_common::mqtt_url::parse(&url).map_err(|e| format!("the join line's address: {e}"))?;
    Ok(Join {
        worker_id: worker_id.to_string(),
        username: username.to_string(),
        password: password.to_string(),
        url,
    })
}

/// The config file's text with the join's keys set; with `mdns`, the
/// broker's address is left empty: the worker finds (and follows) it over
/// mDNS.
pub fn apply(text: &str, join: &Join, mdns: bool) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("the config file is not TOML: {e}"))?;
    doc["worker_id"] = toml_edit::value(join.worker_id.as_str());
    if !doc.contains_key("broker") {
        doc["broker"] = toml_edit::Item::Table(toml_edit::Table::new());
    }
    let broker = doc["broker"]
        .as_table_like_mut()
        .ok_or("the config file's broker is not a table")?;
    // An existing key keeps its place and the comment above it.
    let url = if mdns {
        String::new()
    } else {
        join.url.clone()
    };
    for (key, v) in [
        ("url", &url),
        ("username", &join.username),
        ("password", &join.password),
    ] {
        match broker.get_mut(key) {
            Some(item) => *item = toml_edit::value(v.as_str()),
            None => {
                broker.insert(key, toml_edit::value(v.as_str()));
            }
        }
    }
    Ok(doc.to_string())
}

/// Writes the join into the config file at `path` (made when missing),
/// readable by its owner only: it holds the password.
pub fn write(path: &Path, join: &Join, mdns: bool) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = apply(&text, join, mdns)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Readable by its owner only from the first byte, whole or not at all.
    transcode_common::files::write_private(path, new.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_lines() {
        let good = parse(" mqtt://worker-nas:ab12cd@192.168.1.10:1883\n").unwrap();
        assert_eq!(
            good,
            Join {
                worker_id: "nas".into(),
                username: "worker-nas".into(),
                password: "ab12cd".into(),
                url: "mqtt://192.168.1.10:1883".into(),
            }
        );
        assert_eq!(
            parse("mqtt://worker-nas:ab@[2001:db8::5]:1883")
                .unwrap()
                .url,
            "mqtt://[2001:db8::5]:1883"
        );
        assert_eq!(
            parse("mqtts://worker-nas:ab@broker.home:8883").unwrap().url,
            "mqtts://broker.home:8883"
        );
        let bad = [
            ("http://worker-nas:ab@h:1", "not a join line"),
            ("worker-nas:ab@h:1", "not a join line"),
            ("mqtt://h:1883", "no login"),
            ("mqtt://worker-nas@h:1883", "no password"),
            ("mqtt://admin:ab@h:1883", "not a worker's"),
            ("mqtt://worker-a/b:ab@h:1883", "worker"),
            ("mqtt://worker-nas:a b@h:1883", "damaged"),
            ("mqtt://worker-nas:ab@h:port", "address"),
        ];
        for (line, needle) in bad {
            let e = parse(line).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn joining_sets_the_login_and_keeps_the_rest() {
        let join = parse("mqtt://worker-nas:ab12@udoo:1883").unwrap();
        let before = "# my worker\nworker_id = \"old\"\n\n[broker]\n# found over mDNS before\nurl = \"\"\nkeepalive_s = 5\n\n[media]\nroot = \"/srv/media\"\n";
        let after = apply(before, &join, false).unwrap();
        assert!(
            after.contains("# my worker") && after.contains("# found over mDNS before"),
            "{after}"
        );
        let parsed: toml_edit::DocumentMut = after.parse().unwrap();
        assert_eq!(parsed["worker_id"].as_str(), Some("nas"));
        assert_eq!(parsed["broker"]["url"].as_str(), Some("mqtt://udoo:1883"));
        assert_eq!(parsed["broker"]["username"].as_str(), Some("worker-nas"));
        assert_eq!(parsed["broker"]["password"].as_str(), Some("ab12"));
        assert_eq!(parsed["broker"]["keepalive_s"].as_integer(), Some(5));
        assert_eq!(parsed["media"]["root"].as_str(), Some("/srv/media"));
        let fresh: toml_edit::DocumentMut = apply("", &join, false).unwrap().parse().unwrap();
        assert_eq!(fresh["broker"]["username"].as_str(), Some("worker-nas"));
        let found: toml_edit::DocumentMut = apply(before, &join, true).unwrap().parse().unwrap();
        assert_eq!(found["broker"]["url"].as_str(), Some(""));
        assert_eq!(found["broker"]["password"].as_str(), Some("ab12"));
        assert!(apply("not = [toml", &join, false).is_err());
    }
}
