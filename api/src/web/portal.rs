//! The promoter portal (`/portal/`): the referral link with a copy button, balances
//! (pending, payable, paid), the 7-day earnings chart, referrals, payouts with their
//! status, the payout method, the minimum withdrawal balance, and withdraw.
//!
//! The product signs a promoter in by sending them to `/portal/login?token=JWT` with a
//! short-lived promoter token (the same token the promoter API takes, e.g. `api token
//! --user-id 42 --ttl-secs 300`); the portal keeps it in an HttpOnly cookie and drops it
//! from the address bar. When it expires, the product hands over a new one.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::Value;

use super::page::{self, csrf_field, csrf_ok, json_body, layout, notice, problems, respond, text};
use crate::auth::Promoter;
use crate::error::ApiError;
use crate::promoter;
use crate::state::AppState;

const COOKIE: &str = "rt_portal";
const HOME: &str = "/portal/";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/", get(home))
        .route("/portal/login", get(login))
        .route("/portal/payout-method", post(set_payout_method))
        .route("/portal/min-withdrawal", post(set_min_withdrawal))
        .route("/portal/withdraw", post(withdraw))
}

struct Session {
    promoter: Promoter,
    token: String,
}

/// The promoter signed in, or the page that says they are not.
fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    let out = || Box::new(signed_out());
    let token = page::cookie(headers, COOKIE).ok_or_else(out)?;
    let promoter = state.tokens.verify(token).ok_or_else(out)?;
    Ok(Session {
        promoter,
        token: token.to_string(),
    })
}

fn signed_out() -> Response {
    respond(
        StatusCode::UNAUTHORIZED,
        layout(
            "Signed out",
            nav(),
            html! { p { "Your session has ended. Open the portal again from the product." } },
        ),
    )
}

fn nav() -> Markup {
    html! { nav aria-label="Portal" { a.brand href=(HOME) { "Referral program" } } }
}

/// The product's hand-over: keeps the token in a cookie, then shows the portal without
/// it in the address bar (or in the history).
async fn login(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    if state.tokens.verify(token).is_none() {
        return signed_out();
    }
    // Lax: the product's link is a top-level navigation from its own site.
    let cookie = page::set_cookie(
        COOKIE,
        token,
        "/portal",
        "Lax",
        state.settings.web_cookie_secure,
    );
    let mut answer = page::redirect_with_cookie(HOME, cookie);
    answer
        .headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    answer
}

async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match session(&state, &headers) {
        Ok(session) => portal(&state, &session, page::done_message(&query), &[]).await,
        Err(out) => *out,
    }
}

/// The JSON of a promoter API answer.
fn json<T: serde::Serialize>(
    answer: Result<axum::Json<T>, crate::error::PromoterError>,
) -> Result<Value, ApiError> {
    let axum::Json(value) = answer.map_err(|e| e.0)?;
    Ok(serde_json::to_value(value).expect("answers serialise"))
}

