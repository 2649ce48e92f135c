//! Postgres reads and writes of the conversions batch: a handful of set-based
//! statements per batch, whatever its size. Rows the rules may change (a referral, a
//! purchase being refunded) are locked in a fixed order, so instances working other
//! partitions serialise on them instead of overwriting each other.
//!
//! Long because every statement of the batch lives here, one small function each.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use reftrack_events::ConversionKind;
use reftrack_store::affiliates::MAY_EARN;
use sqlx::{PgPool, Postgres, Transaction};

use reftrack_domain::{
    CommissionStatus, InvitationMethod, Money, Rate, ReferralStatus, RewardKind,
};

use super::ledger::{
    AffiliateTerms, Applied, Plan, Position, ProgramRules, Referral, ReferralKey, State, Waiting,
    Wants,
};

type Tx<'t> = Transaction<'t, Postgres>;

#[derive(sqlx::FromRow)]
struct AppliedRow {
    event_id: String,
    kind: ConversionKind,
    affiliate_id: i64,
    referral_id: i64,
    user_id: i64,
    amount: Option<Money>,
    commission: Money,
    rate: Option<Rate>,
    available_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ReferralRow {
    id: i64,
    affiliate_id: i64,
    user_id: i64,
    email: Option<String>,
    status: ReferralStatus,
    invitation_method: InvitationMethod,
    commission_rate: Rate,
    commission_amount: Money,
    commission_status: Option<CommissionStatus>,
    first_event_id: String,
    created_at: DateTime<Utc>,
    first_purchase_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ProgramRow {
    valid_from: DateTime<Utc>,
    reward_kind: RewardKind,
    flat_amount: Money,
    signup_reward: Money,
    recurring_months: Option<i32>,
    holding_days: i32,
}

#[derive(sqlx::FromRow)]
struct TermsRow {
    affiliate_id: i64,
    valid_from: DateTime<Utc>,
    rate: Option<Rate>,
    tier: i16,
    holding_days: Option<i32>,
}

/// Orders a batch that may park a refund as waiting against the batches that may apply
/// its purchase, on any instance: without it, each could commit without seeing the
/// other's row, and the refund would wait for good. Batches with refunds take the lock
/// alone, batches with purchases share it; taken before any row lock, so it adds no
/// deadlock.
pub async fn order_against_waiting_refunds(tx: &mut Tx<'_>, wants: &Wants) -> sqlx::Result<()> {
    let statement = if wants.refunds {
        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':waiting refunds', 0))"
    } else if wants.purchases {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended(current_schema() || ':waiting refunds', 0))"
    } else {
        return Ok(());
    };
    sqlx::query(statement).execute(&mut **tx).await?;
    Ok(())
}

