//! The state machine driven with real payloads and a real (temporary) store.

use super::*;
use serde_json::{json, Value};

struct Rig {
    core: Core,
    now: Now,
    _dir: tempfile::TempDir,
}

fn settings() -> CoreSettings {
    CoreSettings::for_tests()
}

impl Rig {
    fn new() -> Rig {
        Rig::with_ha(false)
    }

    /// A rig whose core publishes Home Assistant discovery when `ha`.
    fn with_ha(ha: bool) -> Rig {
        let topics = Topics::new("transcode").unwrap();
        let ha = ha.then(|| crate::homeassistant::Discovery::new("homeassistant", topics.clone()));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Now {
            instant: Instant::now(),
            ms: 1_000_000,
        };
        let core = Core::open(store, topics, settings(), ha, now).unwrap();
        Rig {
            core,
            now,
            _dir: dir,
        }
    }

    /// Closes the store and opens it again, as after a crash.
    fn restart(self) -> Rig {
        let Rig { core, now, _dir } = self;
        drop(core);
        let store = Store::open(_dir.path()).unwrap();
        let core = Core::open(
            store,
            Topics::new("transcode").unwrap(),
            settings(),
            None,
            now,
        )
        .unwrap();
        Rig { core, now, _dir }
    }

    fn advance(&mut self, secs: u64) {
        self.now.instant += Duration::from_secs(secs);
        self.now.ms += secs * 1000;
    }

    fn worker(&mut self, id: &str, encoders: &[&str], active: &[Uuid]) -> Vec<Publish> {
        let hb = json!({"worker_id": id, "ip_address": "10.0.0.2", "port": 8080, "os": "linux",
            "hw_accel": [], "status": if active.is_empty() {"idle"} else {"working"}, "cpu_usage": 5,
            "max_jobs": 1, "encoders": encoders, "active_jobs": active, "interval_s": 1, "timestamp": self.now.ms});
        let now = self.now;
        self.core
            .on_heartbeat(id, hb.to_string().as_bytes(), false, now)
            .unwrap()
    }

    fn submit(&mut self, source: &str) -> (Uuid, Vec<Publish>) {
        self.submit_request(json!({"source_path": source, "resolution": "720p", "bitrate": "1M"}))
    }

    fn submit_request(&mut self, request: Value) -> (Uuid, Vec<Publish>) {
        let req: JobRequest = wire::decode(request.to_string().as_bytes()).unwrap();
        let now = self.now;
        let (job, out) = self.core.submit(req, now).unwrap();
        (job.job_id, out)
    }

