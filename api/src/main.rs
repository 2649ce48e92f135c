use std::process::ExitCode;

// mimalloc: markedly cheaper than glibc malloc for the many short-lived allocations of
// request handling (measured on the click path: see load-tests).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    reftrack_common::service::main::<api::Config>().await
}