/// Everything the batch's rules read, with the rows they may change locked.
pub async fn load_state(tx: &mut Tx<'_>, topic: &str, wants: &Wants) -> sqlx::Result<State> {
    let mut state = State::default();
    let codes: Vec<&str> = wants.codes.iter().map(String::as_str).collect();
    let rows: Vec<(i64, String, bool)> = sqlx::query_as(&format!(
        "SELECT id, referral_code, {MAY_EARN} FROM affiliates WHERE referral_code = ANY($1)"
    ))
    .bind(&codes)
    .fetch_all(&mut **tx)
    .await?;
    for (id, code, attributable) in rows {
        state.codes.insert(code, id);
        state.attributable.insert(id, attributable);
    }

    let event_ids: Vec<&str> = wants.event_ids.iter().map(String::as_str).collect();
    let applied: Vec<AppliedRow> = sqlx::query_as(
        "SELECT c.event_id, c.kind, c.affiliate_id, c.referral_id, c.user_id, c.amount, c.commission, c.rate,
                l.available_at
         FROM conversions c LEFT JOIN ledger_entries l ON l.conversion_event_id = c.event_id
         WHERE c.event_id = ANY($1) ORDER BY c.event_id FOR UPDATE OF c",
    )
    .bind(&event_ids)
    .fetch_all(&mut **tx)
    .await?;
    let refunded: Vec<(String, Money, Money)> = sqlx::query_as(
        "SELECT original_event_id, sum(amount), sum(commission) FROM conversions
         WHERE original_event_id = ANY($1) GROUP BY original_event_id",
    )
    .bind(&event_ids)
    .fetch_all(&mut **tx)
    .await?;
    state.refunded = refunded
        .into_iter()
        .map(|(id, a, c)| (id, (a, c)))
        .collect();

    let mut users: BTreeSet<i64> = wants.user_ids.iter().copied().collect();
    users.extend(applied.iter().map(|a| a.user_id));
    let users: Vec<i64> = users.into_iter().collect();
    let referrals: Vec<ReferralRow> = sqlx::query_as(
        "SELECT id, affiliate_id, user_id, email, status, invitation_method, commission_rate,
                commission_amount, commission_status, first_event_id, created_at, first_purchase_at
         FROM referrals WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
    )
    .bind(&users)
    .fetch_all(&mut **tx)
    .await?;
    for row in applied {
        state.applied.insert(
            row.event_id,
            Applied {
                kind: row.kind,
                affiliate_id: row.affiliate_id,
                referral: ReferralKey::Existing(row.referral_id),
                user_id: row.user_id,
                amount: row.amount.unwrap_or_default(),
                commission: row.commission,
                rate: row.rate,
                available_at: row.available_at,
            },
        );
    }
    for row in referrals {
        state.referrals.insert(
            row.user_id,
            Referral {
                key: ReferralKey::Existing(row.id),
                affiliate_id: row.affiliate_id,
                user_id: row.user_id,
                email: row.email,
                status: row.status,
                invitation_method: row.invitation_method,
                commission_rate: row.commission_rate,
                commission_amount: row.commission_amount,
                commission_status: row.commission_status,
                first_event_id: row.first_event_id,
                created_at: row.created_at,
                first_purchase_at: row.first_purchase_at,
                changed: false,
            },
        );
    }

    // Referrals may belong to affiliates whose code this batch does not name.
    let mut affiliates: BTreeSet<i64> = state.codes.values().copied().collect();
    affiliates.extend(state.referrals.values().map(|r| r.affiliate_id));
    let affiliates: Vec<i64> = affiliates.into_iter().collect();
    let standing: Vec<(i64, bool, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT id, {MAY_EARN}, user_id FROM affiliates WHERE id = ANY($1)"
    ))
    .bind(&affiliates)
    .fetch_all(&mut **tx)
    .await?;
    for (id, may_earn, user_id) in standing {
        state.attributable.insert(id, may_earn);
        if let Some(user_id) = user_id {
            state.owners.insert(id, user_id);
        }
    }
    load_terms(tx, &affiliates, &mut state).await?;
    if wants.purchases {
        state.waiting = waiting_refunds(tx, topic, &event_ids).await?;
    }
    Ok(state)
}

/// The affiliates' terms over time, the tiers' rates and the program's rules.
async fn load_terms(tx: &mut Tx<'_>, affiliates: &[i64], state: &mut State) -> sqlx::Result<()> {
    let terms: Vec<TermsRow> = sqlx::query_as(
        "SELECT affiliate_id, valid_from, rate, tier, holding_days FROM affiliate_terms_history
         WHERE affiliate_id = ANY($1) ORDER BY affiliate_id, valid_from",
    )
    .bind(affiliates)
    .fetch_all(&mut **tx)
    .await?;
    for t in terms {
        state
            .terms
            .entry(t.affiliate_id)
            .or_default()
            .push(AffiliateTerms {
                valid_from: t.valid_from,
                rate: t.rate,
                tier: t.tier,
                holding_days: t.holding_days.map(|d| d.max(0) as u32),
            });
    }
    let tiers: Vec<(i16, DateTime<Utc>, Rate)> =
        sqlx::query_as("SELECT tier, valid_from, rate FROM tier_rates ORDER BY tier, valid_from")
            .fetch_all(&mut **tx)
            .await?;
    for (tier, from, rate) in tiers {
        state.tier_rates.entry(tier).or_default().push((from, rate));
    }
    let program: Vec<ProgramRow> = sqlx::query_as(
        "SELECT valid_from, reward_kind, flat_amount, signup_reward, recurring_months, holding_days
         FROM program_rules ORDER BY valid_from",
    )
    .fetch_all(&mut **tx)
    .await?;
    state.program = program
        .into_iter()
        .map(|p| ProgramRules {
            valid_from: p.valid_from,
            reward_kind: p.reward_kind,
            flat_amount: p.flat_amount,
            signup_reward: p.signup_reward,
            recurring_months: p.recurring_months.map(|m| m.max(1) as u32),
            holding_days: p.holding_days.max(0) as u32,
        })
        .collect();
    Ok(())
}

