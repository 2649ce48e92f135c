use std::process::ExitCode;

use reftrack_common::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config::load::<ingest::Config>() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("ingest: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(config.common.log_format);
    match ingest::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("ingest stopped: {err:#}");
            ExitCode::FAILURE
        }
    }
}
