//! The traffic of a full-pipeline run as a pure function of the request number: which
//! referral code (Zipf-like popularity), which visitor, what kind of click, and which
//! conversions follow. Being pure, it is also the run's ground truth: replaying the
//! numbers that were answered tells exactly what reftrack must report.

use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// Shares of the traffic, each between 0 and 1.
#[derive(Debug, Clone, Copy, serde::Serialize, clap::Args)]
pub struct Mix {
    /// Clicks by bots (crawler or tool user agents).
    #[arg(long, default_value_t = 0.10)]
    pub bot_share: f64,
    /// Clicks that are prefetches (HEAD, or a Sec-Purpose: prefetch hint).
    #[arg(long, default_value_t = 0.03)]
    pub prefetch_share: f64,
    /// Clicks by a visitor who clicked the same link shortly before (duplicates).
    #[arg(long, default_value_t = 0.10)]
    pub repeat_share: f64,
    /// Clicks on codes that do not exist.
    #[arg(long, default_value_t = 0.01)]
    pub unknown_share: f64,
    /// Valid clicks followed by a signup.
    #[arg(long, default_value_t = 0.02)]
    pub signup_share: f64,
    /// Signed-up users who then buy.
    #[arg(long, default_value_t = 0.5)]
    pub purchase_share: f64,
    /// Purchases refunded (half of them in full, half in part).
    #[arg(long, default_value_t = 0.1)]
    pub refund_share: f64,
    /// Conversion journeys the product's backend sends twice (must count once).
    #[arg(long, default_value_t = 0.02)]
    pub resend_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    /// A visitor's first click on a link: valid.
    New,
    /// The same visitor on the same link again: a duplicate.
    Repeat,
    Bot,
    Prefetch,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct Click {
    pub kind: ClickKind,
    /// Index of the referral code (meaningless for [`ClickKind::Unknown`]).
    pub code: usize,
    /// The visitor's IPv4 address (sent as X-Forwarded-For).
    pub ip: u32,
    pub user_agent: &'static str,
    /// The request number of the visitor's first click on this code.
    pub first: u64,
}

/// What a signed-up visitor does afterwards, in cents.
#[derive(Debug, Clone, Copy)]
pub struct Journey {
    pub number: u64,
    pub code: usize,
    pub user_id: i64,
    pub purchase_cents: Option<i64>,
    pub refund_cents: Option<i64>,
    pub resend: bool,
}

const BROWSERS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
];
const BOTS: [&str; 4] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "curl/8.5.0",
];
/// A repeat comes back within this many requests of the first click.
const REPEAT_WITHIN: u64 = 2_000;
/// User ids of referred users start here, clear of the promoters' ids.
const FIRST_USER_ID: i64 = 1_000_000_000;

pub struct Model {
    seed: u64,
    codes: usize,
    zipf: Zipf<f64>,
    mix: Mix,
}

impl Model {
    pub fn new(seed: u64, codes: usize, zipf_exponent: f64, mix: Mix) -> anyhow::Result<Self> {
        anyhow::ensure!(codes > 0, "at least one affiliate");
        Ok(Self {
            seed,
            codes,
            zipf: Zipf::new(codes as f64, zipf_exponent)?,
            mix,
        })
    }

    fn rng(&self, n: u64, salt: u64) -> SmallRng {
        SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
    }

    /// Request `n` before repeats are resolved.
    fn drawn(&self, n: u64) -> (ClickKind, usize, SmallRng) {
        let mut rng = self.rng(n, 0);
        let m = &self.mix;
        let r: f64 = rng.random();
        let kind = [
            (m.unknown_share, ClickKind::Unknown),
            (m.bot_share, ClickKind::Bot),
            (m.prefetch_share, ClickKind::Prefetch),
            (m.repeat_share, ClickKind::Repeat),
        ]
        .into_iter()
        .scan(0.0, |sum, (share, kind)| {
            *sum += share;
            Some((*sum, kind))
        })
        .find(|(upto, _)| r < *upto)
        .map_or(ClickKind::New, |(_, kind)| kind);
        let code = (self.zipf.sample(&mut rng) as usize - 1).min(self.codes - 1);
        (kind, code, rng)
    }