/// Refunds parked by earlier batches, waiting for one of these purchases.
async fn waiting_refunds(
    tx: &mut Tx<'_>,
    topic: &str,
    purchase_ids: &[&str],
) -> sqlx::Result<HashMap<String, Vec<Waiting>>> {
    let rows: Vec<(String, i32, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT original_event_id, kafka_partition, kafka_offset, payload FROM parked_events
         WHERE topic = $1 AND original_event_id = ANY($2) AND resolved_at IS NULL
         ORDER BY kafka_partition, kafka_offset FOR UPDATE",
    )
    .bind(topic)
    .bind(purchase_ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut waiting: HashMap<String, Vec<Waiting>> = HashMap::new();
    for (purchase, partition, offset, payload) in rows {
        // Parked as waiting only after it was decoded, so this decodes.
        let Ok(event) = reftrack_events::ConversionEvent::decode(&payload) else {
            continue;
        };
        waiting.entry(purchase).or_default().push(Waiting {
            event,
            position: Position { partition, offset },
            stored: true,
        });
    }
    Ok(waiting)
}

/// Writes the plan's rows: new referrals first (their ids are needed), then changes,
/// conversions, ledger entries and totals.
pub async fn write_plan(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), crate::pipeline::ApplyError> {
    let new_ids = insert_referrals(tx, &plan.new_referrals).await?;
    update_referrals(tx, &plan.changed_referrals).await?;
    let referral_id = |key: ReferralKey| match key {
        ReferralKey::Existing(id) => id,
        ReferralKey::New { user_id } => new_ids[&user_id],
    };
    let inserted = insert_conversions(tx, plan, referral_id).await?;
    if inserted != plan.conversions.len() as u64 {
        // Another instance recorded one of these event ids meanwhile: retry the batch,
        // which will then see it as a repeat.
        return Err(crate::pipeline::ApplyError::Fenced);
    }
    insert_ledger(tx, plan).await?;
    add_totals(tx, &plan.totals).await?;
    Ok(())
}

async fn insert_referrals(
    tx: &mut Tx<'_>,
    referrals: &[Referral],
) -> sqlx::Result<HashMap<i64, i64>> {
    if referrals.is_empty() {
        return Ok(HashMap::new());
    }
    let col = |f: fn(&Referral) -> String| referrals.iter().map(f).collect::<Vec<String>>();
    let affiliates: Vec<i64> = referrals.iter().map(|r| r.affiliate_id).collect();
    let users: Vec<i64> = referrals.iter().map(|r| r.user_id).collect();
    let emails: Vec<Option<String>> = referrals.iter().map(|r| r.email.clone()).collect();
    let rates: Vec<Rate> = referrals.iter().map(|r| r.commission_rate).collect();
    let amounts: Vec<Money> = referrals.iter().map(|r| r.commission_amount).collect();
    let commission_statuses: Vec<Option<&str>> = referrals
        .iter()
        .map(|r| r.commission_status.map(|s| s.as_str()))
        .collect();
    let created: Vec<DateTime<Utc>> = referrals.iter().map(|r| r.created_at).collect();
    let first_purchases: Vec<Option<DateTime<Utc>>> =
        referrals.iter().map(|r| r.first_purchase_at).collect();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO referrals (affiliate_id, user_id, email, status, invitation_method, commission_rate,
                                commission_amount, commission_status, first_event_id, created_at, first_purchase_at)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::numeric[],
                              $7::numeric[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[])
         RETURNING user_id, id",
    )
    .bind(&affiliates)
    .bind(&users)
    .bind(&emails)
    .bind(col(|r| r.status.to_string()))
    .bind(col(|r| r.invitation_method.to_string()))
    .bind(&rates)
    .bind(&amounts)
    .bind(&commission_statuses)
    .bind(col(|r| r.first_event_id.clone()))
    .bind(&created)
    .bind(&first_purchases)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

async fn update_referrals(tx: &mut Tx<'_>, referrals: &[Referral]) -> sqlx::Result<()> {
    if referrals.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = referrals
        .iter()
        .map(|r| match r.key {
            ReferralKey::Existing(id) => id,
            ReferralKey::New { .. } => unreachable!("new referrals are inserted"),
        })
        .collect();
    let statuses: Vec<&str> = referrals.iter().map(|r| r.status.as_str()).collect();
    let amounts: Vec<Money> = referrals.iter().map(|r| r.commission_amount).collect();
    let commission_statuses: Vec<Option<&str>> = referrals
        .iter()
        .map(|r| r.commission_status.map(|s| s.as_str()))
        .collect();
    let first_purchases: Vec<Option<DateTime<Utc>>> =
        referrals.iter().map(|r| r.first_purchase_at).collect();
    sqlx::query(
        "UPDATE referrals AS r SET status = v.status, commission_amount = v.commission_amount,
                commission_status = v.commission_status, first_purchase_at = v.first_purchase_at,
                updated_at = now()
         FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[], $5::timestamptz[])
              AS v(id, status, commission_amount, commission_status, first_purchase_at)
         WHERE r.id = v.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&amounts)
    .bind(&commission_statuses)
    .bind(&first_purchases)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_conversions(
    tx: &mut Tx<'_>,
    plan: &Plan,
    referral_id: impl Fn(ReferralKey) -> i64,
) -> sqlx::Result<u64> {
    if plan.conversions.is_empty() {
        return Ok(0);
    }
    let c = &plan.conversions;
    let result = sqlx::query(
        "INSERT INTO conversions (event_id, kind, affiliate_id, referral_id, user_id, amount, commission, rate,
                                  original_event_id, occurred_at, received_at, kafka_partition, kafka_offset)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::numeric[],
                              $7::numeric[], $8::numeric[], $9::text[], $10::timestamptz[], $11::timestamptz[],
                              $12::int[], $13::bigint[])
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(c.iter().map(|x| x.event_id.clone()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.affiliate_id).collect::<Vec<_>>())
    .bind(c.iter().map(|x| referral_id(x.referral)).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.user_id).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.amount).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.commission).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.rate).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.original_event_id.clone()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.occurred_at).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.received_at).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.position.partition).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.position.offset).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

