//! The embedded broker alone, built from the same settings the orchestrator
//! gives it by default, without the orchestrator: the floor the benchmarks
//! measure the orchestrator's own cost against.
//!
//!   bare_broker 127.0.0.1:PORT [MAX_CONNECTIONS]

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(listen) = args.next().and_then(|a| a.parse().ok()) else {
        eprintln!("usage: bare_broker ADDRESS:PORT [MAX_CONNECTIONS]");
        return std::process::ExitCode::from(2);
    };
    let mut settings = transcode_broker::BrokerSettings::new(listen);
    if let Some(max) = args.next().and_then(|a| a.parse().ok()) {
        settings.max_connections = max;
    }
    if let Err(e) = transcode_broker::start(&settings) {
        eprintln!("bare_broker: {e}");
        return std::process::ExitCode::FAILURE;
    }
    println!("listening on {listen}");
    loop {
        std::thread::park();
    }
}
