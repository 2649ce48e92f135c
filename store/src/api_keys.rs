//! API keys (`sk_live_...`) for the admin API and for server-to-server event intake.
//!
//! A key is shown once, when created; Postgres keeps only its SHA-256 hash (the key has
//! 238 bits of entropy, so a fast hash is the right tool) and its first characters as a
//! lookup prefix. Verification finds the row by prefix, then compares hashes in constant
//! time.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "sk_live_";
/// Random characters after `sk_live_` (base62: about 238 bits).
const RANDOM_LEN: usize = 40;
/// Characters of the key kept in clear as its lookup id: `sk_live_` and 8 more.
const LOOKUP_LEN: usize = KEY_PREFIX.len() + 8;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The admin affiliate API.
    Admin,
    /// `POST /v1/conversions` on ingest.
    Events,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Events => "events",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Scope::Admin),
            "events" => Some(Scope::Events),
            _ => None,
        }
    }
}

/// A key's stored form.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub id: i64,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub owner_email: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredKey {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    /// Whether `presented` is this key (constant-time in the key's content).
    pub fn matches(&self, presented: &str) -> bool {
        self.revoked_at.is_none() && bool::from(hash(presented).as_slice().ct_eq(&self.key_hash))
    }
}

/// A freshly generated key: `key` is shown once and never stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

pub fn generate() -> NewKey {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect();
    let key = format!("{KEY_PREFIX}{random}");
    NewKey {
        prefix: key[..LOOKUP_LEN].to_string(),
        hash: hash(&key),
        key,
    }
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The lookup prefix of a presented key, when it looks like one of ours.
pub fn lookup_prefix(presented: &str) -> Option<&str> {
    (presented.starts_with(KEY_PREFIX)
        && presented.len() == KEY_PREFIX.len() + RANDOM_LEN
        && presented
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then(|| &presented[..LOOKUP_LEN])
}

/// Creates a key and returns it (the only time it is visible) with its row.
pub async fn create(
    pool: &PgPool,
    owner_email: &str,
    scopes: &[Scope],
) -> sqlx::Result<(NewKey, StoredKey)> {
    let new = generate();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let row = sqlx::query_as::<_, StoredKey>(
        "INSERT INTO api_keys (prefix, key_hash, owner_email, scopes) VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(&new.prefix)
    .bind(new.hash.as_slice())
    .bind(owner_email)
    .bind(&scopes)
    .fetch_one(pool)
    .await?;
    Ok((new, row))
}

/// Revokes the key with this lookup prefix (or whole key). Returns whether one was revoked.
pub async fn revoke(pool: &PgPool, prefix_or_key: &str) -> sqlx::Result<bool> {
    let prefix = lookup_prefix(prefix_or_key).unwrap_or(prefix_or_key);
    let result = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<StoredKey>> {
    sqlx::query_as::<_, StoredKey>("SELECT * FROM api_keys ORDER BY id")
        .fetch_all(pool)
        .await
}

/// Finds the active key for `presented`, if it is one.
pub async fn verify(pool: &PgPool, presented: &str) -> sqlx::Result<Option<StoredKey>> {
    let Some(prefix) = lookup_prefix(presented) else {
        return Ok(None);
    };
    let row = sqlx::query_as::<_, StoredKey>(
        "SELECT * FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(row.filter(|k| k.matches(presented)))
}

/// Every active key, for services that verify keys from memory (ingest).
pub async fn load_active(pool: &PgPool) -> sqlx::Result<Vec<StoredKey>> {
    sqlx::query_as::<_, StoredKey>("SELECT * FROM api_keys WHERE revoked_at IS NULL")
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_others_do_not() {
        let new = generate();
        assert!(new.key.starts_with("sk_live_"));
        assert_eq!(lookup_prefix(&new.key), Some(new.prefix.as_str()));
        let stored = StoredKey {
            id: 1,
            prefix: new.prefix.clone(),
            key_hash: new.hash.to_vec(),
            owner_email: "a@b.c".into(),
            scopes: vec!["admin".into()],
            created_at: Utc::now(),
            revoked_at: None,
        };
        assert!(stored.matches(&new.key));
        let mut other = new.key.clone();
        other.pop();
        other.push(if new.key.ends_with('a') { 'b' } else { 'a' });
        assert!(!stored.matches(&other));
        assert!(lookup_prefix("sk_live_short").is_none());
        assert!(lookup_prefix("eyJhbGciOiJIUzI1NiJ9.e30.x").is_none());
        assert!(stored.has_scope(Scope::Admin) && !stored.has_scope(Scope::Events));
    }
}
