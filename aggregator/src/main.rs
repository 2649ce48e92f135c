use std::process::ExitCode;

use reftrack_common::{config, shutdown, telemetry};

// mimalloc: markedly cheaper than glibc malloc for the many short-lived allocations of
// request handling (measured on the click path: see load-tests).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config::load::<aggregator::Config>() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("aggregator: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = config.command.clone() {
        return match aggregator::cli::run(command, &config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("aggregator: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init_tracing(config.common.log_format);
    match aggregator::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("aggregator stopped: {err:#}");
            ExitCode::FAILURE
        }
    }
}
