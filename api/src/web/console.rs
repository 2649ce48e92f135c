//! The admin console (`/console/`): affiliates (search, filters, paging, detail with a
//! daily chart, approve/reject/deactivate/reactivate, rate and tier, coupons), payouts
//! (queue, batches, CSV export, results), webhook endpoints with their deliveries, and
//! parked events. Signed in with an admin API key, kept in an HttpOnly cookie.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{Duration, NaiveDate};
use maud::{Markup, html};
use reftrack_store::api_keys::{self, Scope};
use serde_json::Value;

use super::page::{self, csrf_field, csrf_ok, json_body, layout, notice, problems, respond, text};
use crate::admin;
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::state::AppState;

const COOKIE: &str = "rt_console";
const HOME: &str = "/console/";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console/", get(affiliates))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/affiliates/{id}", get(affiliate))
        .route("/console/affiliates/{id}/{action}", post(affiliate_action))
        .route("/console/payouts", get(payouts))
        .route("/console/payouts/{id}/{action}", post(payout_action))
        .route("/console/payout-batches", post(create_batch))
        .route("/console/payout-batches/{id}", get(batch))
        .route("/console/payout-batches/{id}/export", get(export_batch))
        .route("/console/payout-batches/{id}/results", post(batch_result))
        .route("/console/webhooks", get(webhooks))
        .route("/console/parked", get(parked))
        .route("/console/parked/redrive", post(redrive))
}

/// A signed-in admin and the session's cookie value (the CSRF token's key).
struct Session {
    admin: Admin,
    key: String,
}

/// Every console page but sign-in takes the session; without one, the sign-in page.
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/console/login").into_response();
        let key = page::cookie(&parts.headers, COOKIE).ok_or_else(to_login)?;
        match admin_of(state, key).await {
            Some(admin) => Ok(Session {
                admin,
                key: key.to_string(),
            }),
            None => Err(to_login()),
        }
    }
}

impl Session {
    /// A form without this session's CSRF token is refused.
    fn refuse_forged(&self, form: &HashMap<String, String>) -> Option<Response> {
        (!csrf_ok(&self.key, form)).then(forbidden)
    }
}

async fn admin_of(state: &AppState, key: &str) -> Option<Admin> {
    let stored = api_keys::verify(&state.pool, key).await.ok()??;
    stored.has_scope(Scope::Admin).then_some(Admin {
        key_id: stored.id,
        email: stored.owner_email,
    })
}

fn nav(session: Option<&Session>) -> Markup {
    html! {
        nav aria-label="Console" {
            a.brand href=(HOME) { "reftrack console" }
            @if let Some(session) = session {
                a href=(HOME) { "Affiliates" }
                a href="/console/payouts" { "Payouts" }
                a href="/console/webhooks" { "Webhooks" }
                a href="/console/parked" { "Parked events" }
                form.inline method="post" action="/console/logout" {
                    (csrf_field(&session.key))
                    button type="submit" { "Sign out (" (session.admin.email) ")" }
                }
            }
        }
    }
}

fn page(session: &Session, title: &str, body: Markup) -> Response {
    respond(StatusCode::OK, layout(title, nav(Some(session)), body))
}

/// The `data` of an admin API answer, as JSON.
fn data<T: serde::Serialize>(
    answer: Result<axum::Json<reftrack_common::envelope::Envelope<T>>, AdminError>,
) -> Result<Value, ApiError> {
    let axum::Json(envelope) = answer.map_err(|e| e.0)?;
    Ok(serde_json::to_value(envelope.data).expect("answers serialise"))
}

/// A failed read, as a page.
fn failed(session: &Session, title: &str, error: &ApiError) -> Response {
    if let ApiError::Internal(err) = error {
        tracing::error!("console page {title} failed: {err:#}");
    }
    let status = error.status();
    let mut answer = page(session, title, notice(None, &problems(error)));
    *answer.status_mut() = status;
    answer
}

// ---- sign-in

async fn login_form() -> Response {
    login_page(StatusCode::OK, &[])
}

