//! Split jobs: chunks to every free worker, statuses only from the holder,
//! lost chunks run again, cancel stops them all.

use super::*;

impl Rig {
    fn submit_mesh(&mut self, source: &str) -> (Uuid, Vec<Publish>) {
        self.submit_request(json!({"source_path": source, "resolution": "720p",
            "bitrate": "1M", "is_mesh_mode": true}))
    }

    fn chunk_status(
        &mut self,
        job_id: Uuid,
        worker: &str,
        attempt: u32,
        state: &str,
        extra: Value,
    ) -> Vec<Publish> {
        let payload = self.status_payload(job_id, worker, state, attempt, extra);
        let now = self.now;
        self.core
            .on_chunk_status(&job_id.to_string(), &attempt.to_string(), &payload, now)
    }

    /// The worker completes its chunk with `done` segments and gets the
    /// next one: (worker, segment_offset, segment_count, attempt).
    fn complete_chunk(
        &mut self,
        id: Uuid,
        worker: &str,
        attempt: u32,
        done: u64,
    ) -> (String, Value, Value, Value) {
        let out = self.chunk_status(
            id,
            worker,
            attempt,
            "completed",
            json!({"segments_done": done}),
        );
        let orders = chunk_orders(&out);
        assert_eq!(orders.len(), 1, "{orders:?}");
        orders[0].clone()
    }

    /// The first run's first segment, with the job's length by its probe.
    fn first_segment(
        &mut self,
        id: Uuid,
        worker: &str,
        attempt: u32,
        job_segments: u64,
    ) -> Vec<Publish> {
        let report = json!({"worker_id": worker, "job_id": id, "attempt": attempt,
            "segments": [{"index": 0, "duration": 4.0}], "encoding": "libx264 1280x720 1000k aac",
            "job_segments": job_segments,
            "grid": {"segment_frames": 120, "fps_num": 30, "fps_den": 1}});
        let now = self.now;
        self.core
            .on_segments(worker, report.to_string().as_bytes(), now)
    }

    /// (worker, attempt, first segment, end segment, state) of every chunk.
    fn chunks(&self, id: Uuid) -> Vec<(String, u32, u64, Option<u64>, JobState)> {
        let mut c: Vec<_> = self
            .job(id)
            .chunks
            .iter()
            .map(|c| {
                (
                    c.worker_id.clone(),
                    c.attempt,
                    c.first_segment,
                    c.end_segment,
                    c.state,
                )
            })
            .collect();
        c.sort_by_key(|c| c.1);
        c
    }
}

