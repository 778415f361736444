use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use transcode_worker::config::WorkerConfig;

/// A transcode-worker machine: heartbeats, hardware probe, FFmpeg jobs and
/// their HLS streams.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (see config/worker.toml); TRANSCODE_... environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker (the default).
    Run,
    /// Test-encode with every candidate encoder and print what works here.
    Probe,
    /// Write the login the orchestrator made for this worker (the line
    /// `transcode-orchestrator add-worker NAME` printed) into the config
    /// file given with --config (default: ./worker.toml).
    Join {
        /// mqtt://worker-NAME:PASSWORD@HOST:PORT
        line: String,
        /// Leave the broker's address out: find it (and follow it when it
        /// moves) over mDNS.
        #[arg(long)]
        mdns: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Join { line, mdns }) = &cli.command {
        let path = cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("worker.toml"));
        return match transcode_worker::join::parse(line)
            .and_then(|join| transcode_worker::join::write(&path, &join, *mdns).map(|_| join))
        {
            Ok(join) => {
                println!(
                    "worker {} joins {}: its login is in {}; start it with: transcode-worker --config {}",
                    join.worker_id,
                    if *mdns { "the broker it finds over mDNS" } else { join.url.as_str() },
                    path.display(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("transcode-worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    transcode_common::init_tracing("info,rumqttc=warn");
    let config: WorkerConfig = match transcode_common::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transcode-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("transcode-worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Probe => {
                let report = transcode_worker::probe::run(
                    &config.transcode.ffmpeg,
                    &config.hw_accel(),
                    std::time::Duration::from_secs(config.transcode.probe_timeout_s),
                )
                .await;
                print!("{}", report.table());
                Ok(())
            }
            Command::Join { .. } => Ok(()),
            Command::Run => {
                transcode_worker::app::run(config, transcode_common::shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transcode-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