    /// A worker's status payload, with `extra` fields over the usual ones.
    fn status_payload(
        &self,
        job_id: Uuid,
        worker: &str,
        state: &str,
        attempt: u32,
        extra: Value,
    ) -> Vec<u8> {
        let mut s = json!({"job_id": job_id, "state": state, "progress": 10, "fps": 30,
            "worker_id": worker, "attempt": attempt, "timestamp": self.now.ms});
        if let (Some(obj), Some(more)) = (s.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        s.to_string().into_bytes()
    }

    fn status(
        &mut self,
        job_id: Uuid,
        worker: &str,
        state: &str,
        attempt: u32,
        extra: Value,
    ) -> Vec<Publish> {
        let payload = self.status_payload(job_id, worker, state, attempt, extra);
        let now = self.now;
        self.core.on_status(&job_id.to_string(), &payload, now)
    }

    fn job(&self, id: Uuid) -> Job {
        self.core.job(id).unwrap()
    }

    /// A worker reports segments `indices` of a run (4 s each on a 30 fps
    /// grid).
    fn segments(&mut self, id: Uuid, worker: &str, attempt: u32, indices: &[u64]) -> Vec<Publish> {
        self.report(id, worker, attempt, indices, false)
    }

    fn report(
        &mut self,
        id: Uuid,
        worker: &str,
        attempt: u32,
        indices: &[u64],
        inventory: bool,
    ) -> Vec<Publish> {
        let segs: Vec<Value> = indices
            .iter()
            .map(|i| json!({"index": i, "duration": 4.0}))
            .collect();
        let report = json!({"worker_id": worker, "job_id": id, "attempt": attempt,
            "segments": segs, "inventory": inventory, "encoding": "libx264 1280x720 1000k aac",
            "grid": {"segment_frames": 120, "fps_num": 30, "fps_den": 1}});
        let now = self.now;
        self.core
            .on_segments(worker, report.to_string().as_bytes(), now)
    }

    fn playlist(&mut self, id: Uuid) -> PlaylistAnswer {
        let now = self.now;
        self.core.playlist(id, now)
    }
}

/// The segment URIs a playlist lists, and whether it is closed.
fn listed(answer: &PlaylistAnswer) -> (Vec<String>, bool) {
    match answer {
        PlaylistAnswer::Playlist(text) => (
            text.lines()
                .filter(|l| l.starts_with("seg"))
                .map(str::to_string)
                .collect(),
            text.contains("#EXT-X-ENDLIST"),
        ),
        other => panic!("no playlist: {other:?}"),
    }
}

fn assignments(out: &[Publish]) -> Vec<(String, Value)> {
    out.iter()
        .filter(|p| p.topic.ends_with("/jobs"))
        .map(|p| (p.topic.clone(), serde_json::from_slice(&p.payload).unwrap()))
        .collect()
}

fn fences(out: &[Publish]) -> Vec<String> {
    out.iter()
        .filter(|p| p.topic.ends_with("/cancel"))
        .filter(|p| serde_json::from_slice::<Value>(&p.payload).is_ok_and(|v| v["fenced"] == true))
        .map(|p| p.topic.clone())
        .collect()
}

const SW: &[&str] = &["libx264"];

#[test]
fn first_in_first_out_one_job_per_free_slot() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let ids: Vec<Uuid> = (0..5).map(|i| r.submit(&format!("{i}.mkv")).0).collect();
    let states: Vec<JobState> = ids.iter().map(|id| r.job(*id).state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Assigned,
            JobState::Assigned,
            JobState::Queued,
            JobState::Queued,
            JobState::Queued
        ]
    );
    assert_ne!(r.job(ids[0]).worker_id, r.job(ids[1]).worker_id);
    let w0 = r.job(ids[0]).worker_id.unwrap();
    r.status(ids[0], &w0, "processing", 1, json!({}));
    r.segments(ids[0], &w0, 1, &[0, 1]);
    let out = r.status(
        ids[0],
        &w0,
        "completed",
        1,
        json!({"progress": 100, "segments_done": 2}),
    );
    assert_eq!(r.job(ids[0]).state, JobState::Completed);
    // The next in line goes to the worker that became free.
    assert_eq!(
        assignments(&out)[0].0,
        format!("transcode/workers/{w0}/jobs")
    );
    assert_eq!(assignments(&out)[0].1["job_id"], json!(ids[2]));
    assert_eq!(r.job(ids[3]).state, JobState::Queued);
}

#[test]
fn a_lost_worker_s_job_resumes_elsewhere_after_its_last_segment() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, out) = r.submit("movie.mkv");
    assert_eq!(assignments(&out)[0].1["attempt"], 1);
    r.worker("b", SW, &[]);
    r.status(
        id,
        "a",
        "processing",
        1,
        json!({"segments_done": 3, "resume_time": 12.0, "stream_url": "http://a/hls"}),
    );
    r.segments(id, "a", 1, &[0, 1, 2]);
    let now = r.now;
    let out = r.core.on_availability("a", b"offline", now).unwrap();
    let sent = assignments(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0, "transcode/workers/b/jobs");
    assert_eq!(sent[0].1["attempt"], 2);
    // Nobody watched: the run starts at the first segment, whose holder is
    // gone, on the grid the first run decided; the job's own start time.
    assert_eq!(sent[0].1["start_time"], 0.0);
    assert_eq!(sent[0].1["segment_offset"], Value::Null);
    assert_eq!(sent[0].1["grid"]["segment_frames"], 120);
    let job = r.job(id);
    assert_eq!(
        (job.state, job.failures, job.workers.clone()),
        (JobState::Assigned, 1, vec!["a".into(), "b".into()])
    );
    assert_eq!(job.stream_url, None, "the dead worker's URL is gone");
    // The old worker's late status is stale: it is told to stop.
    let out = r.status(id, "a", "processing", 1, json!({}));
    assert_eq!(fences(&out), vec!["transcode/workers/a/cancel"]);
}

