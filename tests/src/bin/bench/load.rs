//! The small server's own cost under many workers: the orchestrator with
//! its embedded broker beside the bare broker and Mosquitto, and the
//! orchestrator alone on Mosquitto. Raw MQTT workers from
//! `transcode_tests::load`, bounded in count and time, on loopback.

use std::time::{Duration, Instant};

use transcode_tests::{bin, wait_until, System};

use crate::{cpu_seconds, median, rss_mb};

/// What a process cost while the load ran: % of one core, MB resident.
#[derive(Clone, Copy)]
struct Usage {
    cpu: f64,
    rss: f64,
}

/// How long a load is measured, after everyone connected and the memory
/// of the measured processes settled.
const LOAD_WINDOW: Duration = Duration::from_secs(20);
const LOAD_WARMUP: Duration = Duration::from_secs(5);
/// Resident memory has settled when it grew by less than this share over
/// the last [`SETTLE_SPAN`]; it is waited for at most [`SETTLE_AT_MOST`].
const SETTLE_GROWTH: f64 = 0.005;
const SETTLE_SPAN: Duration = Duration::from_secs(30);
const SETTLE_AT_MOST: Duration = Duration::from_secs(240);

/// Waits until the resident memory of every process in `pids` stopped
/// growing, and says how long that took.
///
/// Under a steady load rumqttd's memory climbs for a minute or more after
/// the last client connected (each connection's read buffers, kept alive by
/// its retained messages, last will and subscribers' logs, fill up one after
/// the other) before it levels off: the bare broker measured 57 MB 15 s in
/// and 71 MB from 60 s on. A figure taken during the climb compares brokers
/// at different points of it.
fn settle(pids: &[i32]) -> Duration {
    let start = Instant::now();
    std::thread::sleep(LOAD_WARMUP);
    let step = Duration::from_secs(5);
    let span = (SETTLE_SPAN.as_secs() / step.as_secs()) as usize;
    let mut samples: Vec<Vec<f64>> = Vec::new();
    loop {
        samples.push(pids.iter().map(|p| rss_mb(*p)).collect());
        if samples.len() > span {
            let then = &samples[samples.len() - 1 - span];
            let now = &samples[samples.len() - 1];
            if now
                .iter()
                .zip(then)
                .all(|(n, t)| *n <= t * (1.0 + SETTLE_GROWTH))
            {
                return start.elapsed();
            }
        }
        if start.elapsed() >= SETTLE_AT_MOST {
            eprintln!("  memory still grew after {SETTLE_AT_MOST:?}; measuring anyway");
            return start.elapsed();
        }
        std::thread::sleep(step);
    }
}

/// Runs `n` raw workers heartbeating every `interval` (and one `transcode/#`
/// watcher) against the broker on `port`; once all are connected and
/// `ready` says the system took them in, measures `pids` over
/// [`LOAD_WINDOW`].
fn under_load(
    pids: &[i32],
    port: u16,
    n: usize,
    interval: Duration,
    ready: &dyn Fn() -> bool,
) -> Vec<Usage> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use transcode_tests::load;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let counters = Arc::new(load::Counters::default());
    let watched = Arc::new(AtomicUsize::new(0));
    runtime.spawn(load::subscriber(port, None, watched.clone()));
    for i in 0..n {
        let offset = interval.mul_f64(i as f64 / n as f64);
        runtime.spawn(load::worker(
            format!("load-{i:05}"),
            port,
            interval,
            offset,
            None,
            counters.clone(),
        ));
    }
    wait_until(
        Duration::from_secs(300),
        "the load's workers to connect",
        || {
            let failed = counters.failed.load(Ordering::Relaxed);
            assert!(failed == 0, "{failed} load workers lost their connection");
            (counters.connected.load(Ordering::Relaxed) == n && ready()).then_some(())
        },
    );
    let settled = settle(pids);
    let before: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let sent = counters.sent.load(Ordering::Relaxed);
    let t = Instant::now();
    std::thread::sleep(LOAD_WINDOW);
    let elapsed = t.elapsed().as_secs_f64();
    let usage: Vec<Usage> = pids
        .iter()
        .zip(before)
        .map(|(p, b)| Usage {
            cpu: (cpu_seconds(*p) - b) / elapsed * 100.0,
            rss: rss_mb(*p),
        })
        .collect();
    let rate = (counters.sent.load(Ordering::Relaxed) - sent) as f64 / elapsed;
    let failed = counters.failed.load(Ordering::Relaxed);
    assert!(failed == 0, "{failed} load workers lost their connection");
    eprintln!(
        "  {n} workers: memory settled after {:.0} s; {rate:.0} heartbeats/s, the watcher read {:.1} MB; {}",
        settled.as_secs_f64(),
        watched.load(Ordering::Relaxed) as f64 / 1e6,
        usage
            .iter()
            .map(|u: &Usage| format!("{:.1} % CPU, {:.1} MB", u.cpu, u.rss))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    drop(runtime);
    usage
}

