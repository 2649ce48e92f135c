//! The click verdicts ingest can decide from the request alone, and the visitor hash.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderName, Method};
use hmac::{Hmac, Mac};
use reftrack_common::config::reveal;
use secrecy::SecretString;
use sha2::Sha256;
use siphasher::sip::SipHasher13;

/// Known bots by user agent, from the maintained `isbot` pattern list. User agents repeat
/// a lot, so verdicts are cached and the big regex runs once per distinct agent.
pub struct BotDetector {
    bots: isbot::Bots,
    cache: quick_cache::sync::Cache<String, bool>,
}

/// The maintained crawler-user-agents list, refreshed by `scripts/refresh-bot-patterns`.
const CRAWLER_PATTERNS: &str = include_str!("../bots/crawler-user-agents.txt");

impl BotDetector {
    /// isbot's patterns and the crawler-user-agents list, as one expression.
    pub fn new() -> Self {
        let mut bots = isbot::Bots::default();
        let crawlers: Vec<&str> = CRAWLER_PATTERNS
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .collect();
        bots.append(&crawlers);
        Self {
            bots,
            cache: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// A missing user agent counts as a bot: browsers always send one.
    pub fn is_bot(&self, user_agent: &str) -> bool {
        if user_agent.trim().is_empty() {
            return true;
        }
        if let Some(verdict) = self.cache.get(user_agent) {
            return verdict;
        }
        let verdict = self.bots.is_bot(user_agent);
        self.cache.insert(user_agent.to_owned(), verdict);
        verdict
    }
}

impl Default for BotDetector {
    fn default() -> Self {
        Self::new()
    }
}

/// A request a browser made ahead of the user (HEAD, or a prefetch/preview hint).
pub fn is_prefetch(method: &Method, headers: &HeaderMap) -> bool {
    const SEC_PURPOSE: HeaderName = HeaderName::from_static("sec-purpose");
    const PURPOSE: HeaderName = HeaderName::from_static("purpose");
    const X_MOZ: HeaderName = HeaderName::from_static("x-moz");
    const X_PURPOSE: HeaderName = HeaderName::from_static("x-purpose");
    let says = |name: HeaderName, word: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(word))
    };
    method == Method::HEAD
        || says(SEC_PURPOSE, "prefetch")
        || says(PURPOSE, "prefetch")
        || says(X_MOZ, "prefetch")
        || says(X_PURPOSE, "preview")
}

const DAY_MS: i64 = 86_400_000;

/// A keyed hash of client IP and user agent. The key is derived per UTC day from the
/// secret, so a visitor is recognisable within a day (dedupe, unique counts) and not
/// across days, and the raw IP never leaves this function.
pub struct VisitorHasher {
    secret: SecretString,
    day_key: ArcSwap<DayKey>,
}

struct DayKey {
    day: i64,
    k0: u64,
    k1: u64,
}

impl VisitorHasher {
    pub fn new(secret: SecretString) -> Self {
        let day_key = ArcSwap::from_pointee(derive_key(&secret, 0));
        Self { secret, day_key }
    }

    pub fn hash(&self, ip: IpAddr, user_agent: &str, now_ms: i64) -> u64 {
        let day = now_ms.div_euclid(DAY_MS);
        let mut key = self.day_key.load();
        if key.day != day {
            self.day_key.store(Arc::new(derive_key(&self.secret, day)));
            key = self.day_key.load();
        }
        let mut hasher = SipHasher13::new_with_keys(key.k0, key.k1);
        match ip {
            IpAddr::V4(v4) => hasher.write(&v4.octets()),
            IpAddr::V6(v6) => hasher.write(&v6.octets()),
        }
        hasher.write_u8(0xff);
        hasher.write(user_agent.as_bytes());
        hasher.finish()
    }
}

fn derive_key(secret: &SecretString, day: i64) -> DayKey {
    let mut mac = Hmac::<Sha256>::new_from_slice(reveal(secret).as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"reftrack visitor salt ");
    mac.update(&day.to_be_bytes());
    let bytes = mac.finalize().into_bytes();
    let k0 = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    DayKey { day, k0, k1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_are_stable_within_a_day_and_change_across_days() {
        let hasher = VisitorHasher::new(SecretString::from("s".to_string()));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let noon = 20_000 * DAY_MS + DAY_MS / 2;
        let a = hasher.hash(ip, "UA", noon);
        assert_eq!(a, hasher.hash(ip, "UA", noon + 3_600_000));
        assert_ne!(a, hasher.hash(ip, "UA2", noon));
        assert_ne!(a, hasher.hash("203.0.113.8".parse().unwrap(), "UA", noon));
        assert_ne!(a, hasher.hash(ip, "UA", noon + DAY_MS));
        let other_secret = VisitorHasher::new(SecretString::from("t".to_string()));
        assert_ne!(a, other_secret.hash(ip, "UA", noon));
    }

    #[test]
    fn bots_and_prefetches_are_recognised() {
        let bots = BotDetector::new();
        assert!(bots.is_bot("Googlebot/2.1 (+http://www.google.com/bot.html)"));
        assert!(bots.is_bot("curl/8.5.0"));
        assert!(bots.is_bot(""));
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert!(!bots.is_bot(firefox));
        assert!(!bots.is_bot(firefox), "cached verdicts agree");

        let mut headers = HeaderMap::new();
        assert!(is_prefetch(&Method::HEAD, &headers));
        assert!(!is_prefetch(&Method::GET, &headers));
        headers.insert("sec-purpose", "prefetch;prerender".parse().unwrap());
        assert!(is_prefetch(&Method::GET, &headers));
    }
}