#[test]
fn the_replacement_run_starts_where_the_viewer_is_and_fills_in_after() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.worker("b", SW, &[]);
    r.status(id, "a", "processing", 1, json!({}));
    assert_eq!(r.playlist(id), PlaylistAnswer::NotYet(1));
    r.segments(id, "a", 1, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(listed(&r.playlist(id)).0.len(), 6);
    // The player fetched up to segment 3 through us; a served segment 2.
    let now = r.now;
    assert!(matches!(
        r.core.segment_location(id, 3, now),
        SegmentAnswer::Redirect(url) if url == format!("http://10.0.0.2:8080/hls/{id}/seg3.ts")
    ));
    r.status(id, "a", "processing", 1, json!({"served_segment": 2}));
    let out = r.core.on_availability("a", b"offline", now).unwrap();
    let sent = assignments(&out);
    assert_eq!(sent[0].0, "transcode/workers/b/jobs");
    assert_eq!(sent[0].1["segment_offset"], 3, "{:?}", sent[0].1);
    assert_eq!(sent[0].1["segment_count"], Value::Null, "to the end");
    // Meanwhile a request for a lost segment waits; nothing is dropped.
    assert_eq!(r.core.segment_location(id, 4, now), SegmentAnswer::Wait);
    assert_eq!(listed(&r.playlist(id)).0.len(), 6);

    r.status(id, "b", "processing", 2, json!({}));
    r.segments(id, "b", 2, &[3, 4, 5, 6, 7]);
    assert_eq!(listed(&r.playlist(id)).0.len(), 8);
    let out = r.status(id, "b", "completed", 2, json!({"segments_done": 8}));
    // Segments 0..3 died with `a`: a run fills them in, counted as no
    // failure, then the job completes.
    let sent = assignments(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(
        (
            sent[0].1["segment_offset"].clone(),
            sent[0].1["segment_count"].clone()
        ),
        (Value::Null, json!(3))
    );
    let job = r.job(id);
    assert_eq!(
        (job.state, job.failures, job.attempt),
        (JobState::Assigned, 1, 3)
    );
    r.segments(id, "b", 3, &[0, 1, 2]);
    r.status(id, "b", "completed", 3, json!({"segments_done": 3}));
    let job = r.job(id);
    assert_eq!(job.state, JobState::Completed);
    let (uris, ended) = listed(&r.playlist(id));
    assert_eq!(uris.len(), 8);
    assert!(ended);
    assert!(matches!(
        r.core.segment_location(id, 0, now),
        SegmentAnswer::Redirect(_)
    ));
    assert_eq!(r.core.segment_location(id, 8, now), SegmentAnswer::NotFound);
    // All of it survives a restart of the orchestrator.
    let mut r = r.restart();
    r.worker("b", SW, &[]);
    assert_eq!(listed(&r.playlist(id)), (uris, true));
}

#[test]
fn a_watched_job_whose_holder_is_lost_is_encoded_again_for_the_viewer() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0, 1, 2]);
    r.status(id, "a", "completed", 1, json!({"segments_done": 3}));
    assert_eq!(r.job(id).state, JobState::Completed);
    r.worker("b", SW, &[]);
    let now = r.now;
    r.core.on_availability("a", b"offline", now).unwrap();
    // Nobody watches: nothing runs.
    r.advance(11);
    r.worker("b", SW, &[]);
    let now = r.now;
    assert!(assignments(&r.core.tick(now)).is_empty());
    // A viewer asks for segment 1: it waits, and a run makes it again.
    assert_eq!(r.core.segment_location(id, 1, now), SegmentAnswer::Wait);
    let out = r.core.tick(now);
    let sent = assignments(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0, "transcode/workers/b/jobs");
    assert_eq!(sent[0].1["segment_offset"], 1);
    // The playlist stays complete while it runs.
    assert!(listed(&r.playlist(id)).1);
    r.segments(id, "b", 2, &[1, 2]);
    r.status(id, "b", "completed", 2, json!({"segments_done": 3}));
    r.segments(id, "b", 3, &[0]);
    r.status(id, "b", "completed", 3, json!({"segments_done": 1}));
    let job = r.job(id);
    assert_eq!((job.state, job.failures), (JobState::Completed, 0));
}

#[test]
fn a_run_none_of_whose_segments_could_be_taken_is_a_failed_run() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    // Every report was refused (say, a grid the orchestrator rejects).
    r.status(id, "a", "completed", 1, json!({"segments_done": 5}));
    assert_eq!(r.job(id).failures, 0, "its reports may still be coming");
    r.advance(4);
    r.worker("a", SW, &[]);
    let now = r.now;
    r.core.tick(now);
    let job = r.job(id);
    assert_eq!((job.failures, job.attempt), (1, 2), "{job:?}");
}

#[test]
fn a_run_that_starts_at_the_end_tells_where_the_job_ends() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0, 1]);
    // The worker was away when its run reached the end of the source: its
    // `completed` never counted, and the job's length is unknown.
    let now = r.now;
    r.core.on_availability("a", b"offline", now).unwrap();
    r.worker("a", SW, &[]);
    let job = r.job(id);
    assert_eq!(
        (job.attempt, job.run_from, job.run_to),
        (2, 2, None),
        "{job:?}"
    );
    // The next run starts past the end: the worker says so, and the job is
    // complete, not failed.
    r.status(id, "a", "completed", 2, json!({"segments_done": 2}));
    let job = r.job(id);
    assert_eq!(
        (job.state, job.total_segments, job.failures),
        (JobState::Completed, Some(2), 1),
        "{job:?}"
    );
    assert!(listed(&r.playlist(id)).1);
}

