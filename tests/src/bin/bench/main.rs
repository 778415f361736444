//! Benchmarks of the promises that are about speed. Each figure is printed
//! beside its floor, measured in the same run on the same machine; nothing
//! here is a pass/fail test. Run with `./dev bench`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use transcode_tests::{bin, simulated_worker, wait_until, System};

struct Figure {
    what: &'static str,
    samples: Vec<Duration>,
    floor: Duration,
}

impl Figure {
    fn print(&self) {
        let mut s = self.samples.clone();
        s.sort();
        let median = s[s.len() / 2];
        let worst = s[s.len() - 1];
        println!(
            "{:<52} median {:>8.3} s   worst {:>8.3} s   floor {:>6.1} s   {}",
            self.what,
            median.as_secs_f64(),
            worst.as_secs_f64(),
            self.floor.as_secs_f64(),
            if worst <= self.floor {
                "within"
            } else {
                "OVER"
            }
        );
    }
}

fn probe_time() -> Figure {
    let worker = bin("transcode-worker");
    let samples = (0..5)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(&worker)
                .arg("probe")
                .stdin(Stdio::null())
                .output()
                .expect("probe runs");
            assert!(out.status.success());
            t.elapsed()
        })
        .collect();
    Figure {
        what: "hardware probe, whole command (no GPU)",
        samples,
        floor: Duration::from_secs(2),
    }
}

fn kill_to_offline() -> Figure {
    let sys = System::new();
    let _o = sys.start_orchestrator();
    let samples = (0..5)
        .map(|i| {
            let id = format!("victim{i}");
            let w = sys.start_worker(&id, &[]);
            sys.wait_online(&id, true, Duration::from_secs(30));
            let t = Instant::now();
            w.signal(Signal::SIGKILL);
            sys.wait_online(&id, false, Duration::from_secs(30));
            t.elapsed()
        })
        .collect();
    Figure {
        what: "SIGKILLed worker seen offline in /api/workers",
        samples,
        floor: Duration::from_secs(2),
    }
}

