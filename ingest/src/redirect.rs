//! Where a click is sent: the landing page (global or the affiliate's), or a `to=` deep
//! link when it stays on an allowed host, with the link's other query parameters
//! (utm_* and the rest) passed through.
//!
//! A deep link is judged on the URL a browser would actually follow: it is resolved
//! against the landing page with a WHATWG URL parser (which is what browsers use), and
//! only the parsed scheme, credentials and host are checked. Tricks such as `//evil`,
//! `\\evil`, `user@evil`, encoded slashes, mixed-case schemes, IDN hosts or CR/LF never
//! reach the check as text, so they cannot get past it.

use std::borrow::Cow;
use std::collections::HashSet;

use url::Url;

/// A landing page, parsed once and serialised once.
#[derive(Debug, Clone)]
pub struct Landing {
    url: Url,
    /// `url` without its fragment, ready to receive query parameters.
    base: String,
    fragment: Option<String>,
}

impl Landing {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("{s} is not an http(s) URL with a host"));
        }
        Ok(Self::from_url(url))
    }

    fn from_url(mut url: Url) -> Self {
        let fragment = url.fragment().map(str::to_string);
        url.set_fragment(None);
        Self {
            base: url.as_str().to_string(),
            url,
            fragment,
        }
    }

    pub fn host(&self) -> Option<&str> {
        self.url.host_str()
    }
}

/// Which hosts a deep link may point at, besides the landing page's own host.
#[derive(Debug, Clone, Default)]
pub struct RedirectPolicy {
    allowed_hosts: HashSet<String>,
}

/// Longest `to=` value considered; longer ones are ignored.
const MAX_DEEP_LINK_LEN: usize = 2048;

impl RedirectPolicy {
    /// `hosts` are normalised the way URLs normalise them (lower case, punycode).
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        let allowed_hosts = hosts
            .into_iter()
            .filter(|h| !h.is_empty())
            .filter_map(|h| Url::parse(&format!("http://{h}/")).ok())
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect();
        Self { allowed_hosts }
    }

    /// The `Location` of a click: the deep link when it is allowed, else the landing
    /// page; then the pass-through query (already URI-safe: it came from the request line)
    /// and the click id as `(id, parameter name)` when given (both URI-safe by
    /// construction: a referral code, a dot and hex digits; the name checked in config).
    pub fn location(
        &self,
        landing: &Landing,
        to: Option<&str>,
        passthrough: &str,
        click_id: Option<(&str, &str)>,
    ) -> String {
        let target = to.and_then(|to| self.deep_link(landing, to));
        let target = target.as_ref().unwrap_or(landing);
        let mut out = String::with_capacity(target.base.len() + passthrough.len() + 64);
        out.push_str(&target.base);
        let mut separator = if target.base.contains('?') { '&' } else { '?' };
        if !passthrough.is_empty() {
            out.push(separator);
            out.push_str(passthrough);
            separator = '&';
        }
        if let Some((id, name)) = click_id {
            out.push(separator);
            out.push_str(name);
            out.push('=');
            out.push_str(id);
        }
        if let Some(fragment) = &target.fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }

    /// The deep link resolved against the landing page, if it may be followed.
    pub fn deep_link(&self, landing: &Landing, to: &str) -> Option<Landing> {
        if to.is_empty() || to.len() > MAX_DEEP_LINK_LEN {
            return None;
        }
        let url = landing.url.join(to).ok()?;
        let host = url.host_str()?;
        let allowed = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && (Some(host) == landing.host() || self.allowed_hosts.contains(host));
        allowed.then(|| Landing::from_url(url))
    }
}

/// A click's query string, read in one pass: `ref` and `to` (decoded), and every other
/// parameter passed through exactly as the link carried it (utm_* and the rest).
#[derive(Debug, Default)]
pub struct ClickQuery<'q> {
    pub code: Option<Cow<'q, str>>,
    pub to: Option<Cow<'q, str>>,
    pub passthrough: String,
}

pub fn split_query(query: &str) -> ClickQuery<'_> {
    let mut parts = ClickQuery {
        passthrough: String::with_capacity(query.len()),
        ..ClickQuery::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap_or_default();
        match &*key {
            "ref" if parts.code.is_none() => parts.code = Some(value),
            "to" if parts.to.is_none() => parts.to = Some(value),
            "ref" | "to" => {}
            _ => {
                if !parts.passthrough.is_empty() {
                    parts.passthrough.push('&');
                }
                parts.passthrough.push_str(pair);
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn landing() -> Landing {
        Landing::parse("https://product.example/welcome?src=ref#top").unwrap()
    }

    #[test]
    fn passes_other_parameters_through_and_keeps_the_fragment_last() {
        let policy = RedirectPolicy::default();
        assert_eq!(
            policy.location(&landing(), None, "utm_source=x&utm_medium=y%20z", None),
            "https://product.example/welcome?src=ref&utm_source=x&utm_medium=y%20z#top"
        );
        let plain = Landing::parse("https://product.example/").unwrap();
        assert_eq!(
            policy.location(&plain, None, "", None),
            "https://product.example/"
        );
        assert_eq!(
            policy.location(&plain, None, "a=1", None),
            "https://product.example/?a=1"
        );
    }

    #[test]
    fn the_click_id_comes_after_the_passed_through_query_and_before_the_fragment() {
        let policy = RedirectPolicy::default();
        let id = Some(("AB12.0193", "rt_click"));
        assert_eq!(
            policy.location(&landing(), None, "utm_source=x", id),
            "https://product.example/welcome?src=ref&utm_source=x&rt_click=AB12.0193#top"
        );
        let plain = Landing::parse("https://product.example/").unwrap();
        assert_eq!(
            policy.location(&plain, None, "", id),
            "https://product.example/?rt_click=AB12.0193"
        );
        assert_eq!(
            policy.location(&plain, Some("/pricing"), "", id),
            "https://product.example/pricing?rt_click=AB12.0193"
        );
    }

    #[test]
    fn reads_ref_and_to_and_passes_the_rest_through_raw() {
        let q = split_query(
            "ref=abc&utm_source=x&to=%2Fp&%72ef=second&reference=kept&a&utm_term=a%20b",
        );
        assert_eq!(q.code.as_deref(), Some("abc"));
        assert_eq!(q.to.as_deref(), Some("/p"));
        assert_eq!(
            q.passthrough,
            "utm_source=x&reference=kept&a&utm_term=a%20b"
        );
        assert!(split_query("").code.is_none());
    }

    #[test]
    fn follows_relative_and_allowed_deep_links_only() {
        let policy = RedirectPolicy::new(["docs.product.example", "BÜCHER.example"]);
        let l = landing();
        let loc = |to: &str| policy.location(&l, Some(to), "", None);
        assert_eq!(
            loc("/pricing?plan=pro"),
            "https://product.example/pricing?plan=pro"
        );
        assert_eq!(
            loc("https://docs.product.example/a"),
            "https://docs.product.example/a"
        );
        assert_eq!(
            loc("https://xn--bcher-kva.example/"),
            "https://xn--bcher-kva.example/"
        );
        assert_eq!(
            loc("https://bücher.example/x"),
            "https://xn--bcher-kva.example/x"
        );
        for evil in [
            "//evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "https://product.example@evil.example/",
        ] {
            assert_eq!(
                loc(evil),
                "https://product.example/welcome?src=ref#top",
                "{evil}"
            );
        }
    }
}