#[test]
fn lost_reports_are_made_good_by_an_inventory() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0]);
    // Segment 1's report was lost: 2 asks the worker for its inventory.
    let out = r.segments(id, "a", 1, &[2]);
    let asked: Vec<Value> = out
        .iter()
        .filter(|p| p.topic == "transcode/workers/a/outputs")
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect();
    assert_eq!(asked, vec![json!({"job_id": id, "action": "report"})]);
    r.report(id, "a", 1, &[0, 1, 2], true);
    assert_eq!(r.job(id).run_next, 3);
    assert_eq!(listed(&r.playlist(id)).0.len(), 3);
    // After our own reconnection every running job's worker is asked too.
    let now = r.now;
    let out = r.core.on_connected(now);
    assert!(out.iter().any(|p| p.topic == "transcode/workers/a/outputs"));
}

#[test]
fn a_heartbeat_that_overtakes_the_final_status_loses_no_run() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0, 1]);
    r.advance(3);
    // The run ended: the worker's heartbeat no longer lists the job, and it
    // arrives before the `completed` status.
    r.worker("a", SW, &[]);
    r.status(id, "a", "completed", 1, json!({"segments_done": 2}));
    let job = r.job(id);
    assert_eq!(
        (job.state, job.failures),
        (JobState::Completed, 0),
        "{job:?}"
    );
    r.advance(5);
    let now = r.now;
    r.core.tick(now);
    assert_eq!(r.job(id).state, JobState::Completed);
}

#[test]
fn a_completed_run_waits_for_its_last_reports() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0]);
    // The status overtook the report of segment 1.
    let out = r.status(id, "a", "completed", 1, json!({"segments_done": 2}));
    assert!(assignments(&out).is_empty());
    assert_eq!(r.job(id).state, JobState::Processing);
    // The worker's next heartbeat no longer lists the job: no lost run.
    r.advance(3);
    r.worker("a", SW, &[]);
    assert_eq!(r.job(id).failures, 0);
    assert_eq!(r.job(id).state, JobState::Processing);
    let out = r.segments(id, "a", 1, &[1]);
    assert_eq!(r.job(id).state, JobState::Completed, "{out:?}");
}

#[test]
fn bad_segment_reports_are_refused() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    let holder = r.job(id).worker_id.unwrap();
    let other = if holder == "a" { "b" } else { "a" };
    r.status(id, &holder, "processing", 1, json!({}));
    r.segments(id, &holder, 1, &[0]);
    let now = r.now;
    let grid = json!({"segment_frames": 120, "fps_num": 30, "fps_den": 1});
    let cases: Vec<(&str, Value)> = vec![
        // An unknown job.
        (
            &holder,
            json!({"worker_id": holder, "job_id": Uuid::new_v4(), "attempt": 1,
            "segments": [{"index": 1, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        // A worker that does not hold it.
        (
            other,
            json!({"worker_id": other, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        // Another worker's name on the holder's topic.
        (
            other,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        // An old attempt.
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 0,
            "segments": [{"index": 1, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        // Negative, absurd and missing durations.
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": -4.0}], "grid": grid, "encoding": "x"}),
        ),
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": 1e9}], "grid": grid, "encoding": "x"}),
        ),
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1}], "grid": grid, "encoding": "x"}),
        ),
        // Out of order: 2 before 1; and decreasing.
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 2, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 2, "duration": 4.0}, {"index": 1, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        // Another grid; an absurd index; garbage.
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": 4.0}], "grid": {"segment_frames": 100, "fps_num": 25, "fps_den": 1}, "encoding": "x"}),
        ),
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": u64::MAX, "duration": 4.0}], "grid": grid, "encoding": "x"}),
        ),
        (
            &holder,
            json!({"worker_id": holder, "job_id": id, "attempt": 1,
            "segments": [{"index": 1, "duration": 4.0}], "grid": {"segment_frames": 0, "fps_num": 0, "fps_den": 0}, "encoding": "x"}),
        ),
        (&holder, json!("not an object")),
    ];
    for (topic_worker, payload) in cases {
        let out = r
            .core
            .on_segments(topic_worker, payload.to_string().as_bytes(), now);
        // At most a request for the worker's inventory (a report skipped
        // one: it may have been lost).
        assert!(
            out.iter()
                .all(|p| p.topic == format!("transcode/workers/{topic_worker}/outputs")),
            "{payload}: {out:?}"
        );
        assert_eq!(listed(&r.playlist(id)).0, vec!["seg0.ts"], "{payload}");
    }
    assert_eq!(r.job(id).run_next, 1);
    // The right one goes through.
    r.segments(id, &holder, 1, &[1]);
    assert_eq!(listed(&r.playlist(id)).0.len(), 2);
}

#[test]
fn inventories_restore_and_withdraw_segments() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("movie.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.segments(id, "a", 1, &[0, 1, 2]);
    // `a` restarted: it lost segment 1 and says so.
    r.report(id, "a", 1, &[0, 2], true);
    let now = r.now;
    assert_eq!(r.core.segment_location(id, 1, now), SegmentAnswer::Wait);
    assert!(matches!(
        r.core.segment_location(id, 2, now),
        SegmentAnswer::Redirect(_)
    ));
    assert_eq!(listed(&r.playlist(id)).0.len(), 3, "listed entries stay");
    // An inventory of a job we do not know: its output can go.
    let other = Uuid::new_v4();
    let out = r.report(other, "a", 1, &[0], true);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, "transcode/workers/a/outputs");
    let cmd: Value = serde_json::from_slice(&out[0].payload).unwrap();
    assert_eq!(cmd, json!({"job_id": other, "action": "delete"}));
}