    pub fn click(&self, n: u64) -> Click {
        let (kind, code, mut rng) = self.drawn(n);
        let visitor = |kind, user_agent| Click {
            kind,
            code,
            // 10.0.0.1 on: one address per request, so visitors never collide.
            ip: 0x0A00_0001 + n as u32,
            user_agent,
            first: n,
        };
        match kind {
            ClickKind::Bot => visitor(kind, BOTS[rng.random_range(0..BOTS.len())]),
            ClickKind::Repeat => {
                let back = rng.random_range(1..=REPEAT_WITHIN);
                match n.checked_sub(back).map(|first| (first, self.click(first))) {
                    Some((_, earlier)) if earlier.kind == ClickKind::New => Click {
                        kind: ClickKind::Repeat,
                        ..earlier
                    },
                    _ => visitor(
                        ClickKind::New,
                        BROWSERS[rng.random_range(0..BROWSERS.len())],
                    ),
                }
            }
            _ => visitor(kind, BROWSERS[rng.random_range(0..BROWSERS.len())]),
        }
    }

    /// The conversions following request `n`, if its visitor signs up.
    pub fn journey(&self, n: u64) -> Option<Journey> {
        let click = self.click(n);
        if click.kind != ClickKind::New {
            return None;
        }
        let mut rng = self.rng(n, 0x5157);
        let m = &self.mix;
        if rng.random::<f64>() >= m.signup_share {
            return None;
        }
        let purchase_cents =
            (rng.random::<f64>() < m.purchase_share).then(|| rng.random_range(500..=50_000));
        let refund_cents = purchase_cents.and_then(|p| {
            (rng.random::<f64>() < m.refund_share)
                .then(|| if rng.random_bool(0.5) { p } else { p / 2 })
        });
        Some(Journey {
            number: n,
            code: click.code,
            user_id: FIRST_USER_ID + n as i64,
            purchase_cents,
            refund_cents,
            resend: rng.random::<f64>() < m.resend_share,
        })
    }
}

/// What reftrack must report for one affiliate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expected {
    pub raw_clicks: u64,
    pub valid_clicks: u64,
    pub unique_clicks: u64,
    pub signups: u64,
    pub purchases: u64,
    pub net_sales_cents: i64,
    pub earned_cents: i64,
    pub reversed_cents: i64,
}

/// Expected figures per code, from the click numbers that were answered and the journeys
/// that were delivered, with the commission `rates` (percent) of each code.
pub fn expected(
    model: &Model,
    answered: impl Iterator<Item = u64>,
    journeys: &[Journey],
    rates: &[Decimal],
) -> Vec<Expected> {
    let mut out = vec![Expected::default(); model.codes];
    let mut seen: HashSet<u64> = HashSet::new();
    for n in answered {
        let click = model.click(n);
        let e = &mut out[click.code];
        match click.kind {
            ClickKind::Unknown => continue,
            ClickKind::Bot | ClickKind::Prefetch => {}
            // Whichever of a visitor's clicks arrives first is the valid one.
            ClickKind::New | ClickKind::Repeat => {
                if seen.insert(click.first) {
                    e.valid_clicks += 1;
                    e.unique_clicks += 1;
                }
            }
        }
        e.raw_clicks += 1;
    }
    for j in journeys {
        let e = &mut out[j.code];
        let rate = rates[j.code];
        e.signups += 1;
        let Some(paid) = j.purchase_cents else {
            continue;
        };
        let earned = commission_cents(paid, rate);
        e.purchases += 1;
        e.net_sales_cents += paid;
        e.earned_cents += earned;
        if let Some(refunded) = j.refund_cents {
            e.net_sales_cents -= refunded;
            // A full refund takes back the whole commission; a part, its own share.
            e.reversed_cents += if refunded == paid {
                earned
            } else {
                commission_cents(refunded, rate).min(earned)
            };
        }
    }
    out
}

