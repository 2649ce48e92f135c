//! The click path: `GET /?ref=CODE` and `GET /r/CODE` (HEAD answers the same).
//!
//! Everything here is in memory: the code is looked up in the directory snapshot, the
//! verdicts need only the request, and the event is handed to the producer's queue
//! without waiting. No network call happens before the 302 goes out.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{ALLOW, CACHE_CONTROL, LOCATION, REFERER, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use reftrack_common::server::FastPath;
use reftrack_events::click::{MAX_CODE_LEN, MAX_HEADER_LEN, format_click_id, truncate};
use reftrack_events::{ClickEvent, ClickMethod, ClickVerdict, ReferralCode};
use uuid::timestamp::context::ThreadLocalContext;
use uuid::{ContextV7, Timestamp, Uuid};

use crate::cookie::CookiePolicy;
use crate::directory::Directory;
use crate::metrics as m;
use crate::producer::ClickProducer;
use crate::redirect::{ClickQuery, Landing, RedirectPolicy, split_query};
use crate::verdict::{BotDetector, VisitorHasher, is_prefetch};

pub struct ClickState {
    pub directory: Directory,
    pub landing: Landing,
    pub redirects: RedirectPolicy,
    pub cookie: CookiePolicy,
    pub visitors: VisitorHasher,
    pub bots: BotDetector,
    pub producer: Arc<ClickProducer>,
    pub client_ip: crate::client_ip::ClientIp,
    pub country_header: HeaderName,
    /// The landing URL's parameter carrying the click id (`None`: not appended).
    pub click_id_param: Option<String>,
}

/// The click routes, as the request metrics name them.
const BY_QUERY: &str = "/";
const BY_PATH: &str = "/r/{code}";

/// `GET /?ref=CODE&...` and `GET /r/CODE?...`, answered before routing (see
/// [`FastPath`]): a redirect needs nothing the router's layers give.
impl FastPath for ClickState {
    fn answer(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Option<(&'static str, Response)> {
        let path = request.uri().path();
        let (route, path_code) = if path == BY_QUERY {
            (BY_QUERY, None)
        } else {
            let raw = path
                .strip_prefix("/r/")
                .filter(|c| !c.is_empty() && !c.contains('/'))?;
            (BY_PATH, Some(percent_decode_str(raw).decode_utf8().ok()?))
        };
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Some((route, method_not_allowed()));
        }
        let query = split_query(request.uri().query().unwrap_or_default());
        let response = match path_code.as_ref().or(query.code.as_ref()) {
            Some(code) => self.click(code, &query, peer, request),
            // A bare visit: send it on, nothing to record.
            None => redirect(
                &self
                    .redirects
                    .location(&self.landing, None, &query.passthrough, None),
                None,
            ),
        };
        Some((route, response))
    }
}

impl ClickState {
    fn click(
        &self,
        raw_code: &str,
        query: &ClickQuery<'_>,
        peer: SocketAddr,
        request: &Request<Incoming>,
    ) -> Response {
        let (event_id, now_ms) = click_id_and_time();
        let headers = request.headers();
        let code = ReferralCode::parse(raw_code);
        let snapshot = self.directory.snapshot();
        let affiliate = code.as_ref().and_then(|c| snapshot.affiliate(c.as_str()));
        let user_agent = header_text(headers, &USER_AGENT).unwrap_or_default();

        let verdict = if affiliate.is_none() {
            ClickVerdict::UnknownCode
        } else if self.bots.is_bot(&user_agent) {
            ClickVerdict::Bot
        } else if is_prefetch(request.method(), headers) {
            ClickVerdict::Prefetch
        } else {
            ClickVerdict::Valid
        };
        m::ClickCounters::get().verdict(verdict).increment(1);

        let code_text: Cow<'_, str> = match &code {
            Some(code) => Cow::Borrowed(code.as_str()),
            None => Cow::Borrowed(truncate(raw_code, MAX_CODE_LEN)),
        };
        let event = ClickEvent {
            event_id,
            code: code_text,
            affiliate_id: affiliate.map(|a| a.id),
            received_at_ms: now_ms,
            visitor: self.visitors.hash(
                self.client_ip.resolve(headers, peer.ip()),
                &user_agent,
                now_ms,
            ),
            user_agent,
            referer: header_text(headers, &REFERER),
            method: if request.method() == Method::HEAD {
                ClickMethod::Head
            } else {
                ClickMethod::Get
            },
            country: self.country(headers),
            verdict,
        };
        self.producer.send(&event.code, &event.encode());

        let landing = affiliate
            .and_then(|a| a.landing.as_deref())
            .unwrap_or(&self.landing);
        // Only an attributable click gets a click id: in the cookie, and for products on
        // another domain (which cannot read the cookie) on the landing URL.
        let click_id = affiliate.map(|_| format_click_id(&event.code, event.event_id));
        let click_param = click_id.as_deref().zip(self.click_id_param.as_deref());
        let location = self.redirects.location(
            landing,
            query.to.as_deref(),
            &query.passthrough,
            click_param,
        );
        let cookie = click_id
            .as_deref()
            .and_then(|id| self.cookie.set_cookie(headers, id));
        redirect(&location, cookie)
    }

    fn country<'r>(&self, headers: &'r HeaderMap) -> Option<Cow<'r, str>> {
        let value = headers.get(&self.country_header)?.to_str().ok()?;
        (value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| Cow::Owned(value.to_ascii_uppercase()))
    }
}

/// A header's text, bounded in length; invalid UTF-8 is replaced, not rejected.
fn header_text<'r>(headers: &'r HeaderMap, name: &HeaderName) -> Option<Cow<'r, str>> {
    let bytes = headers.get(name)?.as_bytes();
    let bytes = &bytes[..bytes.len().min(MAX_HEADER_LEN)];
    Some(match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => Cow::Borrowed(truncate(s, MAX_HEADER_LEN)),
        Cow::Owned(s) => Cow::Owned(s),
    })
}

/// A click's id (a UUID v7) and its time in milliseconds, from one clock reading. The
/// v7 counter keeping ids ordered is per worker thread, so workers share no lock.
fn click_id_and_time() -> (Uuid, i64) {
    thread_local! {
        static CONTEXT: ContextV7 = const { ContextV7::new() };
    }
    let timestamp = Timestamp::now(ThreadLocalContext::new(&CONTEXT));
    let (secs, nanos) = timestamp.to_unix();
    let ms = i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000 + i64::from(nanos / 1_000_000);
    (Uuid::new_v7(timestamp), ms)
}

fn method_not_allowed() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// A 302 that browsers and proxies must not cache (each click must reach ingest).
fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    let location =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    headers.insert(LOCATION, location);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}