#[test]
fn failures_by_kind() {
    struct Case {
        kind: &'static str,
        state: JobState,
        failures: u32,
    }
    let cases = [
        Case {
            kind: "input",
            state: JobState::Failed,
            failures: 0,
        },
        // Busy: back in the queue, not asked again before its next heartbeat.
        Case {
            kind: "busy",
            state: JobState::Queued,
            failures: 0,
        },
        Case {
            kind: "worker",
            state: JobState::Assigned,
            failures: 1,
        },
    ];
    for case in cases {
        let mut r = Rig::new();
        r.worker("a", SW, &[]);
        let (id, _) = r.submit("x.mkv");
        r.status(
            id,
            "a",
            "failed",
            1,
            json!({"error": "boom", "error_kind": case.kind}),
        );
        let job = r.job(id);
        assert_eq!(
            (job.state, job.failures),
            (case.state, case.failures),
            "{}",
            case.kind
        );
    }
    // Three failed runs: failed for good, with the reason.
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    for attempt in 1..=3 {
        r.status(
            id,
            "a",
            "failed",
            attempt,
            json!({"error": "encoder crashed", "error_kind": "worker"}),
        );
    }
    let job = r.job(id);
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("encoder crashed"));
}

#[test]
fn stalled_assignments_move_and_the_old_worker_is_fenced() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.worker("b", SW, &[]);
    r.advance(21);
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let now = r.now;
    let out = r.core.tick(now);
    assert_eq!(fences(&out), vec!["transcode/workers/a/cancel"]);
    assert_eq!(r.job(id).worker_id.as_deref(), Some("b"));
    // `a` comes back saying it runs the job: fenced again.
    let out = r.worker("a", SW, &[id]);
    assert_eq!(fences(&out), vec!["transcode/workers/a/cancel"]);
}

#[test]
fn a_restart_keeps_what_runs_and_requeues_what_does_not() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let (kept, _) = r.submit("kept.mkv");
    let (lost, _) = r.submit("lost.mkv");
    let (waiting, _) = r.submit("waiting.mkv");
    let a = r.job(kept).worker_id.unwrap();
    let b = r.job(lost).worker_id.unwrap();
    r.status(kept, &a, "processing", 1, json!({}));
    r.status(lost, &b, "processing", 1, json!({}));
    let mut r = r.restart();
    assert_eq!(r.job(waiting).state, JobState::Queued);
    assert_eq!(r.job(kept).state, JobState::Processing);
    r.advance(5);
    // `a` still runs its job; `b` restarted and runs nothing: once that is
    // still so after the grace (a heartbeat can overtake a final status).
    r.worker(&a, SW, &[kept]);
    r.worker(&b, SW, &[]);
    assert_eq!(r.job(lost).attempt, 1, "not on the first heartbeat");
    r.advance(3);
    r.worker(&a, SW, &[kept]);
    r.worker(&b, SW, &[]);
    assert_eq!(r.job(kept).state, JobState::Processing);
    assert_eq!(r.job(kept).attempt, 1);
    let lost_job = r.job(lost);
    assert_eq!(lost_job.attempt, 2, "{lost_job:?}");
    assert_eq!(lost_job.worker_id.as_deref(), Some(b.as_str()));
    assert_eq!(
        r.job(waiting).state,
        JobState::Queued,
        "FIFO: behind the requeued job"
    );
}

#[test]
fn workers_that_never_come_back_lose_their_jobs_after_the_grace() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    let mut r = r.restart();
    let now = r.now;
    r.core.tick(now);
    assert_eq!(r.job(id).state, JobState::Processing, "within the grace");
    r.advance(11);
    let now = r.now;
    r.core.tick(now);
    assert_eq!(r.job(id).state, JobState::Queued);
}