fn online_count(sys: &System) -> usize {
    sys.workers().iter().filter(|w| w["online"] == true).count()
}

/// 1,000 workers heartbeating every second on the orchestrator (its
/// embedded broker, default settings but anonymous clients), on the same
/// broker without the orchestrator, and on Mosquitto: CPU and memory,
/// median of 3 rounds, the orchestrator's beside the bare broker's.
pub fn broker_load() {
    const N: usize = 1000;
    let interval = Duration::from_secs(1);
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut mosquitto = Vec::new();
    for round in 1..=3 {
        eprintln!("round {round}: the orchestrator");
        {
            let sys = System::new();
            let o = sys.start_orchestrator();
            let pid = o.pid().as_raw();
            ours.extend(under_load(&[pid], sys.broker_port, N, interval, &|| {
                online_count(&sys) >= N
            }));
        }
        eprintln!("round {round}: the bare broker");
        {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = transcode_tests::free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut b = transcode_tests::Proc::spawn(
                "bare-broker",
                &bin("bare_broker"),
                &[&listen, "1024"],
                &[],
                dir.path(),
            );
            wait_until(Duration::from_secs(10), "the bare broker", || {
                assert!(b.is_running(), "{}", b.log());
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(drop)
            });
            bare.extend(under_load(&[b.pid().as_raw()], port, N, interval, &|| true));
        }
        eprintln!("round {round}: Mosquitto");
        {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = transcode_tests::free_port();
            let m = transcode_tests::mosquitto::start(
                "mosquitto",
                dir.path(),
                port,
                &format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_type error"),
            );
            mosquitto.extend(under_load(&[m.pid().as_raw()], port, N, interval, &|| true));
        }
    }
    let cpu = |u: &[Usage]| median(u.iter().map(|u| u.cpu).collect());
    let rss = |u: &[Usage]| median(u.iter().map(|u| u.rss).collect());
    println!(
        "1,000 workers at 1 s, CPU: orchestrator + embedded broker {:>5.1} % of a core, bare broker {:>5.1} %: {:.2} x (goal <= 1.15 x); Mosquitto {:.1} %",
        cpu(&ours),
        cpu(&bare),
        cpu(&ours) / cpu(&bare).max(0.01),
        cpu(&mosquitto)
    );
    println!(
        "1,000 workers at 1 s, RSS: orchestrator + embedded broker {:>5.1} MB, bare broker {:>5.1} MB: {:.2} x (goal <= 1.0 x); Mosquitto {:.1} MB",
        rss(&ours),
        rss(&bare),
        rss(&ours) / rss(&bare).max(0.01),
        rss(&mosquitto)
    );
}

/// 10,000 workers heartbeating every 15 s on Mosquitto, with the
/// orchestrator as one more client: its own CPU beside Mosquitto's.
pub fn external_load() {
    const N: usize = 10_000;
    let interval = Duration::from_secs(15);
    let mut ours = Vec::new();
    let mut broker = Vec::new();
    for round in 1..=3 {
        eprintln!("round {round}: the orchestrator on Mosquitto");
        let mut sys = System::new();
        let port = transcode_tests::free_port();
        let m = transcode_tests::mosquitto::start(
            "mosquitto",
            sys.dir.path(),
            port,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_type error"),
        );
        sys.broker_port = port;
        sys.orchestrator_env.extend([
            transcode_tests::env("TRANSCODE_BROKER__EMBEDDED", "false"),
            transcode_tests::env("TRANSCODE_BROKER__URL", format!("mqtt://127.0.0.1:{port}")),
        ]);
        let o = sys.start_orchestrator();
        let usage = under_load(
            &[o.pid().as_raw(), m.pid().as_raw()],
            port,
            N,
            interval,
            &|| online_count(&sys) >= N,
        );
        ours.push(usage[0].cpu);
        broker.push(usage[1].cpu);
    }
    let (o, m) = (median(ours), median(broker));
    println!(
        "10,000 workers at 15 s on Mosquitto, CPU: the orchestrator {o:>5.1} % of a core, Mosquitto {m:>5.1} %: {:.2} x (goal <= 1.0 x)",
        o / m.max(0.01)
    );
}
