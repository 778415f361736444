use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use transcode_orchestrator::config::OrchestratorConfig;

/// The transcode-worker orchestrator: embedded MQTT broker, worker registry,
/// job routing and HTTP API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/orchestrator.toml); TRANSCODE_... environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Replace the HTTP API's token (in state.dir) with a new one and print
    /// it; a running orchestrator keeps the old one until it restarts.
    NewToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    transcode_common::init_tracing("info,rumqttd=off,rumqttc=warn");
    let config: OrchestratorConfig = match transcode_common::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transcode-orchestrator: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::NewToken) = cli.command {
        return match transcode_orchestrator::access::Access::replace_token(&config.state.dir) {
            Ok((token, path)) => {
                println!("{token}");
                eprintln!(
                    "transcode-orchestrator: the new API token is in {}; restart the orchestrator (systemctl restart transcode-orchestrator) for it to take effect",
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("transcode-orchestrator: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("transcode-orchestrator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(transcode_orchestrator::app::run(
        config,
        transcode_common::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transcode-orchestrator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