#[test]
fn cancel_reaches_the_worker_and_is_final() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    let now = r.now;
    let (job, out) = r.core.cancel(id, now).unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(out.iter().any(|p| p.topic == "transcode/workers/a/cancel"));
    assert!(matches!(r.core.cancel(id, now), Err(JobError::Conflict(_))));
    assert!(matches!(
        r.core.cancel(Uuid::new_v4(), now),
        Err(JobError::NotFound(_))
    ));
    // The worker's late `processing` is fenced.
    let out = r.status(id, "a", "processing", 1, json!({}));
    assert_eq!(fences(&out).len(), 1);
    assert_eq!(r.job(id).state, JobState::Cancelled);
}

#[test]
fn a_cancelled_run_holds_its_worker_until_its_heartbeat_lets_go() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (first, out) = r.submit("x.mkv");
    assert_eq!(assignments(&out).len(), 1);
    r.status(first, "a", "processing", 1, json!({}));
    r.worker("a", SW, &[first]);
    let now = r.now;
    let (_, out) = r.core.cancel(first, now).unwrap();
    assert!(assignments(&out).is_empty());
    // The worker is still stopping FFmpeg: a new job waits for it.
    let (second, out) = r.submit("y.mkv");
    assert!(
        assignments(&out).is_empty(),
        "sent to a worker still stopping"
    );
    assert!(assignments(&r.worker("a", SW, &[first])).is_empty());
    assert_eq!(r.job(second).state, JobState::Queued);
    // Its heartbeat without the cancelled run frees it.
    let out = r.worker("a", SW, &[]);
    assert_eq!(assignments(&out).len(), 1);
    assert_eq!(r.job(second).worker_id.as_deref(), Some("a"));
}

#[test]
fn resubmits_and_conflicts() {
    let mut r = Rig::new();
    let id = Uuid::new_v4();
    let req = |bitrate: &str| -> JobRequest {
        wire::decode(
            json!({"job_id": id, "source_path": "a.mkv", "resolution": "720p", "bitrate": bitrate})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    let now = r.now;
    r.core.submit(req("1M"), now).unwrap();
    let (again, out) = r.core.submit(req("1M"), now).unwrap();
    assert_eq!(again.job_id, id);
    assert!(out.is_empty());
    assert!(matches!(
        r.core.submit(req("2M"), now),
        Err(JobError::Conflict(_))
    ));
}

#[test]
fn finished_jobs_are_pruned_and_their_topic_cleared() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.segments(id, "a", 1, &[0]);
    r.status(
        id,
        "a",
        "completed",
        1,
        json!({"progress": 100, "segments_done": 1}),
    );
    assert_eq!(r.job(id).state, JobState::Completed);
    r.advance(61);
    r.worker("a", SW, &[]);
    let now = r.now;
    let out = r.core.tick(now);
    assert!(out
        .iter()
        .any(|p| p.topic == format!("transcode/jobs/{id}/status")
            && p.payload.is_empty()
            && p.retain));
    // Its holder deletes the output.
    assert!(out.iter().any(|p| p.topic == "transcode/workers/a/outputs"
        && serde_json::from_slice::<Value>(&p.payload).is_ok_and(|v| v["action"] == "delete")));
    assert!(r.core.job(id).is_none());
    let r = r.restart();
    assert!(r.core.job(id).is_none(), "gone from the store too");
}

#[test]
fn own_and_foreign_statuses_change_nothing() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    let before = r.job(id);
    let now = r.now;
    let cases: Vec<Vec<u8>> = vec![
        json!({"job_id": id, "state": "queued", "progress": 0, "fps": 0}).to_string().into_bytes(),
        json!({"job_id": id, "state": "completed", "progress": 100, "fps": 0}).to_string().into_bytes(),
        json!({"job_id": id, "state": "completed", "progress": 100, "fps": 0, "worker_id": "a", "attempt": 7}).to_string().into_bytes(),
        json!({"job_id": Uuid::new_v4(), "state": "completed", "worker_id": "a", "attempt": 1}).to_string().into_bytes(),
        b"garbage".to_vec(),
        Vec::new(),
    ];
    for payload in cases {
        r.core.on_status(&id.to_string(), &payload, now);
        assert_eq!(r.job(id), before, "{}", String::from_utf8_lossy(&payload));
    }
    r.core.on_status("not-a-uuid", b"{}", now);
}

