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

fn main() {
    println!(
        "transcode-worker benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for figure in [
        probe_time(),
        kill_to_offline(),
        job_moves_after_a_worker_dies(),
        orchestrator_restart(),
        many_workers(),
    ] {
        figure.print();
    }
}
