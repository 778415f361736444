//! A job as its viewer meets it, beside bare FFmpeg running the worker's
//! own arguments on the same machine: the time from submitting a job to a
//! playlist on `/stream` that lists a segment, and the whole job's time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use transcode_common::validate::{Bitrate, Resolution};
use transcode_tests::{http_raw, wait_until, System};
use transcode_worker::command::{self, EncodeSpec, RunWindow};
use transcode_worker::ffprobe::{self, SourceInfo};
use transcode_worker::media::Source;
use transcode_worker::probe::Family;

use crate::median;

/// The film both sides transcode: 1080p at 30 fps with stereo AAC.
const FILM_SECONDS: u32 = 60;
/// How often a playlist is looked at for the first segment, and a job for
/// its end: far below what is measured, and seldom enough that the looking
/// takes no CPU the encode would miss.
const LOOK_FIRST: Duration = Duration::from_millis(5);
const LOOK_END: Duration = Duration::from_millis(25);
const ROUNDS: usize = 5;

/// The worker's own FFmpeg arguments for the whole film to 720p at 2M, on
/// a grid of the worker's default segment length, led by short segments or
/// not.
fn bare_args(film: &Path, info: &SourceInfo, out: &Path, short_lead: bool) -> Vec<String> {
    let input = Source::Local(film.to_path_buf()).input();
    let grid = RunWindow::grid_for(info.rate, 4, short_lead);
    let spec = EncodeSpec {
        input: &input,
        out_dir: out,
        window: RunWindow {
            grid,
            first_segment: 0,
            segment_count: None,
            job_first_frame: 0,
            video_start: info.video_start,
            variable_rate: info.variable_rate,
            sample_rate: info.sample_rate.unwrap_or(48_000),
        },
        size: command::output_size(
            (info.width, info.height),
            Resolution::Named(720).bounding_box(),
        ),
        bitrate: Bitrate(2_000_000),
        encoder: "libx264",
        family: Family::Software,
        has_audio: info.has_audio,
        threads: 0,
    };
    command::ffmpeg_args(&spec)
}

/// Bare FFmpeg, started in a fresh folder.
struct Bare {
    child: Child,
    playlist: PathBuf,
}

