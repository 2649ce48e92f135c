//! Who is calling. Promoters present a Bearer JWT compatible with Django REST framework
//! SimpleJWT access tokens (HS256, `token_type: "access"`, `user_id`, `exp`, `iat`,
//! `jti`), so a Django product can hand its own tokens over. Admins present a Bearer
//! `sk_live_...` key, stored hashed. Each extractor also applies the caller's rate limit.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reftrack_common::config::reveal;
use reftrack_store::api_keys::{self, Scope};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{AdminError, ApiError, PromoterError};
use crate::state::AppState;

/// Verifies promoter tokens: HS256 only (the algorithm is pinned, so `alg: none` and
/// key-confusion tricks fail), expiry enforced with an explicit leeway.
#[derive(Clone)]
pub struct Tokens {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: String,
    #[serde(deserialize_with = "user_id")]
    pub user_id: i64,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// Optional: the product may add the user's name and email to its tokens; a promoter
    /// created by the promoter API starts with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// SimpleJWT writes the user id as the user model's primary key: a number, or a string
/// for string keys; either way it must be a positive integer here.
fn user_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let id = match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => Err(serde::de::Error::custom(
            "user_id must be a positive integer",
        )),
    }
}

impl Tokens {
    pub fn new(key: &SecretString, leeway_secs: u64) -> Self {
        let secret = reveal(key).as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// The promoter a valid access token names.
    pub fn verify(&self, token: &str) -> Option<Promoter> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let issued_in_future =
            claims.iat > chrono::Utc::now().timestamp() + self.validation.leeway as i64;
        (claims.token_type == "access" && !issued_in_future).then(|| Promoter {
            user_id: claims.user_id,
            name: claims
                .name
                .filter(|n| !n.trim().is_empty() && n.len() <= 200),
            email: claims
                .email
                .filter(|e| e.len() <= 254 && email_address::EmailAddress::is_valid(e))
                .map(|e| e.to_lowercase()),
        })
    }

    /// An access token for `user_id`, as SimpleJWT would issue it.
    pub fn issue(&self, user_id: i64, ttl_secs: i64) -> String {
        self.issue_for(
            &Promoter {
                user_id,
                name: None,
                email: None,
            },
            ttl_secs,
        )
    }

    /// An access token for `promoter`, with its name and email as claims when it has them.
    pub fn issue_for(&self, promoter: &Promoter, ttl_secs: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            token_type: "access".into(),
            user_id: promoter.user_id,
            exp: now + ttl_secs,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            name: promoter.name.clone(),
            email: promoter.email.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A promoter, authenticated by JWT.
#[derive(Debug, Clone)]
pub struct Promoter {
    pub user_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl FromRequestParts<AppState> for Promoter {
    type Rejection = PromoterError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, PromoterError> {
        let promoter = bearer(parts)
            .and_then(|token| state.tokens.verify(token))
            .ok_or(ApiError::Unauthorized)?;
        state
            .limits
            .check(&format!("user:{}", promoter.user_id))
            .await?;
        Ok(promoter)
    }
}

/// An admin, authenticated by an API key with the admin scope.
#[derive(Debug, Clone)]
pub struct Admin {
    pub key_id: i64,
    pub email: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if api_keys::lookup_prefix(token).is_none() {
            // A valid promoter token is a real identity, just not an admin one.
            return Err(match state.tokens.verify(token) {
                Some(_) => ApiError::Forbidden("Promoter tokens cannot use the admin API"),
                None => ApiError::Unauthorized,
            }
            .into());
        }
        let key = api_keys::verify(&state.pool, token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if !key.has_scope(Scope::Admin) {
            return Err(ApiError::Forbidden("This API key lacks the admin scope").into());
        }
        state.limits.check(&format!("key:{}", key.id)).await?;
        Ok(Admin {
            key_id: key.id,
            email: key.owner_email,
        })
    }
}
