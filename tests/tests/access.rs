//! The HTTP API is locked by default: `/api/*` wants the token the
//! orchestrator keeps in its state folder, job requests must be JSON, and
//! submissions are capped; `/stream`, `/healthz` (and by default `/metrics`)
//! stay open. `transcodectl` finds the token by itself on the same machine.

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use transcode_tests::{bin, env, header, http_request, http_request_with_body, System, API_TOKEN};

/// `(status, headers, JSON body)` of a request with these headers.
fn call(
    sys: &System,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Value) {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    let length = body.map(|b| b.len().to_string());
    if let Some(l) = &length {
        all.push(("Content-Length", l));
    }
    let (status, h, raw) = match body {
        Some(b) => http_request_with_body(sys.http_port, method, path, &all, b),
        None => http_request(sys.http_port, method, path, &all),
    };
    (
        status,
        h,
        serde_json::from_slice(&raw).unwrap_or(Value::Null),
    )
}

fn job(source: &str) -> String {
    json!({"source_path": source, "resolution": "720p", "bitrate": "1M"}).to_string()
}

#[test]
fn the_api_wants_its_token_and_json_and_the_player_paths_stay_open() {
    let mut sys = System::new();
    sys.orchestrator_env
        .push(env("TRANSCODE_HTTP__METRICS_NEED_TOKEN", "true"));
    let _o = sys.start_orchestrator();
    let bearer = format!("Bearer {API_TOKEN}");
    let good = [("Authorization", bearer.as_str())];
    let token_file = sys.state_dir().join("api-token").display().to_string();

    for (method, path) in [
        ("GET", "/api/jobs"),
        ("GET", "/api/workers"),
        ("GET", "/api/media"),
        ("DELETE", "/api/jobs/00000000-0000-4000-8000-000000000000"),
        ("GET", "/metrics"),
    ] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer nope")],
            vec![("Authorization", "Basic eA==")],
        ] {
            let (status, h, body) = call(&sys, method, path, &headers, None);
            assert_eq!(status, 401, "{method} {path} {headers:?}: {body}");
            assert!(header(&h, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(&token_file), "{error}");
        }
    }
    // A cross-site form post: no token, text/plain, a body that parses.
    let (status, _, _) = call(
        &sys,
        "POST",
        "/api/jobs",
        &[("Content-Type", "text/plain")],
        Some(&job("a.mkv")),
    );
    assert_eq!(status, 401);
    // With the token, only JSON is read.
    for kind in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut headers = good.to_vec();
        if let Some(k) = kind {
            headers.push(("Content-Type", k));
        }
        let (status, _, body) = call(&sys, "POST", "/api/jobs", &headers, Some(&job("a.mkv")));
        assert_eq!(status, 415, "{kind:?}: {body}");
        assert!(body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("application/json"));
    }
    let (status, _, jobs) = call(&sys, "GET", "/api/jobs", &good, None);
    assert_eq!(
        (status, jobs),
        (200, json!([])),
        "a refused request made a job"
    );
    let mut headers = good.to_vec();
    headers.push(("Content-Type", "application/json; charset=utf-8"));
    let (status, _, body) = call(&sys, "POST", "/api/jobs", &headers, Some(&job("a.mkv")));
    assert_eq!(status, 202, "{body}");
    let id = body["job_id"].as_str().expect("job id").to_string();

    // Open without a token: liveness and the player's playlist.
    assert_eq!(call(&sys, "GET", "/healthz", &[], None).0, 200);
    let (status, _, _) = call(&sys, "GET", &format!("/stream/{id}/index.m3u8"), &[], None);
    assert_eq!(status, 503, "no segment yet, but not locked");
    assert_eq!(call(&sys, "GET", "/metrics", &good, None).0, 200);
}

#[test]
fn submissions_are_capped_per_client_and_by_the_queue() {
    let mut sys = System::new();
    for (k, v) in [
        ("TRANSCODE_HTTP__SUBMIT_BURST", "5"),
        ("TRANSCODE_HTTP__SUBMIT_RATE", "0.01"),
        ("TRANSCODE_SCHEDULER__MAX_QUEUED_JOBS", "3"),
    ] {
        sys.orchestrator_env.push(env(k, v));
    }
    let _o = sys.start_orchestrator();
    let bearer = format!("Bearer {API_TOKEN}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |n: usize| {
        call(
            &sys,
            "POST",
            "/api/jobs",
            &headers,
            Some(&job(&format!("{n}.mkv"))),
        )
    };
    for n in 0..3 {
        assert_eq!(post(n).0, 202);
    }
    // No worker: three wait, a fourth and fifth find the queue full.
    for n in 3..5 {
        let (status, _, body) = post(n);
        assert_eq!(status, 429, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("queue is full") && error.contains("scheduler.max_queued_jobs"),
            "{error}"
        );
    }
    // The client used its burst of five: it has to wait.
    let (status, h, body) = post(5);
    assert_eq!(status, 429, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("too many job requests from 127.0.0.1"),
        "{error}"
    );
    let retry: u64 = header(&h, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1, "{retry}");
}

#[test]
fn a_new_token_replaces_the_old_one_and_transcodectl_finds_it() {
    let sys = System::new();
    let mut o = sys.start_orchestrator();
    let elsewhere = tempfile::tempdir().expect("dir");
    let ctl = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(bin("transcodectl"));
        cmd.arg("--orchestrator").arg(sys.api("")).arg("jobs");
        cmd.env_remove("TRANSCODE_TOKEN")
            .env_remove("TRANSCODE_STATE__DIR");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // Not in the system's folder, whose ./state would be found too.
        cmd.current_dir(elsewhere.path())
            .stdin(Stdio::null())
            .output()
            .expect("transcodectl")
    };
    // On the orchestrator's machine it reads the state folder.
    let state = sys.state_dir().display().to_string();
    let out = ctl(&[("TRANSCODE_STATE__DIR", &state)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no jobs\n");
    // Elsewhere, without one: a sentence that says what to do.
    let empty = tempfile::tempdir().expect("dir");
    let mut cmd = Command::new(bin("transcodectl"));
    let out = cmd
        .args(["--orchestrator", &sys.api(""), "jobs"])
        .env_remove("TRANSCODE_TOKEN")
        .env_remove("TRANSCODE_STATE__DIR")
        .current_dir(empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("transcodectl");
    // (Unless this machine runs an orchestrator as a service.)
    if !std::path::Path::new("/var/lib/transcode-orchestrator/api-token").exists() {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--token-file") && stderr.contains("TRANSCODE_TOKEN"),
            "{stderr}"
        );
    }

    // The documented command: a new token, the old one refused after a
    // restart.
    o.kill();
    let out = Command::new(bin("transcode-orchestrator"))
        .arg("new-token")
        .env("TRANSCODE_STATE__DIR", &state)
        .stdin(Stdio::null())
        .output()
        .expect("new-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(new.len(), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("restart the orchestrator"));
    let _o = sys.start_orchestrator();
    let old = ctl(&[("TRANSCODE_TOKEN", API_TOKEN)]);
    assert!(!old.status.success());
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(
        stderr.contains("TRANSCODE_TOKEN, which the orchestrator does not accept"),
        "{stderr}"
    );
    let fresh = ctl(&[("TRANSCODE_TOKEN", &new)]);
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
}
