//! The attribution cookie: `NAME=CODE.CLICK_ID`, which the product's backend reads and
//! sends back with conversions as `click_id`.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use reftrack_events::click::parse_click_id;

use crate::config::AttributionPolicy;

#[derive(Debug, Clone)]
pub struct CookiePolicy {
    name: String,
    /// The fixed attributes, pre-rendered: `; Max-Age=...; Path=/; ...`.
    attributes: String,
    policy: AttributionPolicy,
}

impl CookiePolicy {
    pub fn new(
        name: &str,
        window_days: u32,
        domain: Option<&str>,
        secure: bool,
        policy: AttributionPolicy,
    ) -> Self {
        let mut attributes = format!("; Max-Age={}; Path=/", u64::from(window_days) * 86_400);
        if let Some(domain) = domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        if secure {
            attributes.push_str("; Secure");
        }
        attributes.push_str("; HttpOnly; SameSite=Lax");
        Self {
            name: name.to_string(),
            attributes,
            policy,
        }
    }

    /// The `Set-Cookie` value for this click (`click_id` as `format_click_id` makes it), or `None` when first-click attribution
    /// keeps the visitor's existing cookie.
    pub fn set_cookie(&self, request_headers: &HeaderMap, click_id: &str) -> Option<String> {
        if self.policy == AttributionPolicy::FirstClick && self.has_attribution(request_headers) {
            return None;
        }
        let mut out =
            String::with_capacity(self.name.len() + click_id.len() + 1 + self.attributes.len());
        out.push_str(&self.name);
        out.push('=');
        out.push_str(click_id);
        out.push_str(&self.attributes);
        Some(out)
    }

    /// Whether the request carries a well-formed attribution cookie.
    fn has_attribution(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.name && parse_click_id(value).is_some())
    }
}