#[test]
fn home_assistant_configs_follow_the_workers() {
    let Rig {
        mut core,
        now,
        _dir,
    } = Rig::with_ha(true);
    let configs = |out: &[Publish]| -> Vec<(String, bool)> {
        out.iter()
            .filter(|p| p.topic.starts_with("homeassistant/device/"))
            .map(|p| (p.topic.clone(), p.payload.is_empty()))
            .collect()
    };
    let on_connect = core.on_connected(now);
    assert_eq!(
        configs(&on_connect),
        vec![(
            "homeassistant/device/transcode_orchestrator/config".to_string(),
            false
        )]
    );

    let hb = json!({"worker_id": "w1", "ip_address": "10.0.0.2", "port": 8080, "os": "linux",
        "hw_accel": [], "status": "idle", "cpu_usage": 5, "encoders": ["libx264"]});
    let first = core
        .on_heartbeat("w1", hb.to_string().as_bytes(), false, now)
        .unwrap();
    assert_eq!(
        configs(&first),
        vec![(
            "homeassistant/device/transcode_worker_w1/config".to_string(),
            false
        )]
    );
    let again = core
        .on_heartbeat("w1", hb.to_string().as_bytes(), false, now)
        .unwrap();
    assert!(configs(&again).is_empty(), "announced once");

    let replay = core.on_ha_status(b"online");
    assert_eq!(configs(&replay).len(), 2);
    assert!(replay.iter().all(|p| p.retain));
    assert!(core.on_ha_status(b"offline").is_empty());

    let gone = core.on_heartbeat("w1", b"", true, now).unwrap();
    assert_eq!(
        configs(&gone),
        vec![(
            "homeassistant/device/transcode_worker_w1/config".to_string(),
            true
        )]
    );
}

#[test]
fn home_assistant_off_publishes_no_discovery() {
    let mut r = Rig::new();
    let now = r.now;
    assert!(r.core.ha_status_topic().is_none());
    let out = r.core.on_connected(now);
    assert!(out.iter().all(|p| !p.topic.starts_with("homeassistant/")));
    let out = r.worker("w1", SW, &[]);
    assert!(out.iter().all(|p| !p.topic.starts_with("homeassistant/")));
}

#[test]
fn a_busy_worker_is_asked_again_only_after_its_next_heartbeat() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    for _ in 0..5 {
        r.status(
            id,
            "a",
            "failed",
            r.job(id).attempt,
            json!({"error": "busy", "error_kind": "busy"}),
        );
    }
    let job = r.job(id);
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Queued, 1),
        "no assign/refuse loop"
    );
    r.worker("a", SW, &[]);
    assert_eq!(r.job(id).state, JobState::Assigned);
    assert_eq!(r.job(id).attempt, 2);
}

#[test]
fn a_run_lost_before_it_started_is_no_failure() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    let now = r.now;
    r.core.on_availability("a", b"offline", now).unwrap();
    let job = r.job(id);
    assert_eq!((job.state, job.failures), (JobState::Queued, 0));
}

#[test]
fn a_stalled_run_moves_and_its_worker_is_fenced() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.worker("b", SW, &[]);
    r.status(id, "a", "processing", 1, json!({}));
    // Both keep heartbeating, `a` keeps listing the job, but no status comes.
    for _ in 0..31 {
        r.advance(1);
        r.worker("a", SW, &[id]);
        r.worker("b", SW, &[]);
        let now = r.now;
        let out = r.core.tick(now);
        if r.job(id).worker_id.as_deref() == Some("b") {
            assert_eq!(fences(&out), vec!["transcode/workers/a/cancel"]);
            let fence: Value = serde_json::from_slice(
                &out.iter()
                    .find(|p| p.topic.ends_with("/cancel"))
                    .unwrap()
                    .payload,
            )
            .unwrap();
            assert_eq!(fence["attempt"], 1);
            assert_eq!(r.job(id).failures, 1);
            return;
        }
    }
    panic!("the stalled job never moved: {:?}", r.job(id));
}

#[test]
fn our_own_outage_is_nobody_else_s_failure() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    // Our connection is down for a minute: no heartbeats reach us, and the
    // app does not tick. Then we reconnect.
    r.advance(60);
    let now = r.now;
    r.core.on_connected(now);
    r.advance(1);
    let now = r.now;
    r.core.tick(now);
    let job = r.job(id);
    assert_eq!(
        (job.state, job.failures),
        (JobState::Processing, 0),
        "{job:?}"
    );
}

#[test]
fn absurd_worker_timestamps_do_not_panic() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.status(id, "a", "processing", 1, json!({"timestamp": u64::MAX}));
    r.worker("a", SW, &[]);
    assert_eq!(r.job(id).state, JobState::Processing);
}

mod mesh;