fn job_moves_after_a_worker_dies() -> Figure {
    let sys = System::new();
    transcode_tests::make_media(
        &sys.dir.path().join("media/film.mkv"),
        1280,
        720,
        120,
        false,
    );
    let _o = sys.start_orchestrator();
    let mut samples = Vec::new();
    let mut spare = sys.start_worker("spare-0", &[]);
    sys.wait_online("spare-0", true, Duration::from_secs(30));
    for i in 0..3 {
        let id = sys.submit(
            &serde_json::json!({"source_path": "film.mkv", "resolution": "720p", "bitrate": "1M"}),
        );
        let running = sys.wait_job(&id, "processing", Duration::from_secs(60));
        let holder = running["worker_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let next = format!("spare-{}", i + 1);
        let fresh = sys.start_worker(&next, &[]);
        sys.wait_online(&next, true, Duration::from_secs(30));
        // Kill whichever worker holds the job; the other one takes it.
        let (victim, survivor) = if holder == spare.name.trim_start_matches("worker-") {
            (spare, fresh)
        } else {
            (fresh, spare)
        };
        let t = Instant::now();
        victim.signal(Signal::SIGKILL);
        wait_until(
            Duration::from_secs(30),
            "the job processing elsewhere",
            || {
                let j = sys.job(&id);
                (j["state"] == "processing" && j["worker_id"] != holder.as_str()).then_some(())
            },
        );
        samples.push(t.elapsed());
        let _ = transcode_tests::http_json("DELETE", &sys.api(&format!("/api/jobs/{id}")), None);
        drop(victim);
        spare = survivor;
    }
    Figure {
        what: "SIGKILLed busy worker until its job processes elsewhere",
        samples,
        floor: Duration::from_secs(5),
    }
}

fn orchestrator_restart() -> Figure {
    let sys = System::new();
    let mut o = sys.start_orchestrator();
    let _a = sys.start_worker("a", &[]);
    sys.wait_online("a", true, Duration::from_secs(30));
    let mut samples = Vec::new();
    for _ in 0..3 {
        o.signal(Signal::SIGKILL);
        o.wait_exit(Duration::from_secs(5));
        let t = Instant::now();
        o = sys.start_orchestrator();
        sys.wait_online("a", true, Duration::from_secs(30));
        samples.push(t.elapsed());
    }
    Figure {
        what: "orchestrator restart until the worker is online again",
        samples,
        floor: Duration::from_secs(5),
    }
}

fn many_workers() -> Figure {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let samples = (0..3)
        .map(|_| {
            let sys = System::new();
            let _o = sys.start_orchestrator();
            let t = Instant::now();
            let tasks: Vec<_> = (0..150)
                .map(|i| runtime.spawn(simulated_worker(format!("sim-{i:03}"), sys.broker_port)))
                .collect();
            wait_until(Duration::from_secs(120), "150 workers online", || {
                let n = sys.workers().iter().filter(|w| w["online"] == true).count();
                (n == 150).then_some(())
            });
            let took = t.elapsed();
            tasks.iter().for_each(|t| t.abort());
            took
        })
        .collect();
    Figure {
        what: "150 workers connect until all are online",
        samples,
        floor: Duration::from_secs(10),
    }
}

/// One film night on two workers, watched in hls.js: the time from the
/// holder's death to the first segment of the run that replaces it, and
/// the viewer's stall; or, without a failure, the time to a fresh job's
/// first segment and the stall of the same playback.
struct Night {
    first_segment: Duration,
    stall: Duration,
}

fn film_night(kill: bool) -> Night {
    use transcode_tests::browser;
    let sys = System::new();
    transcode_tests::decode::make_film(&sys.dir.path().join("media/film.mkv"), 90);
    let _o = sys.start_orchestrator();
    let workers = [
        sys.start_worker("first", &[]),
        sys.start_worker("second", &[]),
    ];
    sys.wait_online("first", true, Duration::from_secs(30));
    sys.wait_online("second", true, Duration::from_secs(30));
    let submitted = Instant::now();
    let id = sys.submit(
        &serde_json::json!({"source_path": "film.mkv", "resolution": "480p", "bitrate": "1M"}),
    );
    let listed = |n: u64| {
        transcode_tests::get_json(&sys.api(&format!("/api/jobs/{id}")))
            .and_then(|j| j["listed"].as_u64())
            .is_some_and(|l| l >= n)
    };
    wait_until(Duration::from_secs(60), "the first segment", || {
        listed(1).then_some(())
    });
    let mut first_segment = submitted.elapsed();
    let url = sys.api(&format!("/stream/{id}/index.m3u8"));
    let player = browser::start_play(&url, 2.0, Duration::from_secs(300), sys.dir.path());
    wait_until(Duration::from_secs(60), "14 s of playback", || {
        player.current_time().filter(|t| *t >= 14.0)
    });
    if kill {
        let holder = sys.job(&id)["worker_id"].as_str().unwrap_or("").to_string();
        let t = Instant::now();
        for w in workers
            .iter()
            .filter(|w| w.name == format!("worker-{holder}"))
        {
            w.signal(Signal::SIGKILL);
        }
        wait_until(
            Duration::from_secs(60),
            "the replacement's first segment",
            || {
                let j = sys.job(&id);
                let moved = j["attempt"].as_u64() >= Some(2);
                (moved && j["run_next"].as_u64() > j["run_from"].as_u64()).then_some(())
            },
        );
        first_segment = t.elapsed();
    }
    let played = player.wait(Duration::from_secs(300));
    assert!(
        played.ended,
        "playback did not end: {:?}",
        played.fatal_errors
    );
    Night {
        first_segment,
        stall: Duration::from_secs_f64(played.stall_s.max(0.0)),
    }
}

fn failover_playback() {
    let plain = film_night(false);
    let failed = film_night(true);
    let row = |what: &str, value: Duration, floor: Duration, floor_what: &str| {
        println!(
            "{:<52} {:>8.3} s   beside {:>8.3} s {floor_what}",
            what,
            value.as_secs_f64(),
            floor.as_secs_f64()
        );
    };
    row(
        "holder SIGKILLed: its replacement's first segment",
        failed.first_segment,
        plain.first_segment,
        "(a fresh job's first segment)",
    );
    row(
        "holder SIGKILLed 14 s in: the viewer's stall",
        failed.stall,
        plain.stall,
        "(the same playback, no failure)",
    );
}

/// Seconds from submitting a job to its completion, on `workers` one-thread
/// workers, split or not.
fn job_wall_time(seconds: u32, workers: usize, mesh: bool) -> Duration {
    let sys = System::new();
    transcode_tests::decode::make_film(&sys.dir.path().join("media/film.mkv"), seconds);
    let _o = sys.start_orchestrator();
    let names: Vec<String> = (0..workers).map(|i| format!("w{i}")).collect();
    let _w: Vec<_> = names
        .iter()
        .map(|n| sys.start_worker(n, &[("TRANSCODE_TRANSCODE__THREADS", "1")]))
        .collect();
    for n in &names {
        sys.wait_online(n, true, Duration::from_secs(30));
    }
    let t = Instant::now();
    let id = sys.submit(
        &serde_json::json!({"source_path": "film.mkv", "resolution": "720p",
        "bitrate": "2M", "is_mesh_mode": mesh}),
    );
    sys.wait_job(&id, "completed", Duration::from_secs(900));
    t.elapsed()
}

/// The split-job acceptance case: a 3-minute 1080p film to 720p on two
/// one-thread workers, beside the same job plain on one such worker,
/// alternating, median of 3 rounds each (the goal: at most 0.6 of the plain
/// job's time); then once on 1 and 3 workers beside the ideal (the plain
/// job's time divided by the workers; this machine's cores cap what more
/// workers can give).
fn mesh_speedup() {
    const FILM: u32 = 180;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut plain, mut split) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(job_wall_time(FILM, 1, false));
        split.push(job_wall_time(FILM, 2, true));
    }
    let (plain, split) = (median(plain), median(split));
    let ratio = split.as_secs_f64() / plain.as_secs_f64();
    println!(
        "{:<52} {:>8.3} s",
        "plain job, 3-minute 1080p film, one one-thread worker",
        plain.as_secs_f64()
    );
    println!(
        "{:<52} {:>8.3} s   ×{ratio:.3} of plain (goal ≤ ×0.600)   {}",
        "split job on 2 one-thread workers (median of 3)",
        split.as_secs_f64(),
        if ratio <= 0.6 { "within" } else { "OVER" }
    );
    for workers in [1, 3] {
        let split = job_wall_time(FILM, workers, true);
        let ideal = plain.as_secs_f64() / workers as f64;
        println!(
            "{:<52} {:>8.3} s   beside {:>8.3} s ideal   speedup ×{:.2} (ideal ×{workers})",
            format!("split job on {workers} one-thread worker(s)"),
            split.as_secs_f64(),
            ideal,
            plain.as_secs_f64() / split.as_secs_f64()
        );
    }
}

