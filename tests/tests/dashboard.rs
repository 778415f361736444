//! The dashboard as a person meets it, in headless Chromium: sign in with
//! the API token, watch workers and jobs change live (progress, a cancel,
//! a finish, a worker going away, the orchestrator restarting), pick a
//! film from the library, watch it play on `/jobs/{id}` and cancel it. The
//! page talks to nobody but the orchestrator and the workers' HLS servers.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use transcode_tests::browser::{self, Page};
use transcode_tests::split::ONE_THREAD;
use transcode_tests::{env, make_media, wait_until, System, API_TOKEN};

/// How far behind the orchestrator the page may be.
const LIVE: Duration = Duration::from_secs(2);
const JOB: Duration = Duration::from_secs(240);

/// A system whose orchestrator serves the workers' media folder as its
/// library.
fn system() -> System {
    browser::require_browser();
    let mut sys = System::new();
    let media = sys.dir.path().join("media");
    std::fs::create_dir_all(&media).expect("media folder");
    sys.orchestrator_env
        .push(env("TRANSCODE_MEDIA__ROOT", media.display().to_string()));
    sys
}

/// Where screenshots go: `$DASHBOARD_SCREENSHOTS` (to refresh the README's),
/// else the test's own folder.
fn screenshots(sys: &System) -> PathBuf {
    std::env::var_os("DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| sys.dir.path().to_path_buf())
}

/// `/`, signed in with the token (after a wrong one is refused).
fn signed_in(sys: &System, page: &Page) {
    page.goto(&sys.api("/"));
    page.wait(
        "the sign-in form",
        "!document.getElementById('login').hidden",
        LIVE,
    );
    page.fill("#token", "not-the-token");
    page.click("#login-form button[type=submit]");
    page.wait(
        "that the wrong token was refused",
        "document.getElementById('login-error').textContent.includes('refused')",
        LIVE,
    );
    page.fill("#token", API_TOKEN);
    page.click("#login-form button[type=submit]");
    page.wait(
        "the live view",
        "document.getElementById('live').textContent === 'Live'",
        Duration::from_secs(10),
    );
}

/// A job's entry on the page: `data-state` and its progress sentence.
fn job_js(id: &str, what: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector('#home [data-job=\"{id}\"]'); \
         return e && {what}; }})()"
    )
}

/// Waits until the API says what `check` looks for, then gives the page
/// [`LIVE`] to show `js`; returns how long the page took.
fn page_follows(
    sys: &System,
    page: &Page,
    what: &str,
    check: impl Fn(&System) -> bool,
    js: &str,
) -> Duration {
    wait_until(JOB, &format!("the API to say {what}"), || {
        check(sys).then_some(())
    });
    let (_, took) = page.wait(what, js, LIVE);
    eprintln!("the page showed {what} {took:?} after the API");
    took
}

fn state_is(sys: &System, id: &str, state: &str) -> bool {
    sys.job(id)["state"] == state
}

