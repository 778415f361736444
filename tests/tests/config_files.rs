//! `config/orchestrator.toml` and `config/worker.toml` document every key of
//! the settings with its built-in default: loading either file through the
//! real loader gives exactly the defaults, and no key is missing from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use transcode_common::config::{load_with_env, Validate};
use transcode_orchestrator::config::OrchestratorConfig;
use transcode_worker::config::WorkerConfig;

fn config_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join(name)
}

/// `key` when `line` (comment marker already removed) reads `key = ...`.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    plain.then_some(key)
}

/// Dotted keys the file sets (`active`) and shows commented out (`# key =`),
/// each under the `[section]` it appears in.
fn keys_in_text(text: &str) -> (Vec<String>, Vec<String>) {
    let mut section = String::new();
    let mut active = Vec::new();
    let mut commented = Vec::new();
    let dotted = |section: &str, key: &str| {
        if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
        } else if let Some(comment) = line.strip_prefix('#') {
            if let Some(key) = key_of(comment.trim()) {
                commented.push(dotted(&section, key));
            }
        } else if let Some(key) = key_of(line) {
            active.push(dotted(&section, key));
        }
    }
    (active, commented)
}

fn check_file<T>(name: &str)
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let path = config_file(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));

    // Loaded through the real loader, with an empty environment.
    let loaded: T = load_with_env(Some(&path), Some(HashMap::new()))
        .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
    let mut defaults = T::default();
    defaults
        .validate()
        .unwrap_or_else(|e| panic!("the built-in defaults behind {name} are invalid: {e}"));
    let loaded = serde_json::to_value(&loaded).expect("settings serialize");
    let defaults = serde_json::to_value(&defaults).expect("settings serialize");
    assert_eq!(
        loaded, defaults,
        "{name} must set every key to its built-in default"
    );

    // Every key is shown: set when it has a value, commented out when its
    // default is "unset" (TOML has no null).
    let (active, commented) = keys_in_text(&text);
    let raw_defaults = serde_json::to_value(T::default()).expect("settings serialize");
    let keys = transcode_common::config::leaves(&raw_defaults);
    assert!(!keys.is_empty(), "no keys found in the defaults of {name}");
    for (key, value) in &keys {
        if value.is_null() {
            assert!(
                commented.contains(key) || active.contains(key),
                "{name} does not show `{key}` (unset by default: write it as `# {short} = ...` in its section)",
                short = key.rsplit('.').next().unwrap_or(key)
            );
        } else {
            assert!(
                active.contains(key),
                "{name} does not set `{key}` to its default {value} in its section"
            );
        }
    }
}

#[test]
fn orchestrator_toml_shows_every_default() {
    check_file::<OrchestratorConfig>("orchestrator.toml");
}

#[test]
fn worker_toml_shows_every_default() {
    check_file::<WorkerConfig>("worker.toml");
}

#[test]
fn the_key_scanner_sees_sections_and_comments() {
    let (active, commented) = keys_in_text(
        "# header: set TRANSCODE_X=1\nworker_id = \"\"\n[broker]\n# The broker.\nurl = \"\"\n# username = \"u\"\n[http]\nlisten = \"x\"\n",
    );
    assert_eq!(active, ["worker_id", "broker.url", "http.listen"]);
    assert_eq!(commented, ["broker.username"]);
}

/// `[Section]` → key → values of a systemd unit file.
fn unit(name: &str) -> std::collections::HashMap<String, Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: not key=value: {line}"));
        out.entry(format!("{section}.{k}"))
            .or_default()
            .push(v.to_string());
    }
    out
}

#[test]
fn the_service_units_run_hardened_with_writable_state() {
    let cases = [
        (
            "transcode-orchestrator.service",
            "transcode-orchestrator",
            "/etc/transcode/orchestrator.toml",
            "StateDirectory",
            "/var/lib/transcode-orchestrator",
            "TRANSCODE_STATE__DIR=",
        ),
        (
            "transcode-worker.service",
            "transcode-worker",
            "/etc/transcode/worker.toml",
            "CacheDirectory",
            "/var/cache/transcode-worker",
            "TRANSCODE_TRANSCODE__OUTPUT_DIR=",
        ),
    ];
    for (file, binary, config, dir_key, dir, env_key) in cases {
        let u = unit(file);
        let one = |k: &str| -> String {
            u.get(k)
                .and_then(|v| v.last().cloned())
                .unwrap_or_else(|| panic!("{file}: {k} missing"))
        };
        assert_eq!(one("Service.User"), "transcode", "{file}: a dedicated user");
        assert_eq!(one("Service.ProtectSystem"), "strict", "{file}");
        assert_eq!(one("Service.Restart"), "on-failure", "{file}");
        assert_eq!(one("Service.NoNewPrivileges"), "true", "{file}");
        assert_eq!(one("Install.WantedBy"), "multi-user.target", "{file}");
        assert!(
            one("Unit.After")
                .split_whitespace()
                .any(|t| t == "time-sync.target"),
            "{file}: started once the clock is synced"
        );
        assert_eq!(
            one("Service.ExecStart"),
            format!("/usr/local/bin/{binary} --config {config}"),
            "{file}"
        );
        assert_eq!(
            format!(
                "/var/{}/{}",
                if dir_key == "StateDirectory" {
                    "lib"
                } else {
                    "cache"
                },
                one(&format!("Service.{dir_key}"))
            ),
            dir,
            "{file}"
        );
        assert!(
            one("Service.ReadWritePaths")
                .split_whitespace()
                .any(|p| p == dir),
            "{file}: {dir} writable"
        );
        assert!(
            u["Service.Environment"]
                .iter()
                .any(|e| e == &format!("{env_key}{dir}")),
            "{file}: the binary is told to use {dir}"
        );
    }
}