/// Seconds from submitting a job until its first segment is on the
/// orchestrator's playlist, split or not, median of 3 rounds each.
fn mesh_first_segment() {
    let sys = System::new();
    transcode_tests::decode::make_film(&sys.dir.path().join("media/film.mkv"), 30);
    let _o = sys.start_orchestrator();
    let _w = [sys.start_worker("a", &[]), sys.start_worker("b", &[])];
    sys.wait_online("a", true, Duration::from_secs(30));
    sys.wait_online("b", true, Duration::from_secs(30));
    let first = |mesh: bool| {
        let t = Instant::now();
        let id = sys.submit(
            &serde_json::json!({"source_path": "film.mkv", "resolution": "720p",
            "bitrate": "2M", "is_mesh_mode": mesh}),
        );
        wait_until(Duration::from_secs(60), "the first segment", || {
            transcode_tests::get_json(&sys.api(&format!("/api/jobs/{id}")))
                .and_then(|j| j["listed"].as_u64())
                .filter(|l| *l >= 1)
        });
        let took = t.elapsed();
        sys.wait_job(&id, "completed", Duration::from_secs(300));
        took
    };
    let (mut plain, mut split) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(first(false));
        split.push(first(true));
    }
    plain.sort();
    split.sort();
    println!(
        "{:<52} {:>8.3} s   beside {:>8.3} s (a plain job's, +0.2 s allowed)",
        "split job: first segment on the playlist (median)",
        split[1].as_secs_f64(),
        plain[1].as_secs_f64()
    );
}