async fn insert_ledger(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    if plan.ledger.is_empty() {
        return Ok(());
    }
    let l = &plan.ledger;
    sqlx::query(
        "INSERT INTO ledger_entries (affiliate_id, kind, amount, rate, conversion_event_id, occurred_at, available_at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::numeric[], $5::text[], $6::timestamptz[],
                              $7::timestamptz[])",
    )
    .bind(l.iter().map(|e| e.affiliate_id).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.amount).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.rate).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.conversion_event_id.clone()).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(l.iter().map(|e| e.available_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The batch's effect on every affiliate's totals, in one statement.
async fn add_totals(
    tx: &mut Tx<'_>,
    totals: &BTreeMap<i64, super::ledger::TotalsDelta>,
) -> sqlx::Result<()> {
    if totals.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE affiliate_totals AS t
         SET earned = t.earned + v.earned, reversed = t.reversed + v.reversed, updated_at = now()
         FROM unnest($1::bigint[], $2::numeric[], $3::numeric[]) AS v(affiliate_id, earned, reversed)
         WHERE t.affiliate_id = v.affiliate_id",
    )
    .bind(totals.keys().copied().collect::<Vec<_>>())
    .bind(totals.values().map(|d| d.earned).collect::<Vec<_>>())
    .bind(totals.values().map(|d| d.reversed).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What Postgres recorded for these event ids: where each was first read, for whom, and
/// the commission it moved.
pub struct Recorded {
    pub partition: i32,
    pub offset: i64,
    pub affiliate_id: i64,
    pub commission: Money,
}

pub async fn recorded(
    pool: &PgPool,
    event_ids: &[String],
) -> sqlx::Result<BTreeMap<String, Recorded>> {
    let rows: Vec<(String, i32, i64, i64, Money)> = sqlx::query_as(
        "SELECT event_id, kafka_partition, kafka_offset, affiliate_id, commission
         FROM conversions WHERE event_id = ANY($1)",
    )
    .bind(event_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, partition, offset, affiliate_id, commission)| {
            (
                id,
                Recorded {
                    partition,
                    offset,
                    affiliate_id,
                    commission,
                },
            )
        })
        .collect())
}

/// A refund released by a purchase: recorded at the purchase's position, so ClickHouse's
/// rows for that message include it.
#[derive(sqlx::FromRow)]
pub struct ReleasedRefund {
    pub event_id: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub affiliate_id: i64,
    pub code: String,
    pub user_id: i64,
    pub amount: Option<Money>,
    pub commission: Money,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// Refunds recorded at these positions, whichever message they came in.
pub async fn refunds_recorded_at(
    pool: &PgPool,
    positions: &[(i32, i64)],
) -> sqlx::Result<Vec<ReleasedRefund>> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = positions.iter().copied().unzip();
    sqlx::query_as(
        "SELECT c.event_id, c.kafka_partition, c.kafka_offset, c.affiliate_id, a.referral_code AS code,
                c.user_id, c.amount, c.commission, c.occurred_at, c.received_at
         FROM conversions c JOIN affiliates a ON a.id = c.affiliate_id
         WHERE c.kind = 'refund'
           AND (c.kafka_partition, c.kafka_offset) IN (SELECT * FROM unnest($1::int[], $2::bigint[]))
         ORDER BY c.kafka_partition, c.kafka_offset, c.event_id",
    )
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(pool)
    .await
}
