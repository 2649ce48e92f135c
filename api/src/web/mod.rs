//! Pages for people, beside the APIs: the admin [`console`] (`/console/`) and the
//! promoter [`portal`] (`/portal/`). Server-rendered HTML (maud escapes every value),
//! little JavaScript (a copy button, and uPlot for the charts, vendored from npm in
//! `api/assets/`). Each page asks the same handlers the APIs answer with, so a page shows
//! what the API would say, and a form's errors are the API's field messages.
//!
//! Sign-in keeps the credential in an HttpOnly cookie scoped to its section (the admin's
//! API key, or the promoter token the product handed over); every form carries a CSRF
//! token derived from that cookie, which another site cannot read.

pub mod console;
mod page;
pub mod portal;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(console::router())
        .merge(portal::router())
        .route("/assets/{file}", get(asset))
}

/// The vendored front-end files, compiled in.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "uPlot.iife.min.js" => (
            include_bytes!("../../assets/uPlot.iife.min.js"),
            "text/javascript",
        ),
        "uPlot.min.css" => (include_bytes!("../../assets/uPlot.min.css"), "text/css"),
        "app.js" => (include_bytes!("../../assets/app.js"), "text/javascript"),
        "app.css" => (include_bytes!("../../assets/app.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