#[test]
fn the_dashboard_follows_workers_and_jobs_live_and_across_a_restart() {
    let sys = system();
    let media = sys.dir.path().join("media");
    make_media(&media.join("long film.mkv"), 1280, 720, 150, true);
    make_media(&media.join("short.mkv"), 640, 360, 6, true);
    let mut orchestrator = sys.start_orchestrator();
    let mut a = sys.start_online("a", &ONE_THREAD);
    let _b = sys.start_online("b", &ONE_THREAD);

    let page = Page::open(sys.dir.path(), 1280, 900);
    signed_in(&sys, &page);
    for id in ["a", "b"] {
        page.wait(
            &format!("worker {id} online with libx264"),
            &format!(
                "(() => {{ const w = document.querySelector('[data-worker=\"{id}\"]'); \
                 return w && w.dataset.online === 'true' && \
                 w.querySelector('.encoders').textContent.includes('libx264'); }})()"
            ),
            LIVE,
        );
    }
    // Set once: gone if the page reloads.
    page.eval("window.__same_page = true");

    let long = json!({"source_path": "long film.mkv", "resolution": "720p", "bitrate": "2M"});
    let j1 = sys.submit(&long);
    let j2 = sys.submit(&long);
    let j3 =
        sys.submit(&json!({"source_path": "short.mkv", "resolution": "480p", "bitrate": "1M"}));
    for id in [&j1, &j2] {
        page_follows(
            &sys,
            &page,
            &format!("job {id} processing"),
            |s| state_is(s, id, "processing"),
            &job_js(id, "e.dataset.state === 'processing'"),
        );
    }
    page.wait(
        "the third job queued behind them",
        &job_js(
            &j3,
            "e.dataset.state === 'queued' && e.closest('#queue-list') !== null",
        ),
        LIVE,
    );

    // Progress moves without a reload.
    let progress = |id: &str| -> String {
        page.eval(&job_js(id, "e.querySelector('.progress-text').textContent"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let before = progress(&j1);
    assert!(before.contains('%'), "no progress shown: {before:?}");
    let (changed, _) = page.wait(
        "job 1's progress changing",
        &job_js(
            &j1,
            &format!(
                "e.querySelector('.progress-text').textContent !== {} && \
                 e.querySelector('.progress-text').textContent",
                Value::from(before.clone())
            ),
        ),
        Duration::from_secs(10),
    );
    eprintln!("progress went from {before:?} to {changed}");
    assert_eq!(page.eval("window.__same_page === true"), true);
    page.screenshot(&screenshots(&sys).join("dashboard.png"), true);

    // Cancel from the keyboard: Tab reaches the button (focus survives the
    // live updates that rebuild the job's entry), Enter presses it.
    let button = format!("#home [data-job=\"{j2}\"] button[data-action=cancel]");
    page.eval("document.activeElement && document.activeElement.blur(), true");
    let reached = (0..80).any(|_| {
        page.press("Tab");
        page.eval(&format!(
            "document.activeElement !== null && document.activeElement.matches({})",
            Value::from(button.clone())
        )) == true
    });
    assert!(reached, "Tab never reached the cancel button of job 2");
    page.press("Enter");
    page_follows(
        &sys,
        &page,
        "job 2 cancelled",
        |s| state_is(s, &j2, "cancelled"),
        &job_js(
            &j2,
            "e.dataset.state === 'cancelled' && e.closest('#history-list') !== null",
        ),
    );
    // The freed worker takes the short job, which finishes.
    page_follows(
        &sys,
        &page,
        "job 3 completed",
        |s| state_is(s, &j3, "completed"),
        &job_js(
            &j3,
            "e.dataset.state === 'completed' && e.closest('#history-list') !== null",
        ),
    );

    // A worker dies: greyed out with when it was last seen.
    a.kill();
    page_follows(
        &sys,
        &page,
        "worker a offline",
        |s| !s.is_online("a"),
        "(() => { const w = document.querySelector('[data-worker=\"a\"]'); \
         return w && w.dataset.online === 'false' && w.textContent.includes('last seen'); })()",
    );

    // The orchestrator restarts: a sentence while it is away, then live
    // again on the same page.
    orchestrator.signal(Signal::SIGTERM);
    orchestrator.wait_exit(Duration::from_secs(20));
    page.wait(
        "that the orchestrator does not answer",
        "(() => { const b = document.getElementById('banner'); \
         return !b.hidden && b.textContent.includes('does not answer') || \
         !b.hidden && b.textContent.includes('closed the live view'); })()",
        Duration::from_secs(10),
    );
    let _orchestrator = sys.start_orchestrator();
    page.wait(
        "the live view again after the restart",
        &format!(
            "document.getElementById('live').textContent === 'Live' && \
             document.getElementById('banner').hidden && {}",
            job_js(&j3, "e.dataset.state === 'completed'")
        ),
        Duration::from_secs(15),
    );
    assert_eq!(page.eval("window.__same_page === true"), true);
    assert!(page.page_errors().is_empty(), "{:?}", page.page_errors());
}

#[test]
fn a_film_picked_in_the_library_plays_on_its_page_and_is_cancelled_there() {
    let sys = system();
    let media = sys.dir.path().join("media");
    make_media(&media.join("Films/Big Film.mkv"), 1280, 720, 120, true);
    std::fs::write(media.join("Films/notes.txt"), "not a film").expect("a text file");
    let _o = sys.start_orchestrator();
    let _w = sys.start_online("w", &ONE_THREAD);

    let page = Page::open(sys.dir.path(), 390, 844); // a phone
    signed_in(&sys, &page);
    page.wait(
        "the library's Films folder",
        "document.querySelector('#files button[data-path=\"Films\"]') !== null",
        LIVE,
    );
    page.click("#files button[data-path=\"Films\"]");
    page.wait(
        "the film in the folder, the text file not pickable",
        "document.querySelector('#files button[data-path=\"Films/Big Film.mkv\"]') !== null && \
         document.getElementById('files').textContent.includes('notes.txt') && \
         document.querySelector('#files button[data-path=\"Films/notes.txt\"]') === null",
        LIVE,
    );
    page.click("#files button[data-path=\"Films/Big Film.mkv\"]");
    page.select("#resolution", "480p");
    page.fill("#bitrate", "1M");
    page.fill("#start-time", "0:10");
    page.click("#submit-button");
    let (path, _) = page.wait(
        "the job's page",
        "location.pathname.startsWith('/jobs/') && location.pathname",
        Duration::from_secs(10),
    );
    let id = path
        .as_str()
        .and_then(|p| p.strip_prefix("/jobs/"))
        .expect("a job id in the path")
        .to_string();
    let job = sys.job(&id);
    assert_eq!(job["source_path"], "Films/Big Film.mkv", "{job}");
    assert_eq!(job["resolution"], "480p", "{job}");
    assert_eq!(job["bitrate"], "1M", "{job}");
    assert_eq!(job["start_time"], 10.0, "{job}");

    let (t, took) = page.wait(
        "the video playing past 5 s",
        "(() => { const v = document.getElementById('video'); \
         return v.currentTime > 5 && !v.error && v.currentTime; })()",
        Duration::from_secs(60),
    );
    eprintln!("the page played to {t} s, {took:?} after the submit");
    page.screenshot(&screenshots(&sys).join("player-phone.png"), false);
    page.wait(
        "the job still running on its page",
        "document.querySelector('#player-job [data-state=\"processing\"]') !== null",
        LIVE,
    );
    page.click("#player-job button[data-action=cancel]");
    wait_until(LIVE, "the job to be cancelled", || {
        state_is(&sys, &id, "cancelled").then_some(())
    });
    page.wait(
        "the job cancelled on its page",
        "document.querySelector('#player-job [data-state=\"cancelled\"]') !== null",
        LIVE,
    );

    // Nobody but the orchestrator and the worker's HLS server.
    let origin = sys.api("");
    let hls: Vec<String> = sys
        .workers()
        .iter()
        .filter_map(|w| {
            let hb = &w["heartbeat"];
            Some(format!(
                "http://{}:{}/",
                hb["ip_address"].as_str()?,
                hb["port"].as_u64()?
            ))
        })
        .collect();
    let requests = page.requests();
    assert!(
        requests.iter().any(|r| r.contains("/stream/")),
        "{requests:?}"
    );
    let elsewhere: Vec<&String> = requests
        .iter()
        .filter(|r| {
            !r.starts_with(&format!("{origin}/"))
                && !r.starts_with(&format!("blob:{origin}/"))
                && !r.starts_with("data:")
                && !hls.iter().any(|h| r.starts_with(h))
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page asked for {elsewhere:?} (the orchestrator is {origin}, the workers {hls:?})"
    );
    assert!(page.page_errors().is_empty(), "{:?}", page.page_errors());
}

#[test]
fn the_page_and_its_files_come_from_the_binary_with_validators() {
    let sys = System::new();
    let _o = sys.start_orchestrator();
    for (path, kind) in [
        ("/", "text/html"),
        ("/jobs/00000000-0000-0000-0000-000000000001", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/hls.min.js", "text/javascript"),
        ("/assets/hls.js-LICENSE.txt", "text/plain"),
    ] {
        let (code, headers, body) = transcode_tests::http_raw(sys.http_port, path);
        assert_eq!(code, 200, "{path}");
        let header = |n| {
            transcode_tests::header(&headers, n)
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        assert!(!body.is_empty(), "{path}");
        let tag = header("etag");
        assert!(tag.starts_with('"'), "{path}: {headers:?}");
        let (again, _, body) = transcode_tests::http_request(
            sys.http_port,
            "GET",
            path,
            &[("if-none-match", tag.as_str())],
        );
        assert_eq!((again, body.len()), (304, 0), "{path}");
        if kind == "text/html" {
            let csp = header("content-security-policy");
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        }
    }
    let (code, _, _) = transcode_tests::http_raw(sys.http_port, "/assets/../Cargo.toml");
    assert_eq!(code, 404);
    let (code, _, _) = transcode_tests::http_raw(sys.http_port, "/assets/nothing.js");
    assert_eq!(code, 404);
}
