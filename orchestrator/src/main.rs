use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use transcode_orchestrator::config::OrchestratorConfig;

/// The transcode-worker orchestrator: embedded MQTT broker, worker registry,
/// job routing and HTTP API.
#[derive(Parser)]
#[command(version)]
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
    /// Give a worker its own broker login and print the line it joins with
    /// (`transcode-worker join LINE`); again for a worker that has one: a
    /// new password. A running orchestrator takes it within a second.
    AddWorker {
        /// The worker's id (its worker_id).
        name: String,
    },
    /// Take a worker's broker login away: it is refused at its next
    /// connection.
    RevokeWorker { name: String },
    /// List the workers that have a broker login.
    Logins,
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
    let state = config.state.dir.clone();
    match &cli.command {
        Some(Command::AddWorker { name }) => {
            return match transcode_orchestrator::logins::Logins::add_worker(&state, name) {
                Ok((password, replaced)) => {
                    let broker = config.broker_public_addr();
                    let line = transcode_orchestrator::logins::join_line(name, &password, &broker);
                    println!("transcode-worker join {line}");
                    eprintln!(
                        "transcode-orchestrator: worker {name} {} a login; run the line above on it (it holds the password: keep it private)",
                        if replaced { "has a new password for" } else { "has" }
                    );
                    if !config.broker.embedded {
                        // The orchestrator seals its orders with this
                        // password; the broker must know the login too.
                        eprintln!(
                            "transcode-orchestrator: on the broker {broker}, add the login (Mosquitto: mosquitto_passwd -b PASSWORD_FILE worker-{name} PASSWORD, with the password of the line above) and give it its own topics in the acl_file:\n{}",
                            transcode_orchestrator::logins::mosquitto_acl(name, &config.mqtt.topic_prefix)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("transcode-orchestrator: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::RevokeWorker { name }) => {
            return match transcode_orchestrator::logins::Logins::revoke_worker(&state, name) {
                Ok(true) => {
                    eprintln!("transcode-orchestrator: worker {name} has no login any more; it is refused at its next connection");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!("transcode-orchestrator: worker {name} has no login to revoke (see transcode-orchestrator logins)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("transcode-orchestrator: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Logins) => {
            return match transcode_orchestrator::logins::Logins::workers(&state) {
                Ok(workers) => {
                    for w in workers {
                        println!("{w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("transcode-orchestrator: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
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
    // On a worker thread, not this one: the MQTT client's task wakes the
    // loop for every message, and a wake-up within a worker thread costs no
    // switch between threads.
    let run = runtime.spawn(transcode_orchestrator::app::run(
        config,
        transcode_common::shutdown_signal(),
    ));
    match runtime.block_on(run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("transcode-orchestrator: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("transcode-orchestrator: the orchestrator stopped unexpectedly: {e}");
            ExitCode::FAILURE
        }
    }
}
