//! A click on a referral link, as ingest saw it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The quality verdict of a click. ingest decides the verdicts that need nothing but the
/// request (`unknown_code`, `bot`, `prefetch`); aggregator turns some `valid` clicks into
/// `duplicate` or `rate_limited` using state shared across instances. Every click is
/// kept with its verdict so that each count can be audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(i8)]
pub enum ClickVerdict {
    Valid = 1,
    Bot = 2,
    Prefetch = 3,
    Duplicate = 4,
    UnknownCode = 5,
    RateLimited = 6,
}

impl ClickVerdict {
    pub const ALL: [ClickVerdict; 6] = [
        ClickVerdict::Valid,
        ClickVerdict::Bot,
        ClickVerdict::Prefetch,
        ClickVerdict::Duplicate,
        ClickVerdict::UnknownCode,
        ClickVerdict::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClickVerdict::Valid => "valid",
            ClickVerdict::Bot => "bot",
            ClickVerdict::Prefetch => "prefetch",
            ClickVerdict::Duplicate => "duplicate",
            ClickVerdict::UnknownCode => "unknown_code",
            ClickVerdict::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClickMethod {
    Get,
    Head,
}

/// One referral-link click. Borrowed on the click path (no copies of headers), owned
/// when decoded by the aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent<'a> {
    /// UUIDv7: time-ordered, and the click id handed to the browser in the cookie.
    pub event_id: Uuid,
    /// The referral code as requested (upper-cased, at most [`MAX_CODE_LEN`] bytes).
    #[serde(borrow)]
    pub code: Cow<'a, str>,
    /// The affiliate owning the code; `None` for an unknown code.
    pub affiliate_id: Option<i64>,
    /// When ingest received the click, in milliseconds since the Unix epoch (UTC).
    pub received_at_ms: i64,
    /// Keyed hash of client IP and user agent with a daily salt; the IP is never kept.
    pub visitor: u64,
    #[serde(borrow)]
    pub user_agent: Cow<'a, str>,
    #[serde(borrow, default)]
    pub referer: Option<Cow<'a, str>>,
    pub method: ClickMethod,
    /// ISO country code from a trusted proxy header, when present.
    #[serde(borrow, default)]
    pub country: Option<Cow<'a, str>>,
    /// The verdict ingest could decide (`valid` means "no reason found yet").
    pub verdict: ClickVerdict,
}

/// Longest referral code; longer `?ref=` values are truncated and never match.
pub const MAX_CODE_LEN: usize = 64;

/// A referral code: 1 to 64 of `A-Z`, `0-9` and `_`. Codes are case-insensitive in
/// links (`?ref=abc` is `ABC`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralCode(String);

impl ReferralCode {
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let valid = !raw.is_empty()
            && raw.len() <= MAX_CODE_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| Self(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The click id handed to the browser in the attribution cookie: `CODE.<click uuid>`.
/// It carries the code, so a conversion that only knows the click id is still routed to
/// the code's partition and attributed.
pub fn format_click_id(code: &str, click: Uuid) -> String {
    let mut out = String::with_capacity(code.len() + 33);
    out.push_str(code);
    out.push('.');
    out.push_str(click.simple().encode_lower(&mut Uuid::encode_buffer()));
    out
}

/// Parses a click id made by [`format_click_id`].
pub fn parse_click_id(s: &str) -> Option<(ReferralCode, Uuid)> {
    let (code, click) = s.rsplit_once('.')?;
    Some((ReferralCode::parse(code)?, Uuid::try_parse(click).ok()?))
}
/// Longest user agent or referer kept, in bytes.
pub const MAX_HEADER_LEN: usize = 512;

/// The first byte of a click in the binary format (postcard: the fields in declaration
/// order, enums by variant index), the one ingest writes: decoding it costs a fraction of
/// JSON's, and the aggregator decodes every click. The format is not self-describing, so
/// a change to [`ClickEvent`]'s fields or to the order of its enums' variants needs a new
/// version byte. A JSON click (written before the binary format) starts with `{`.
const BINARY_V1: u8 = 1;

/// A click that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("binary click: {0}")]
    Binary(#[from] postcard::Error),
    #[error("JSON click: {0}")]
    Json(#[from] serde_json::Error),
}

impl ClickEvent<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + self.code.len() + self.user_agent.len());
        buf.push(BINARY_V1);
        postcard::to_extend(self, buf).expect("a click serialises")
    }

