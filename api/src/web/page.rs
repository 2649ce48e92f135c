//! What every page shares: the layout, the CSRF token, the session cookie, and reading
//! the API's answers and errors.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A whole page: `title`, the section's navigation, and `body`.
// Pages build their parts inline and hand them over: by value reads best.
#[allow(clippy::needless_pass_by_value)]
pub fn layout(title: &str, nav: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · reftrack" }
                link rel="stylesheet" href="/assets/uPlot.min.css";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/uPlot.iife.min.js" defer {}
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header { (nav) }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML answer with `status`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` for `name` under `path`: HttpOnly, SameSite as given, Secure unless
/// configured off (plain-HTTP development); an empty value clears it.
pub fn set_cookie(name: &str, value: &str, path: &str, same_site: &str, secure: bool) -> String {
    let max_age = if value.is_empty() { "; Max-Age=0" } else { "" };
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}{secure}{max_age}")
}

/// Sets `cookie` and sends the browser to `to`.
pub fn redirect_with_cookie(to: &str, cookie: String) -> Response {
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

/// The CSRF token of a session: bound to its cookie, which another site cannot read.
pub fn csrf_token(session: &str) -> String {
    let digest = Sha256::digest(format!("reftrack-csrf:{session}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The hidden field every form carries.
pub fn csrf_field(session: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf_token(session)); }
}

/// Whether a submitted form carries the session's CSRF token.
pub fn csrf_ok(session: &str, form: &HashMap<String, String>) -> bool {
    form.get("csrf").is_some_and(|t| *t == csrf_token(session))
}

/// Form fields the APIs read as JSON integers; every other field is text, as typed.
const INTEGER_FIELDS: &[&str] = &["tier", "payout_id"];

/// The form's fields named in `keys` as the JSON object an API handler reads: empty
/// fields left out, [`INTEGER_FIELDS`] as numbers when they are (else as typed, for the
/// API to refuse with its own message).
pub fn json_fields(
    form: &HashMap<String, String>,
    keys: &[&str],
) -> serde_json::Map<String, Value> {
    keys.iter()
        .filter_map(|k| {
            let v = form.get(*k)?.trim();
            let value = match v.parse::<i64>() {
                Ok(n) if INTEGER_FIELDS.contains(k) => Value::from(n),
                _ => Value::String(v.to_string()),
            };
            (!v.is_empty()).then(|| (k.to_string(), value))
        })
        .collect()
}

/// [`json_fields`] as a request body.
pub fn json_body(form: &HashMap<String, String>, keys: &[&str]) -> Bytes {
    Bytes::from(Value::Object(json_fields(form, keys)).to_string())
}

/// What an API error says to a person: each field's messages, or the one message.
pub fn problems(error: &ApiError) -> Vec<String> {
    match error {
        ApiError::Invalid(fields) => fields
            .iter()
            .flat_map(|(field, messages)| {
                messages.iter().map(move |m| {
                    if field == "non_field_errors" {
                        m.to_string()
                    } else {
                        format!("{}: {m}", field.replace('_', " "))
                    }
                })
            })
            .collect(),
        ApiError::Internal(_) => vec!["Something went wrong on our side; try again.".into()],
        other => vec![other.to_string()],
    }
}

/// What a form did, by the name its redirect carries (`?done=approved`): after a
/// successful form the browser is sent to the page again (so reloading it repeats
/// nothing), and the page says what happened. Only these texts can be shown.
const DONE: &[(&str, &str)] = &[
    ("approved", "Approved."),
    ("rejected", "Rejected."),
    ("deactivated", "Deactivated."),
    ("reactivated", "Reactivated."),
    ("saved", "Saved."),
    ("coupon", "Coupon added."),
    ("paid", "Marked paid."),
    ("cancelled", "Cancelled."),
    ("recorded", "Recorded."),
    ("method", "Payout method saved."),
    ("minimum", "Minimum saved."),
    ("withdrawn", "Withdrawal requested: you will be paid soon."),
    (
        "redrive",
        "Re-drive requested: the aggregator publishes them again within seconds.",
    ),
];

/// The message of `?done=NAME`.
pub fn done_message(query: &HashMap<String, String>) -> Option<&'static str> {
    let name = query.get("done")?;
    DONE.iter().find(|(n, _)| n == name).map(|(_, m)| *m)
}

/// Sends the browser back to `path`, saying `done` (one of [`DONE`]'s names).
pub fn done_redirect(path: &str, done: &str) -> Response {
    debug_assert!(
        DONE.iter().any(|(n, _)| *n == done),
        "{done} is a known notice"
    );
    Redirect::to(&format!("{path}?done={done}")).into_response()
}

/// A notice: what was done, or what went wrong (announced to screen readers).
pub fn notice(done: Option<&str>, errors: &[String]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error role="alert" {
                p { "That did not work:" }
                ul { @for e in errors { li { (e) } } }
            }
        }
        @if let Some(done) = done {
            p.done role="status" { (done) }
        }
    }
}

/// A JSON value as text: strings as they are, null as a dash.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A chart: `series` (name → values per label), drawn by app.js with uPlot; the same
/// figures are in a table for screen readers and for browsers without JavaScript.
pub fn chart(id: &str, caption: &str, labels: &[String], series: &[(&str, Vec<f64>)]) -> Markup {
    let data = serde_json::json!({
        "labels": labels,
        "series": series.iter().map(|(name, values)| serde_json::json!({"name": name, "values": values})).collect::<Vec<_>>(),
    });
    html! {
        figure.chart {
            div.plot id=(id) data-chart=(data.to_string()) aria-hidden="true" {}
            figcaption { (caption) }
            details {
                summary { "Figures" }
                table {
                    thead { tr { th scope="col" { "Day" } @for (name, _) in series { th scope="col" { (name) } } } }
                    tbody {
                        @for (i, label) in labels.iter().enumerate() {
                            tr { th scope="row" { (label) } @for (_, values) in series { td { (values[i]) } } }
                        }
                    }
                }
            }
        }
    }
}