/// (worker, segment_offset, segment_count, attempt) of each assignment.
fn chunk_orders(out: &[Publish]) -> Vec<(String, Value, Value, Value)> {
    assignments(out)
        .into_iter()
        .map(|(topic, a)| {
            let worker = topic.split('/').nth(2).unwrap_or_default().to_string();
            assert_eq!(a["is_mesh_mode"], true);
            assert_eq!(a["encoder"], "libx264");
            (
                worker,
                a["segment_offset"].clone(),
                a["segment_count"].clone(),
                a["attempt"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_split_job_goes_to_every_free_worker_in_chunks_and_completes() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let (id, out) = r.submit_mesh("film.mkv");
    // The first chunk alone, short: the grid comes from its run.
    let orders = chunk_orders(&out);
    assert_eq!(orders.len(), 1, "{orders:?}");
    let (first, _, count, _) = orders[0].clone();
    assert_eq!(count, 2);
    let other = if first == "a" { "b" } else { "a" };
    r.chunk_status(id, &first, 1, "processing", json!({}));
    // The first segment is on the playlist, the grid and the length (20
    // segments) are known: the other worker takes the next chunk at once.
    let out = r.first_segment(id, &first, 1, 20);
    let orders = chunk_orders(&out);
    assert_eq!(
        orders,
        vec![(other.to_string(), json!(2), json!(4), json!(2))]
    );
    assert_eq!(r.job(id).state, JobState::Processing);
    r.chunk_status(id, other, 2, "processing", json!({"fps": 40}));
    let status = r.job(id).status(0);
    assert_eq!(status.worker_id, None);
    assert_eq!(status.chunks.map(|c| c.len()), Some(2));
    assert_eq!(r.job(id).fps, 70.0, "fps is the sum of the chunks'");

    // The first chunk ends; its worker takes the next one.
    r.segments(id, &first, 1, &[1]);
    let (worker, offset, _, _) = r.complete_chunk(id, &first, 1, 2);
    assert_eq!((worker.as_str(), offset), (first.as_str(), json!(6)));
    let (listed_now, ended) = listed(&r.playlist(id));
    assert_eq!((listed_now.len(), ended), (2, false));

    // The rest: every chunk reports and completes, the last runs to the
    // real end (18 segments, not the estimated 20).
    let mut pending: Vec<(String, u32, u64, Option<u64>)> = r
        .chunks(id)
        .into_iter()
        .filter(|c| c.4 == JobState::Assigned || c.4 == JobState::Processing)
        .map(|c| (c.0, c.1, c.2, c.3))
        .collect();
    let mut rounds = 0;
    while let Some((w, attempt, from, to)) = pending.pop() {
        rounds += 1;
        assert!(rounds < 20, "too many chunks: {:?}", r.chunks(id));
        let end = to.unwrap_or(18).min(18);
        let indices: Vec<u64> = (from..end).collect();
        r.segments(id, &w, attempt, &indices);
        let out = r.chunk_status(id, &w, attempt, "completed", json!({"segments_done": end}));
        for (worker, offset, count, attempt) in chunk_orders(&out) {
            let from = offset.as_u64().unwrap_or(0);
            let to = count.as_u64().map(|c| from + c);
            pending.insert(0, (worker, attempt.as_u64().unwrap() as u32, from, to));
        }
    }
    let job = r.job(id);
    assert_eq!(job.state, JobState::Completed, "{:?}", r.chunks(id));
    assert_eq!(job.total_segments, Some(18));
    let (listed_now, ended) = listed(&r.playlist(id));
    assert_eq!((listed_now.len(), ended), (18, true));
    assert_eq!(job.workers.len(), 2, "{:?}", job.workers);
    assert!(r.chunks(id).iter().all(|c| c.4 == JobState::Completed));
}

#[test]
fn chunk_statuses_only_from_the_chunk_s_worker() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit_mesh("film.mkv");
    r.chunk_status(id, "a", 1, "processing", json!({}));
    let before = r.job(id);
    // Another worker, a chunk that does not exist, the job's own topic.
    let cases = [
        r.chunk_status(id, "intruder", 1, "completed", json!({"segments_done": 2})),
        r.chunk_status(id, "a", 9, "completed", json!({"segments_done": 2})),
        r.status(id, "a", "completed", 1, json!({"segments_done": 2})),
    ];
    for out in cases {
        assert!(assignments(&out).is_empty());
    }
    let now = r.now;
    assert!(r
        .core
        .on_chunk_status(&id.to_string(), "x", b"{}", now)
        .is_empty());
    assert!(r
        .core
        .on_chunk_status(&id.to_string(), "1", b"\x00garbage", now)
        .is_empty());
    let after = r.job(id);
    assert_eq!(after.chunks, before.chunks);
    assert_eq!(after.state, JobState::Processing);
}

#[test]
fn a_lost_worker_s_chunk_runs_again_and_cancel_stops_every_chunk() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    r.worker("b", SW, &[]);
    let (id, out) = r.submit_mesh("film.mkv");
    let first = chunk_orders(&out)[0].0.clone();
    let other = if first == "a" { "b" } else { "a" };
    r.chunk_status(id, &first, 1, "processing", json!({}));
    r.first_segment(id, &first, 1, 40);
    r.chunk_status(id, other, 2, "processing", json!({}));
    r.segments(id, other, 2, &[2, 3]);
    // The other worker goes silent: its chunk is lost, counted.
    for _ in 0..12 {
        r.advance(1);
        r.worker(&first, SW, &[id]);
        r.chunk_status(id, &first, 1, "processing", json!({}));
        let now = r.now;
        r.core.tick(now);
    }
    let chunks = r.chunks(id);
    assert!(
        chunks
            .iter()
            .any(|c| c.0 == other && c.1 == 2 && c.4 == JobState::Failed),
        "{chunks:?}"
    );
    assert_eq!(r.job(id).failures, 1);
    // The first worker finishes its chunk and takes over the lost one from
    // its first missing segment (2 and 3 went with their holder).
    r.segments(id, &first, 1, &[1]);
    let (worker, offset, _, attempt) = r.complete_chunk(id, &first, 1, 2);
    assert_eq!((worker.as_str(), offset), (first.as_str(), json!(2)));
    let attempt = attempt.as_u64().unwrap() as u32;
    r.chunk_status(id, &first, attempt, "processing", json!({}));

    // Cancel reaches every worker running a chunk.
    let now = r.now;
    let (job, out) = r.core.cancel(id, now).unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(out
        .iter()
        .any(|p| p.topic == format!("transcode/workers/{first}/cancel")));
    assert!(job.chunks.iter().all(|c| !c.is_active()));
}

#[test]
fn a_job_keeps_its_running_chunks_and_the_latest_finished_ones() {
    let mut r = Rig::new();
    r.worker("a", SW, &[]);
    let (id, _) = r.submit_mesh("film.mkv");
    let mut job = r.job(id);
    job.chunks = (1..=60)
        .map(|attempt| {
            let mut c = crate::job::Chunk::new(attempt, "a", u64::from(attempt), None, 0);
            if attempt != 30 {
                c.state = JobState::Completed;
            }
            c
        })
        .collect();
    let now = r.now;
    r.core.mesh_sum_up(&mut job, now);
    let kept: Vec<u32> = job.chunks.iter().map(|c| c.attempt).collect();
    assert_eq!(kept.len(), 49, "{kept:?}");
    // The running one first, then the 48 newest finished ones.
    assert_eq!(kept[0], 30);
    assert!(kept[1..].iter().all(|a| *a >= 12), "{kept:?}");
}