fn login_page(status: StatusCode, errors: &[String]) -> Response {
    respond(
        status,
        layout(
            "Sign in",
            nav(None),
            html! {
                (notice(None, errors))
                form.card method="post" action="/console/login" {
                    label for="key" { "Admin API key" }
                    input #key name="key" type="password" autocomplete="current-password" required
                        placeholder="sk_live_…" aria-describedby="key-help";
                    p #key-help.help { "Create one with " code { "api keys create --email you@example.com --scopes admin" } "." }
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

async fn login(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let key = form.get("key").map(|k| k.trim()).unwrap_or_default();
    if admin_of(&state, key).await.is_none() {
        return login_page(
            StatusCode::UNAUTHORIZED,
            &["This is not an active API key with the admin scope.".into()],
        );
    }
    let cookie = page::set_cookie(
        COOKIE,
        key,
        "/console",
        "Strict",
        state.settings.web_cookie_secure,
    );
    page::redirect_with_cookie(HOME, cookie)
}

async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    let cookie = page::set_cookie(
        COOKIE,
        "",
        "/console",
        "Strict",
        state.settings.web_cookie_secure,
    );
    page::redirect_with_cookie("/console/login", cookie)
}

fn forbidden() -> Response {
    respond(
        StatusCode::FORBIDDEN,
        layout(
            "Not allowed",
            nav(None),
            html! { p { "This form has expired or came from another site. Go back, reload the page and try again." } },
        ),
    )
}

// ---- affiliates

async fn affiliates(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filters: HashMap<String, String> = query
        .iter()
        .filter(|(k, v)| ["status", "search", "page"].contains(&k.as_str()) && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let answer = admin::affiliates::list(
        State(state.clone()),
        session.admin.clone(),
        Query(filters.clone()),
    )
    .await;
    let list = match data(answer) {
        Ok(list) => list,
        Err(error) => return failed(&session, "Affiliates", &error),
    };
    let chosen = |k: &str| filters.get(k).cloned().unwrap_or_default();
    let paging = &list["pagination"];
    let page_link = |page: i64| {
        let mut q = filters.clone();
        q.insert("page".into(), page.to_string());
        format!(
            "{HOME}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&q)
                .finish()
        )
    };
    page(
        &session,
        "Affiliates",
        html! {
            form.filters method="get" action=(HOME) role="search" {
                label for="search" { "Search" }
                input #search name="search" type="search" value=(chosen("search")) placeholder="Name or email";
                label for="status" { "Status" }
                select #status name="status" {
                    @for (value, label) in [("", "Any"), ("pending", "Pending"), ("approved", "Approved"), ("rejected", "Rejected")] {
                        option value=(value) selected[chosen("status") == value] { (label) }
                    }
                }
                button type="submit" { "Find" }
            }
            p { (text(&paging["total_count"])) " affiliates" }
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Status" }
                        th scope="col" { "Tier" } th scope="col" { "Rate %" } th scope="col" { "Clicks" }
                        th scope="col" { "Sales" } th scope="col" { "Commission" }
                    } }
                    tbody {
                        @for a in list["results"].as_array().into_iter().flatten() {
                            tr {
                                td { a href=(format!("/console/affiliates/{}", a["id"])) { (text(&a["name"])) } }
                                td { (text(&a["email"])) }
                                td { (text(&a["status"]["display"])) @if a["active"] == false { " (inactive)" } }
                                td { (text(&a["tier"])) }
                                td { (text(&a["commission_rate"])) }
                                td { (text(&a["performance_metrics"]["total_clicks"])) }
                                td { (text(&a["performance_metrics"]["total_sales"])) }
                                td { (text(&a["performance_metrics"]["total_commissions"])) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if paging["has_previous"] == true {
                    a rel="prev" href=(page_link(paging["page"].as_i64().unwrap_or(1) - 1)) { "Previous" }
                }
                span { "Page " (text(&paging["page"])) " of " (text(&paging["total_pages"])) }
                @if paging["has_next"] == true {
                    a rel="next" href=(page_link(paging["page"].as_i64().unwrap_or(1) + 1)) { "Next" }
                }
            }
        },
    )
}

async fn affiliate(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let done = page::done_message(&query);
    affiliate_page(&state, &session, &id, &query, done, &[]).await
}

/// The affiliate's page, with what the last action did or why it failed.
async fn affiliate_page(
    state: &AppState,
    session: &Session,
    id: &str,
    query: &HashMap<String, String>,
    done: Option<&str>,
    errors: &[String],
) -> Response {
    let detail = admin::affiliates::detail(
        State(state.clone()),
        session.admin.clone(),
        Path(id.to_string()),
    )
    .await;
    let a = match data(detail) {
        Ok(a) => a,
        Err(error) => return failed(session, "Affiliate", &error),
    };
    let numeric_id = a["id"].as_i64().unwrap_or_default();
    let today = state.clock.now().date_naive();
    let date =
        |k: &str, default: NaiveDate| query.get(k).and_then(|d| d.parse().ok()).unwrap_or(default);
    let to = date("date_to", today);
    let from = date("date_from", to - Duration::days(29)).min(to);
    let days = match reftrack_store::stats::daily(&state.clickhouse, numeric_id, from, to).await {
        Ok(days) => days,
        Err(err) => return failed(session, "Affiliate", &ApiError::Internal(err.into())),
    };
    let coupons = data(
        admin::coupons::list(
            State(state.clone()),
            session.admin.clone(),
            Path(id.to_string()),
        )
        .await,
    )
    .unwrap_or(Value::Null);
    let (labels, series) = daily_series(from, to, &days);
    let action = |name: &str| format!("/console/affiliates/{numeric_id}/{name}");
    let name = text(&a["name"]);
    page(
        session,
        &format!("Affiliate: {name}"),
        html! {
            (notice(done, errors))
            dl.facts {
                dt { "Email" } dd { (text(&a["email"])) }
                dt { "Status" } dd #status { (text(&a["status"]["display"])) @if a["active"] == false { " (inactive)" } }
                dt { "Code" } dd { code { (text(&a["affiliate_code"])) } }
                dt { "Tier" } dd { (text(&a["tier"])) }
                dt { "Rate %" } dd { (text(&a["commission_rate"])) }
                dt { "Joined" } dd { (text(&a["join_date"])) }
            }
            section aria-labelledby="perf" {
                h2 #perf { "Performance" }
                form.filters method="get" {
                    label for="date_from" { "From" }
                    input #date_from type="date" name="date_from" value=(from.to_string());
                    label for="date_to" { "To" }
                    input #date_to type="date" name="date_to" value=(to.to_string());
                    button type="submit" { "Show" }
                }
                (page::chart("affiliate-chart", &format!("Per day, {from} to {to}"), &labels, &series))
            }
            section aria-labelledby="decide" {
                h2 #decide { "Decide" }
                div.actions {
                    form method="post" action=(action("approve")) {
                        (csrf_field(&session.key))
                        label for="approve-tier" { "Tier" }
                        input #approve-tier name="tier" type="number" min="1" max="5" inputmode="numeric";
                        label for="approve-rate" { "Rate %" }
                        input #approve-rate name="commission_rate" inputmode="decimal";
                        button type="submit" { "Approve" }
                    }
                    form method="post" action=(action("reject")) {
                        (csrf_field(&session.key))
                        label for="reason" { "Reason" }
                        input #reason name="reason";
                        button type="submit" { "Reject" }
                    }
                    form method="post" action=(action(if a["active"] == false { "reactivate" } else { "deactivate" })) {
                        (csrf_field(&session.key))
                        button type="submit" { @if a["active"] == false { "Reactivate" } @else { "Deactivate" } }
                    }
                }
                h3 { "Rate and tier" }
                form method="post" action=(action("update")) {
                    (csrf_field(&session.key))
                    label for="edit-tier" { "Tier" }
                    input #edit-tier name="tier" type="number" min="1" max="5" value=(text(&a["tier"]));
                    label for="edit-rate" { "Own rate % (empty: the tier's)" }
                    input #edit-rate name="commission_rate" inputmode="decimal";
                    button type="submit" { "Save" }
                }
            }
            section aria-labelledby="coupons" {
                h2 #coupons { "Coupons" }
                ul {
                    @for c in coupons.as_array().into_iter().flatten() {
                        li { code { (text(&c["code"])) } @if !c["disabled_at"].is_null() { " (disabled)" } }
                    }
                }
                form method="post" action=(action("coupon")) {
                    (csrf_field(&session.key))
                    label for="coupon" { "New code" }
                    input #coupon name="code" pattern="[A-Za-z0-9_-]{1,64}";
                    button type="submit" { "Add coupon" }
                }
            }
        },
    )
}

/// Every day of `[from, to]`, zero when ClickHouse has nothing for it.
fn daily_series(
    from: NaiveDate,
    to: NaiveDate,
    days: &[reftrack_store::stats::DayFigures],
) -> (Vec<String>, Vec<(&'static str, Vec<f64>)>) {
    let by_day: HashMap<&str, &reftrack_store::stats::DayFigures> =
        days.iter().map(|d| (d.date.as_str(), d)).collect();
    let labels: Vec<String> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|d| d.to_string())
        .collect();
    let pick = |f: fn(&reftrack_store::stats::DayFigures) -> f64| -> Vec<f64> {
        labels
            .iter()
            .map(|l| by_day.get(l.as_str()).map_or(0.0, |d| f(d)))
            .collect()
    };
    let series = vec![
        ("Clicks", pick(|d| d.raw_clicks as f64)),
        ("Unique clicks", pick(|d| d.unique_clicks as f64)),
        ("Conversions", pick(|d| d.conversions as f64)),
        ("Commission", pick(|d| d.commission_cents as f64 / 100.0)),
    ];
    (labels, series)
}

async fn affiliate_action(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    let (s, a, p) = (
        State(state.clone()),
        session.admin.clone(),
        Path(id.clone()),
    );
    let outcome: Result<&str, ApiError> = match action.as_str() {
        "approve" => data(
            admin::affiliates::approve(s, a, p, json_body(&form, &["tier", "commission_rate"]))
                .await,
        )
        .map(|_| "approved"),
        "reject" => data(admin::affiliates::reject(s, a, p, json_body(&form, &["reason"])).await)
            .map(|_| "rejected"),
        "deactivate" => data(admin::affiliates::deactivate(s, a, p).await).map(|_| "deactivated"),
        "reactivate" => data(admin::affiliates::reactivate(s, a, p).await).map(|_| "reactivated"),
        "update" => {
            // An empty rate means "the tier's": the API takes null for it.
            let rate = form
                .get("commission_rate")
                .filter(|r| !r.trim().is_empty())
                .cloned();
            let mut json = page::json_fields(&form, &["tier"]);
            json.insert(
                "commission_rate".into(),
                rate.map_or(Value::Null, Value::String),
            );
            data(
                admin::affiliates::update(s, a, p, Bytes::from(Value::Object(json).to_string()))
                    .await,
            )
            .map(|_| "saved")
        }
        "coupon" => admin::coupons::create(s, a, p, json_body(&form, &["code"]))
            .await
            .map(|_| "coupon")
            .map_err(|e| e.0),
        _ => Err(ApiError::NotFound),
    };
    let query = HashMap::new();
    match outcome {
        Ok(done) => page::done_redirect(&format!("/console/affiliates/{id}"), done),
        Err(error) => {
            let mut answer =
                affiliate_page(&state, &session, &id, &query, None, &problems(&error)).await;
            *answer.status_mut() = error.status();
            answer
        }
    }
}

// ---- payouts

async fn payouts(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    payouts_page(&state, &session, page::done_message(&query), &[]).await
}

async fn payouts_page(
    state: &AppState,
    session: &Session,
    done: Option<&str>,
    errors: &[String],
) -> Response {
    let admin = || session.admin.clone();
    let queue = |status: &str| {
        let query = HashMap::from([
            ("status".to_string(), status.to_string()),
            ("page_size".into(), "100".into()),
        ]);
        admin::payouts::list(State(state.clone()), admin(), Query(query))
    };
    let (pending, review) = (data(queue("pending").await), data(queue("review").await));
    let batches = data(
        admin::payout_batches::list(State(state.clone()), admin(), Query(HashMap::new())).await,
    );
    let (pending, review, batches) = match (pending, review, batches) {
        (Ok(p), Ok(r), Ok(b)) => (p, r, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(session, "Payouts", &e),
    };
    let rows: Vec<&Value> = pending["results"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(review["results"].as_array().into_iter().flatten())
        .collect();
    page(
        session,
        "Payouts",
        html! {
            (notice(done, errors))
            h2 { "Waiting to be paid" }
            div.scroll { table {
                thead { tr { th scope="col" { "Payout" } th scope="col" { "Affiliate" } th scope="col" { "Amount" }
                    th scope="col" { "Method" } th scope="col" { "Address" } th scope="col" { "Status" } th scope="col" { "Batch" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for p in &rows {
                        tr {
                            td { (text(&p["id"])) }
                            td { a href=(format!("/console/affiliates/{}", p["affiliate_id"])) { (text(&p["affiliate_id"])) } }
                            td { (text(&p["amount"])) }
                            td { (text(&p["method"])) }
                            td { (text(&p["address"])) }
                            td { (text(&p["status"])) }
                            td { (text(&p["batch_id"])) }
                            td.actions {
                                form.inline method="post" action=(format!("/console/payouts/{}/mark-paid", p["id"])) {
                                    (csrf_field(&session.key))
                                    button type="submit" aria-label=(format!("Mark payout {} paid", p["id"])) { "Mark paid" }
                                }
                                form.inline method="post" action=(format!("/console/payouts/{}/cancel", p["id"])) {
                                    (csrf_field(&session.key))
                                    button.secondary type="submit" aria-label=(format!("Cancel payout {}", p["id"])) { "Cancel" }
                                }
                            }
                        }
                    }
                }
            } }
            @if rows.is_empty() { p { "Nothing is waiting." } }
            h2 { "Batches" }
            form method="post" action="/console/payout-batches" {
                (csrf_field(&session.key))
                label for="batch-method" { "New batch of every payable balance paid by" }
                select #batch-method name="method" {
                    @for m in ["paypal", "wise", "bank", "crypto"] { option value=(m) { (m) } }
                }
                button type="submit" { "Create batch" }
            }
            ul {
                @for b in batches["results"].as_array().into_iter().flatten() {
                    li {
                        a href=(format!("/console/payout-batches/{}", b["id"])) { "Batch " (text(&b["id"])) }
                        " · " (text(&b["method"])) " · " (text(&b["line_count"])) " lines · " (text(&b["total_amount"])) " " (text(&b["currency"])) " · " (text(&b["status"]))
                    }
                }
            }
        },
    )
}

async fn payout_action(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    let (s, a, p) = (State(state.clone()), session.admin.clone(), Path(id));
    let outcome = match action.as_str() {
        "mark-paid" => data(admin::payouts::mark_paid(s, a, p).await).map(|_| "paid"),
        "cancel" => data(admin::payouts::cancel(s, a, p).await).map(|_| "cancelled"),
        _ => Err(ApiError::NotFound),
    };
    match outcome {
        Ok(done) => page::done_redirect("/console/payouts", done),
        Err(error) => payouts_page(&state, &session, None, &problems(&error)).await,
    }
}

async fn create_batch(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    match admin::payout_batches::create(
        State(state.clone()),
        session.admin.clone(),
        json_body(&form, &["method"]),
    )
    .await
    {
        Ok((_, axum::Json(envelope))) => {
            Redirect::to(&format!("/console/payout-batches/{}", envelope.data.id)).into_response()
        }
        Err(error) => payouts_page(&state, &session, None, &problems(&error.0)).await,
    }
}

async fn batch(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    batch_page(&state, &session, &id, page::done_message(&query), &[]).await
}

async fn batch_page(
    state: &AppState,
    session: &Session,
    id: &str,
    done: Option<&str>,
    errors: &[String],
) -> Response {
    let b = match data(
        admin::payout_batches::show(
            State(state.clone()),
            session.admin.clone(),
            Path(id.to_string()),
        )
        .await,
    ) {
        Ok(b) => b,
        Err(error) => return failed(session, "Payout batch", &error),
    };
    let formats: &[&str] = match b["method"].as_str() {
        Some("paypal") => &["paypal", "json"],
        Some("wise") | Some("bank") => &["wise", "json"],
        _ => &["json"],
    };
    page(
        session,
        &format!("Payout batch {}", text(&b["id"])),
        html! {
            (notice(done, errors))
            p { (text(&b["method"])) " · " (text(&b["status"])) " · total " (text(&b["total_amount"])) " " (text(&b["currency"]))
                " · paid " (text(&b["paid_amount"])) " · open " (text(&b["open_amount"])) }
            p { "Export: " @for f in formats { a.button href=(format!("/console/payout-batches/{}/export?format={f}", b["id"])) download { (f) } " " } }
            div.scroll { table {
                thead { tr { th scope="col" { "Payout" } th scope="col" { "Affiliate" } th scope="col" { "Amount" } th scope="col" { "Address" }
                    th scope="col" { "Status" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for line in b["lines"].as_array().into_iter().flatten() {
                        tr {
                            td { (text(&line["payout_id"])) }
                            td { (text(&line["name"])) }
                            td { (text(&line["amount"])) }
                            td { (text(&line["address"])) }
                            td { (text(&line["status"])) @if !line["failure_reason"].is_null() { ": " (text(&line["failure_reason"])) } }
                            td.actions {
                                @if line["status"] == "pending" {
                                    form.inline method="post" action=(format!("/console/payout-batches/{}/results", b["id"])) {
                                        (csrf_field(&session.key))
                                        input type="hidden" name="payout_id" value=(text(&line["payout_id"]));
                                        input type="hidden" name="status" value="paid";
                                        button type="submit" { "Paid" }
                                    }
                                    form.inline method="post" action=(format!("/console/payout-batches/{}/results", b["id"])) {
                                        (csrf_field(&session.key))
                                        input type="hidden" name="payout_id" value=(text(&line["payout_id"]));
                                        input type="hidden" name="status" value="failed";
                                        label.sr-only for=(format!("reason-{}", line["payout_id"])) { "Why it failed" }
                                        input id=(format!("reason-{}", line["payout_id"])) name="reason" placeholder="Why it failed" required;
                                        button.secondary type="submit" { "Failed" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        },
    )
}

async fn export_batch(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match admin::payout_batches::export(
        State(state.clone()),
        session.admin.clone(),
        Path(id),
        Query(query),
    )
    .await
    {
        Ok(file) => file,
        Err(error) => failed(&session, "Export", &error.0),
    }
}

async fn batch_result(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    let line = page::json_fields(&form, &["payout_id", "status", "reason"]);
    let body = Bytes::from(serde_json::json!({"lines": [line]}).to_string());
    let outcome = data(
        admin::payout_batches::record_results(
            State(state.clone()),
            session.admin.clone(),
            Path(id.clone()),
            body,
        )
        .await,
    );
    match outcome {
        Ok(_) => page::done_redirect(&format!("/console/payout-batches/{id}"), "recorded"),
        Err(error) => batch_page(&state, &session, &id, None, &problems(&error)).await,
    }
}

// ---- webhooks and parked events

async fn webhooks(State(state): State<AppState>, session: Session) -> Response {
    let endpoints =
        match data(admin::webhooks::list(State(state.clone()), session.admin.clone()).await) {
            Ok(e) => e,
            Err(error) => return failed(&session, "Webhooks", &error),
        };
    let mut logs = Vec::new();
    for endpoint in endpoints.as_array().into_iter().flatten() {
        let log = data(
            admin::webhooks::deliveries(
                State(state.clone()),
                session.admin.clone(),
                Path(text(&endpoint["id"])),
                Query(HashMap::new()),
            )
            .await,
        )
        .unwrap_or(Value::Null);
        logs.push((endpoint.clone(), log));
    }
    page(
        &session,
        "Webhooks",
        html! {
            @if logs.is_empty() { p { "No endpoint is registered (POST /api/v1/affiliate/webhooks/)." } }
            @for (endpoint, log) in &logs {
                section {
                    h2 { (text(&endpoint["url"])) }
                    p { @if endpoint["enabled"] == true { "Enabled" } @else { "Disabled: " (text(&endpoint["disabled_reason"])) }
                        " · " (text(&endpoint["consecutive_failures"])) " failures in a row" }
                    div.scroll { table {
                        thead { tr { th scope="col" { "Event" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Attempts" } } }
                        tbody { @for d in log["results"].as_array().into_iter().flatten() {
                            tr { td { (text(&d["event_id"])) } td { (text(&d["event_type"])) } td { (text(&d["status"])) } td { (text(&d["attempts"])) } }
                        } }
                    } }
                }
            }
        },
    )
}

#[derive(sqlx::FromRow)]
struct ParkedLine {
    topic: String,
    kafka_partition: i32,
    kafka_offset: i64,
    event_id: Option<String>,
    reason: String,
    parked_at: chrono::DateTime<chrono::Utc>,
    redrive_requested_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn parked(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rows: Vec<ParkedLine> = match sqlx::query_as(
        "SELECT topic, kafka_partition, kafka_offset, event_id, reason, parked_at, redrive_requested_at
         FROM parked_events WHERE resolved_at IS NULL ORDER BY parked_at DESC LIMIT 200",
    )
    .fetch_all(&state.pool)
    .await
    {
        Ok(rows) => rows,
        Err(err) => return failed(&session, "Parked events", &err.into()),
    };
    let reasons: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.reason.as_str()).collect();
    page(
        &session,
        "Parked events",
        html! {
            (notice(page::done_message(&query), &[]))
            p { "Events the aggregator could not apply, with why. Once the cause is fixed (an affiliate \
                 reactivated, a code created), re-drive them: the aggregator publishes each again within \
                 seconds, where it counts once, or is parked again if its cause remains. The same from a \
                 shell: " code { "aggregator parked redrive --reason \"…\"" } "." }
            @for reason in &reasons {
                form.inline method="post" action="/console/parked/redrive" {
                    (csrf_field(&session.key))
                    input type="hidden" name="reason" value=(reason);
                    button type="submit" { "Re-drive all: " (reason) }
                }
                " "
            }
            div.scroll { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Reason" }
                    th scope="col" { "Where" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody { @for row in &rows {
                    tr {
                        td { (row.parked_at.format("%Y-%m-%d %H:%M")) }
                        td { (row.event_id.as_deref().unwrap_or("—")) }
                        td { (row.reason) }
                        td { (row.topic) " " (row.kafka_partition) "/" (row.kafka_offset) }
                        td.actions {
                            @if row.redrive_requested_at.is_some() { "re-drive requested" }
                            @else if let Some(event) = &row.event_id {
                                form.inline method="post" action="/console/parked/redrive" {
                                    (csrf_field(&session.key))
                                    input type="hidden" name="event_id" value=(event);
                                    button type="submit" aria-label=(format!("Re-drive {event}")) { "Re-drive" }
                                }
                            }
                        }
                    }
                } }
            } }
            @if rows.is_empty() { p { "Nothing is parked." } }
        },
    )
}

/// Marks parked conversions (by reason, or one event id) for the aggregator to re-drive.
async fn redrive(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = session.refuse_forged(&form) {
        return refusal;
    }
    let (reason, event) = (form.get("reason"), form.get("event_id"));
    if reason.is_none() && event.is_none() {
        return failed(
            &session,
            "Parked events",
            &ApiError::field("reason", "Name a reason or an event."),
        );
    }
    let marked = sqlx::query(
        "UPDATE parked_events SET redrive_requested_at = now(), redrive_requested_by = $3
         WHERE resolved_at IS NULL AND redrive_requested_at IS NULL AND event_id IS NOT NULL
           AND (reason = $1 OR event_id = $2)",
    )
    .bind(reason)
    .bind(event)
    .bind(&session.admin.email)
    .execute(&state.pool)
    .await;
    match marked {
        Ok(_) => page::done_redirect("/console/parked", "redrive"),
        Err(err) => failed(&session, "Parked events", &err.into()),
    }
}