/// `cents × rate%`, rounded half to even, as the ledger rules say.
fn commission_cents(cents: i64, rate: Decimal) -> i64 {
    (Decimal::from(cents) * rate / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
        .to_i64()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let mix = Mix {
            bot_share: 0.10,
            prefetch_share: 0.03,
            repeat_share: 0.10,
            unknown_share: 0.01,
            signup_share: 0.02,
            purchase_share: 0.5,
            refund_share: 0.1,
            resend_share: 0.02,
        };
        Model::new(7, 200, 1.1, mix).unwrap()
    }

    #[test]
    fn the_traffic_has_the_shares_asked_for() {
        let m = model();
        let n = 200_000;
        let count = |kind| (0..n).filter(|&i| m.click(i).kind == kind).count() as f64 / n as f64;
        assert!((count(ClickKind::Bot) - 0.10).abs() < 0.01);
        assert!((count(ClickKind::Prefetch) - 0.03).abs() < 0.005);
        assert!((count(ClickKind::Unknown) - 0.01).abs() < 0.003);
        // Repeats whose first click was not a new visitor become new visitors.
        assert!(count(ClickKind::Repeat) > 0.07 && count(ClickKind::Repeat) < 0.10);
        let signups = (0..n).filter_map(|i| m.journey(i)).count() as f64;
        let new = count(ClickKind::New) * n as f64;
        assert!((signups / new - 0.02).abs() < 0.003);
    }

    #[test]
    fn popularity_is_skewed_towards_the_first_codes() {
        let m = model();
        let mut per_code = vec![0u32; 200];
        (0..100_000).for_each(|i| per_code[m.click(i).code] += 1);
        assert!(per_code[0] > 10 * per_code[99], "{per_code:?}");
        assert!(per_code.iter().all(|&c| c > 0));
    }

    #[test]
    fn a_repeat_is_the_same_visitor_on_the_same_code() {
        let m = model();
        let repeat = (0..10_000)
            .map(|i| m.click(i))
            .find(|c| c.kind == ClickKind::Repeat)
            .unwrap();
        let first = m.click(repeat.first);
        assert_eq!(first.kind, ClickKind::New);
        assert_eq!(
            (first.code, first.ip, first.user_agent),
            (repeat.code, repeat.ip, repeat.user_agent)
        );
    }

    #[test]
    fn expected_figures_count_each_visitor_once_and_money_by_the_ledger_rules() {
        let m = model();
        let repeat_number = (0..10_000)
            .find(|&i| m.click(i).kind == ClickKind::Repeat)
            .unwrap();
        let repeat = m.click(repeat_number);
        // The repeat alone (its first click unanswered): it is the valid one.
        let e = expected(&m, [repeat_number].into_iter(), &[], &[Decimal::TEN; 200]);
        assert_eq!(e[repeat.code].valid_clicks, 1);
        let e = expected(
            &m,
            [repeat.first, repeat_number].into_iter(),
            &[],
            &[Decimal::TEN; 200],
        );
        assert_eq!(
            (e[repeat.code].raw_clicks, e[repeat.code].valid_clicks),
            (2, 1)
        );

        let journey = |purchase, refund| Journey {
            number: 0,
            code: 3,
            user_id: 1,
            purchase_cents: Some(purchase),
            refund_cents: refund,
            resend: false,
        };
        let rate = Decimal::new(125, 1); // 12.5 %
        let e = expected(
            &m,
            std::iter::empty(),
            &[
                journey(1_005, None),
                journey(2_000, Some(2_000)),
                journey(999, Some(499)),
            ],
            &[rate; 200],
        )[3];
        // 125.625 → 126 (half-even of .625 is up); 250; 124.875 → 125, refund 62.375 → 62.
        assert_eq!(e.earned_cents, 126 + 250 + 125);
        assert_eq!(e.reversed_cents, 250 + 62);
        assert_eq!(e.net_sales_cents, 1_005 + 999 - 499);
        assert_eq!((e.signups, e.purchases), (3, 3));
    }
}