#[test]
fn a_heartbeat_that_recalls_a_finished_run_does_not_lose_it() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    r.status(id, "a", "processing", 1, json!({}));
    r.advance(5);
    // The run ended; its `completed` is still on its way, behind heartbeats
    // that no longer list it but recall it.
    let recall = |r: &mut Rig| {
        let hb = json!({"worker_id": "a", "ip_address": "10.0.0.2", "port": 8080, "os": "linux",
            "hw_accel": [], "status": "idle", "cpu_usage": 5, "max_jobs": 1, "encoders": SW,
            "active_jobs": [], "interval_s": 1, "timestamp": r.now.ms,
            "finished_runs": [{"job_id": id, "attempt": 1, "state": "completed"}]});
        let now = r.now;
        r.core
            .on_heartbeat("a", hb.to_string().as_bytes(), false, now)
            .unwrap()
    };
    for _ in 0..10 {
        recall(&mut r);
        r.advance(1);
        let now = r.now;
        r.core.tick(now);
    }
    let job = r.job(id);
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Processing, 1),
        "{job:?}"
    );
    // Without the recall the run is lost after the grace.
    r.advance(1);
    r.worker("a", SW, &[]);
    r.advance(4);
    r.worker("a", SW, &[]);
    assert_eq!(r.job(id).attempt, 2);
}

#[test]
fn a_store_that_cannot_be_written_takes_back_the_event_and_pauses_dispatch() {
    use std::sync::atomic::Ordering;
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (running, _) = r.submit("running.mkv");
    r.status(running, "a", "processing", 1, json!({}));
    r.core.store.full.store(true, Ordering::Relaxed);
    // A new job: refused with a sentence, not kept.
    let req: JobRequest =
        wire::decode(br#"{"source_path":"new.mkv","resolution":"720p","bitrate":"1M"}"#).unwrap();
    let now = r.now;
    match r.core.submit(req.clone(), now) {
        Err(JobError::Unavailable(why)) => assert!(why.contains("No space left"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.core.jobs().len(), 1);
    // The worker's `completed` cannot be written: nothing of it stays or
    // goes out.
    let out = r.status(running, "a", "completed", 1, json!({"segments_done": 3}));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(r.job(running).state, JobState::Processing);
    assert!(r.core.store_fault().is_some());
    // Nothing is dispatched while it lasts.
    r.worker("b", SW, &[]);
    let now = r.now;
    let out = r.core.tick(now);
    assert!(out.iter().all(|p| !p.topic.ends_with("/jobs")), "{out:?}");
    assert!(!r.core.take_resync());
    // Room again: the next tick finds out, and asks for a resync.
    r.core.store.full.store(false, Ordering::Relaxed);
    let now = r.now;
    r.core.tick(now);
    assert!(r.core.store_fault().is_none());
    assert!(r.core.take_resync());
    let now = r.now;
    let (job, _) = r.core.submit(req, now).expect("taken again");
    let r = r.restart();
    assert_eq!(r.job(job.job_id).state, JobState::Assigned, "stored");
}

#[test]
fn an_unacknowledged_assignment_is_sent_again_after_every_connection() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, out) = r.submit("x.mkv");
    let orders = |out: &[Publish]| {
        out.iter()
            .filter(|p| p.topic == "transcode/workers/a/jobs")
            .count()
    };
    assert_eq!(orders(&out), 1);
    // Our own reconnection: sent again.
    let now = r.now;
    assert_eq!(orders(&r.core.on_connected(now)), 1);
    // After our restart, the worker is heard of again (it may have lost
    // the order with a broker that restarted too).
    let mut r = r.restart();
    let out = r.worker("a", SW, &[]);
    assert_eq!(orders(&out), 1, "{out:?}");
    assert_eq!(r.job(id).attempt, 1, "the same run, not a new one");
    // Acknowledged (processing): never again.
    r.status(id, "a", "processing", 1, json!({}));
    let now = r.now;
    assert_eq!(orders(&r.core.on_connected(now)), 0);
}

#[test]
fn a_finished_job_runs_again_as_a_new_job_and_a_running_one_does_not() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit("x.mkv");
    let now = r.now;
    assert!(matches!(
        r.core.run_again(id, now),
        Err(JobError::Conflict(why)) if why.contains("cancel it first")
    ));
    r.core.cancel(id, now).unwrap();
    let (again, out) = r.core.run_again(id, now).unwrap();
    assert_ne!(again.job_id, id);
    assert_eq!(again.source_path, "x.mkv");
    assert!(!out.is_empty(), "queued and dispatched");
    assert_eq!(
        r.job(id).state,
        JobState::Cancelled,
        "the old one stays as it ended"
    );
    assert!(matches!(
        r.core.run_again(Uuid::new_v4(), now),
        Err(JobError::NotFound(_))
    ));
}