    /// Reads a click in the binary format, or in JSON (older clicks).
    pub fn decode(bytes: &[u8]) -> Result<ClickEvent<'_>, DecodeError> {
        Ok(match bytes.split_first() {
            Some((&BINARY_V1, rest)) => postcard::from_bytes(rest)?,
            _ => serde_json::from_slice(bytes)?,
        })
    }

    pub fn into_owned(self) -> ClickEvent<'static> {
        ClickEvent {
            code: Cow::Owned(self.code.into_owned()),
            user_agent: Cow::Owned(self.user_agent.into_owned()),
            referer: self.referer.map(|r| Cow::Owned(r.into_owned())),
            country: self.country.map(|c| Cow::Owned(c.into_owned())),
            ..self
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_click() -> ClickEvent<'static> {
        ClickEvent {
            event_id: Uuid::now_v7(),
            code: "6B86B273FF".into(),
            affiliate_id: Some(7),
            received_at_ms: 1_725_789_276_123,
            visitor: u64::MAX - 3,
            user_agent: "Mozilla/5.0 \"quoted\" ü".into(),
            referer: Some("https://news.example/".into()),
            method: ClickMethod::Head,
            country: None,
            verdict: ClickVerdict::Prefetch,
        }
    }

    #[test]
    fn round_trips_through_the_binary_format_borrowing_its_text() {
        let event = a_click();
        let bytes = event.encode();
        assert_eq!(bytes[0], BINARY_V1);
        let decoded = ClickEvent::decode(&bytes).unwrap();
        assert_eq!(decoded, event);
        assert!(
            matches!(decoded.user_agent, Cow::Borrowed(_)),
            "no copy of the text"
        );
        for verdict in ClickVerdict::ALL {
            let event = ClickEvent {
                verdict,
                country: Some("DE".into()),
                ..a_click()
            };
            assert_eq!(ClickEvent::decode(&event.encode()).unwrap(), event);
        }
    }

    /// Clicks written in JSON before the binary format (in the topic, or in ingest's
    /// spill) still decode.
    #[test]
    fn clicks_written_in_json_still_decode() {
        let event = a_click();
        let json = serde_json::to_vec(&event).unwrap();
        assert_eq!(ClickEvent::decode(&json).unwrap(), event);
        let without_options = br#"{"event_id":"0193f0c2-a1b2-7c3d-8e4f-5a6b7c8d9e0f","code":"ABC","affiliate_id":null,"received_at_ms":1,"visitor":2,"user_agent":"x","method":"GET","verdict":"bot"}"#;
        let old = ClickEvent::decode(without_options).unwrap();
        assert_eq!(
            (old.referer, old.country, old.verdict),
            (None, None, ClickVerdict::Bot)
        );
    }

    #[test]
    fn damaged_clicks_are_refused_not_misread() {
        let bytes = a_click().encode();
        assert!(ClickEvent::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(ClickEvent::decode(&[BINARY_V1]).is_err());
        assert!(ClickEvent::decode(b"").is_err());
        assert!(ClickEvent::decode(b"not json").is_err());
    }

    #[test]
    fn codes_are_case_insensitive_and_bounded() {
        assert_eq!(ReferralCode::parse(" ab_12 ").unwrap().as_str(), "AB_12");
        assert!(ReferralCode::parse("").is_none());
        assert!(ReferralCode::parse("a-b").is_none());
        assert!(ReferralCode::parse(&"A".repeat(65)).is_none());
    }

    #[test]
    fn click_ids_round_trip() {
        let click = Uuid::now_v7();
        let id = format_click_id("JANE_DOE_124", click);
        let (code, parsed) = parse_click_id(&id).unwrap();
        assert_eq!((code.as_str(), parsed), ("JANE_DOE_124", click));
        assert!(parse_click_id("JANE.not-a-uuid").is_none());
        assert!(parse_click_id("nodot").is_none());
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }
}