impl Bare {
    fn start(args: &[String], out: &Path) -> Bare {
        let _ = std::fs::remove_dir_all(out);
        std::fs::create_dir_all(out).expect("output folder");
        let child = Command::new("ffmpeg")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg runs");
        Bare {
            child,
            playlist: out.join(command::PLAYLIST),
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lists_a_segment(text: &str) -> bool {
    text.contains("#EXTINF")
}

/// Waits until `f` holds, looking every `every`.
fn poll(what: &str, every: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

fn probe(film: &Path) -> SourceInfo {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let input = Source::Local(film.to_path_buf()).input();
    runtime
        .block_on(ffprobe::probe("ffprobe", &input, Duration::from_secs(30)))
        .expect("the film probes")
}

fn request() -> serde_json::Value {
    serde_json::json!({"source_path": "film.mkv", "resolution": "720p", "bitrate": "2M"})
}

/// Waits until the worker took back its slot after a job.
fn wait_idle(sys: &System) {
    wait_until(Duration::from_secs(30), "the worker to be idle", || {
        sys.workers()
            .iter()
            .all(|w| {
                let hb = &w["heartbeat"];
                hb["status"] == "idle" && hb["active_jobs"].as_array().is_none_or(Vec::is_empty)
            })
            .then_some(())
    });
}

fn ratio_line(what: &str, ours: f64, floor: f64, floor_what: &str, goal: f64) {
    let ratio = ours / floor.max(1e-9);
    println!(
        "{what:<52} {ours:>8.3} s   {floor_what} {floor:>7.3} s   ×{ratio:.2} (goal ≤ ×{goal:.2})   {}",
        if ratio <= goal { "within" } else { "OVER" }
    );
}

/// Submit to a `/stream` playlist that lists a segment, beside bare FFmpeg
/// (the worker's arguments, 4 s segments) to its own playlist listing one;
/// then the whole job beside bare FFmpeg's whole run with the job's own
/// arguments. Alternating, median of 5 rounds each.
pub fn first_segment_and_whole_job() {
    let sys = System::new();
    let film = sys.dir.path().join("media/film.mkv");
    transcode_tests::decode::make_film(&film, FILM_SECONDS);
    let info = probe(&film);
    let bare_dir = sys.dir.path().join("bare");
    let o = sys.start_orchestrator();
    let w = sys.start_online("w", &[]);
    let cpu = || {
        (
            crate::cpu_seconds(o.pid().as_raw()),
            crate::cpu_seconds(w.pid().as_raw()),
        )
    };

    // Both read the film from the page cache.
    let _ = std::fs::read(&film);
    let (mut bare_first, mut ours_first) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let args = bare_args(&film, &info, &bare_dir, false);
        let t = Instant::now();
        let bare = Bare::start(&args, &bare_dir);
        poll("bare FFmpeg's first segment", LOOK_FIRST, || {
            std::fs::read_to_string(&bare.playlist).is_ok_and(|t| lists_a_segment(&t))
        });
        bare_first.push(t.elapsed().as_secs_f64());
        drop(bare);

        let t = Instant::now();
        let id = sys.submit(&request());
        let path = format!("/stream/{id}/index.m3u8");
        poll("the job's first segment on /stream", LOOK_FIRST, || {
            let (code, _, body) = http_raw(sys.http_port, &path);
            code == 200 && lists_a_segment(&String::from_utf8_lossy(&body))
        });
        ours_first.push(t.elapsed().as_secs_f64());
        transcode_tests::http_json("DELETE", &sys.api(&format!("/api/jobs/{id}")), None);
        sys.wait_job(&id, "cancelled", Duration::from_secs(30));
        wait_idle(&sys);
        eprintln!(
            "  round {round}: first segment {:.3} s, bare FFmpeg {:.3} s",
            ours_first[round - 1],
            bare_first[round - 1]
        );
    }
    ratio_line(
        "first segment on /stream, 1080p→720p 2M (median)",
        median(ours_first),
        median(bare_first),
        "bare FFmpeg (4 s segments)",
        0.6,
    );

    let (mut bare_whole, mut ours_whole) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let args = bare_args(&film, &info, &bare_dir, true);
        let t = Instant::now();
        let mut bare = Bare::start(&args, &bare_dir);
        poll("bare FFmpeg to end", LOOK_END, || {
            bare.child
                .try_wait()
                .expect("bare FFmpeg runs")
                .inspect(|status| assert!(status.success(), "bare FFmpeg failed: {status}"))
                .is_some()
        });
        bare_whole.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let (o0, w0) = cpu();
        let id = sys.submit(&request());
        let url = sys.api(&format!("/api/jobs/{id}"));
        poll("the job to complete", LOOK_END, || {
            let job = transcode_tests::get_json(&url).unwrap_or_default();
            assert!(
                !["failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")),
                "{job}"
            );
            job["state"] == "completed"
        });
        ours_whole.push(t.elapsed().as_secs_f64());
        let (o1, w1) = cpu();
        let job = sys.job(&id);
        wait_idle(&sys);
        eprintln!(
            "  round {round}: whole job {:.3} s, bare FFmpeg {:.3} s; CPU: orchestrator {:.2} s, worker {:.2} s (without FFmpeg); job {}",
            ours_whole[round - 1],
            bare_whole[round - 1],
            o1 - o0,
            w1 - w0,
            job
        );
    }
    ratio_line(
        &format!("whole job, {FILM_SECONDS} s 1080p→720p 2M (median)"),
        median(ours_whole),
        median(bare_whole),
        "bare FFmpeg",
        1.02,
    );
}
