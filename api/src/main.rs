use std::process::ExitCode;

use reftrack_common::{config, shutdown, telemetry};

// mimalloc: markedly cheaper than glibc malloc for the many short-lived allocations of
// request handling (measured on the click path: see load-tests).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