async fn portal(
    state: &AppState,
    session: &Session,
    done: Option<&str>,
    errors: &[String],
) -> Response {
    let me = || session.promoter.clone();
    let s = || State(state.clone());
    // One read of the promoter: its view (as GET /referrals/promoter answers) and the
    // held amount the view does not carry.
    let row = match promoter::promoter_row(state, &session.promoter).await {
        Ok(row) => row,
        Err(error) => {
            return respond(
                error.status(),
                layout("Referral program", nav(), notice(None, &problems(&error))),
            );
        }
    };
    let view =
        serde_json::to_value(promoter::view(&state.settings, &row)).expect("views serialise");
    let pending = text(&serde_json::json!(row.balances().held));
    let earnings = json(promoter::recent_earnings(s(), me()).await).unwrap_or(Value::Null);
    let referrals =
        json(promoter::referrals(s(), me(), Query(HashMap::new())).await).unwrap_or(Value::Null);
    let payouts = json(promoter::payouts(s(), me()).await).unwrap_or(Value::Null);
    let days: Vec<String> = earnings
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| text(&d["day"]))
        .collect();
    let values: Vec<f64> = earnings
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| text(&d["value"]).parse().unwrap_or(0.0))
        .collect();
    let method = &view["activePayoutMethod"];
    let link = text(&view["referralLink"]);
    respond(
        StatusCode::OK,
        layout(
            "Referral program",
            nav(),
            html! {
                (notice(done, errors))
                section.card aria-labelledby="link-title" {
                    h2 #link-title { "Your link" }
                    div.copy {
                        label.sr-only for="referral-link" { "Referral link" }
                        input #referral-link readonly value=(link);
                        button type="button" data-copy="referral-link" { "Copy link" }
                        span.copied role="status" aria-live="polite" {}
                    }
                    p { (text(&view["linkClicked"])) " clicks · commission " (text(&view["commissionRate"])) " %" }
                }
                section aria-labelledby="money" {
                    h2 #money { "Balances" }
                    dl.facts {
                        dt { "Pending" } dd #pending { (pending) }
                        dt { "Payable" } dd #payable { (text(&view["currentBalance"])) }
                        dt { "Paid" } dd #paid { (text(&view["totalPaid"])) }
                        dt { "Earned" } dd { (text(&view["totalEarned"])) }
                    }
                    (page::chart("earnings-chart", "Earnings, last 7 days", &days, &[("Earnings", values)]))
                    form method="post" action="/portal/withdraw" {
                        (csrf_field(&session.token))
                        button type="submit" { "Withdraw " (text(&view["currentBalance"])) }
                    }
                }
                section aria-labelledby="method" {
                    h2 #method { "How you are paid" }
                    form method="post" action="/portal/payout-method" {
                        (csrf_field(&session.token))
                        label for="payout-method-type" { "Method" }
                        select #payout-method-type name="method" {
                            @for (value, label) in [("paypal", "PayPal"), ("wise", "Wise"), ("bank", "Bank transfer (IBAN)"), ("crypto", "Crypto wallet")] {
                                option value=(value) selected[method["method"] == value] { (label) }
                            }
                        }
                        label for="payment-address" { "Email, IBAN or wallet" }
                        input #payment-address name="payment_address" required value=(method["paymentAddress"].as_str().unwrap_or_default());
                        button type="submit" { "Save method" }
                    }
                    form method="post" action="/portal/min-withdrawal" {
                        (csrf_field(&session.token))
                        label for="min-withdrawal" { "Pay me once my balance reaches" }
                        input #min-withdrawal name="min_withdrawal_balance" inputmode="decimal" value=(text(&view["minWithdrawalBalance"]));
                        button type="submit" { "Save minimum" }
                    }
                }
                section aria-labelledby="referrals-title" {
                    h2 #referrals-title { "Referrals" }
                    div.scroll { table {
                        thead { tr { th scope="col" { "Joined" } th scope="col" { "Status" } th scope="col" { "Commission" } th scope="col" { "State" } } }
                        tbody { @for r in referrals["results"].as_array().into_iter().flatten() {
                            tr { td { (text(&r["createdAt"])) } td { (text(&r["status"])) } td { (text(&r["commissionAmount"])) } td { (text(&r["commissionStatus"])) } }
                        } }
                    } }
                }
                section aria-labelledby="payouts-title" {
                    h2 #payouts-title { "Payouts" }
                    div.scroll { table {
                        thead { tr { th scope="col" { "Requested" } th scope="col" { "Amount" } th scope="col" { "Status" } } }
                        tbody { @for p in payouts.as_array().into_iter().flatten() {
                            tr { td { (text(&p["createdAt"])) } td { (text(&p["amount"])) } td { (text(&p["status"])) } }
                        } }
                    } }
                }
            },
        ),
    )
}

/// Runs a form's action as the promoter, then shows the portal with what happened.
async fn act(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    run: impl AsyncFnOnce(Promoter) -> Result<&'static str, ApiError>,
) -> Response {
    let session = match session(state, headers) {
        Ok(s) => s,
        Err(out) => return *out,
    };
    if !csrf_ok(&session.token, form) {
        return respond(
            StatusCode::FORBIDDEN,
            layout(
                "Not allowed",
                nav(),
                html! { p { "This form has expired. Reload the page and try again." } },
            ),
        );
    }
    match run(session.promoter.clone()).await {
        Ok(done) => page::done_redirect(HOME, done),
        Err(error) => {
            let status = error.status();
            let mut answer = portal(state, &session, None, &problems(&error)).await;
            *answer.status_mut() = status;
            answer
        }
    }
}

async fn set_payout_method(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let body = json_body(&form, &["method", "payment_address"]);
    act(&state, &headers, &form, async |me| {
        json(promoter::set_payout_method(State(state.clone()), me, body).await).map(|_| "method")
    })
    .await
}

async fn set_min_withdrawal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let body = json_body(&form, &["min_withdrawal_balance"]);
    act(&state, &headers, &form, async |me| {
        json(promoter::set_min_withdrawal_balance(State(state.clone()), me, body).await)
            .map(|_| "minimum")
    })
    .await
}

async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&state, &headers, &form, async |me| {
        promoter::withdraw(State(state.clone()), me, HeaderMap::new())
            .await
            .map(|_| "withdrawn")
            .map_err(|e| e.0)
    })
    .await
}