/// CPU seconds (user + system) a process used so far, from /proc.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// The source counter of the orchestrator's `/metrics`.
fn source_bytes(sys: &System) -> u64 {
    let text = ureq::get(&sys.api("/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("transcode_source_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// A 2-minute 720p film at a real film's bitrate (lossless test picture, about
/// 20 Mbit/s) transcoded to 480p by one worker from its own disk and by
/// another with no media over HTTP from the orchestrator, 3 rounds each,
/// alternating: the worker's frames per second side by side (at most 5 %
/// apart is the goal), and the orchestrator's CPU per GB sent.
fn http_sources() {
    let mut sys = System::new();
    let library = sys.dir.path().join("library");
    transcode_tests::make_heavy_media(&library.join("film.mkv"), 1280, 720, 120);
    let own = sys.dir.path().join("media");
    std::fs::create_dir_all(&own).expect("media");
    std::fs::copy(library.join("film.mkv"), own.join("film.mkv")).expect("copy");
    let size = std::fs::metadata(own.join("film.mkv"))
        .map(|m| m.len())
        .unwrap_or(0);
    sys.orchestrator_env.push(transcode_tests::env(
        "TRANSCODE_MEDIA__ROOT",
        library.display().to_string(),
    ));
    let o = sys.start_orchestrator();
    let orchestrator = o.pid().as_raw();
    // (fps, orchestrator CPU seconds, bytes sent) of one job on one worker.
    let round = |name: &str, extra: &[(&str, &str)]| {
        let _w = sys.start_online(name, extra);
        let (cpu, sent) = (cpu_seconds(orchestrator), source_bytes(&sys));
        let id = sys.submit(&serde_json::json!({"source_path": "film.mkv",
            "resolution": "480p", "bitrate": "1M"}));
        // FFmpeg's own figure (frames over its time so far), as the worker
        // last reported it before the end.
        let mut fps = 0.0;
        wait_until(Duration::from_secs(600), "the job to complete", || {
            let job = sys.job(&id);
            fps = job["fps"].as_f64().filter(|f| *f > 0.0).unwrap_or(fps);
            (job["state"] == "completed").then_some(())
        });
        (
            fps,
            cpu_seconds(orchestrator) - cpu,
            source_bytes(&sys) - sent,
        )
    };
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let (mut cpu, mut cpu_local, mut sent) = (0.0, 0.0, 0u64);
    for i in 0..3 {
        let (fps, c, _) = round(&format!("local{i}"), &[]);
        local.push(fps);
        cpu_local += c;
        let (fps, c, s) = round(&format!("remote{i}"), &[("TRANSCODE_MEDIA__ROOT", "")]);
        remote.push(fps);
        cpu += c;
        sent += s;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (l, r) = (median(&mut local), median(&mut remote));
    println!(
        "{:<52} {:>8.1} fps   beside {:>8.1} fps from its own disk   ×{:.3} (at least ×0.95)",
        "worker fps, source over HTTP (2-min 720p, median)",
        r,
        l,
        r / l
    );
    let gb = sent as f64 / 1e9;
    println!(
        "{:<52} {:>8.3} s/GB   ({:.2} GB sent for 3 jobs of a {:.0} MB film)",
        "orchestrator CPU per GB of source sent",
        (cpu - cpu_local).max(0.0) / gb.max(1e-9),
        gb,
        size as f64 / 1e6
    );
    println!(
        "{:<52} {:>8.3} s      beside {:>8.3} s for the same jobs from the workers' own disks",
        "orchestrator CPU (whole process), 3 HTTP-source jobs", cpu, cpu_local
    );
}

/// Resident memory of a process in MB, from /proc.
pub fn rss_mb(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

mod dispatch;
mod load;
mod stream;

/// Runs every benchmark, or those named on the command line
/// (`./dev bench sources failover`).
fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!(
        "transcode-worker benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    type Named<T> = (&'static str, T);
    let figures: [Named<fn() -> Figure>; 5] = [
        ("probe", probe_time),
        ("offline", kill_to_offline),
        ("move", job_moves_after_a_worker_dies),
        ("restart", orchestrator_restart),
        ("workers", many_workers),
    ];
    for (name, figure) in figures {
        if want(name) {
            figure().print();
        }
    }
    let sections: [Named<fn()>; 8] = [
        ("dispatch", dispatch::dispatch),
        ("first", stream::first_segment_and_whole_job),
        ("failover", failover_playback),
        ("mesh-first", mesh_first_segment),
        ("mesh-speedup", mesh_speedup),
        ("sources", http_sources),
        ("load", load::broker_load),
        ("load-external", load::external_load),
    ];
    for (name, section) in sections {
        if want(name) {
            section();
        }
    }
}
