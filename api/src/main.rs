use std::process::ExitCode;

use reftrack_common::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config::load::<api::Config>() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("api: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(config.common.log_format);
    match api::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("api stopped: {err:#}");
            ExitCode::FAILURE
        }
    }
}
