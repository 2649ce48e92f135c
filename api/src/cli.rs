//! The api binary's commands besides serving: API keys (created keys are shown once and
//! stored only as hashes) and promoter access tokens for trying the promoter API.

// A command-line interface: printing is its output.
#![allow(clippy::print_stdout)]

use anyhow::Context;
use reftrack_store::api_keys::{self, Scope};

use crate::Config;
use crate::auth::Tokens;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Create, revoke or list API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a promoter access token for a user, signed with JWT_SIGNING_KEY
    /// (as Django REST framework SimpleJWT would issue it).
    Token {
        #[arg(long)]
        user_id: i64,
        /// Lifetime of the token, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it: it is shown this once and stored only as a hash.
    Create {
        /// The owner; recorded as `approved_by` on approvals made with the key.
        #[arg(long)]
        email: String,
        /// admin (the admin API) and/or events (POST /v1/conversions on ingest).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        scopes: Vec<String>,
    },
    /// Revoke a key, named by its prefix (sk_live_XXXXXXXX) or in full.
    Revoke { key: String },
    /// List keys by prefix, owner, scopes and state.
    List,
}

pub async fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Token { user_id, ttl_secs } => {
            anyhow::ensure!(
                user_id > 0 && ttl_secs > 0,
                "--user-id and --ttl-secs must be positive"
            );
            println!(
                "{}",
                Tokens::new(&config.jwt_signing_key(), 0).issue(user_id, ttl_secs)
            );
        }
        Command::Keys(keys) => {
            let pool = config.postgres.connect().await?;
            reftrack_store::postgres::migrate(&pool).await?;
            match keys {
                KeysCommand::Create { email, scopes } => {
                    anyhow::ensure!(
                        email_address::EmailAddress::is_valid(&email),
                        "--email must be an email address"
                    );
                    let scopes = scopes
                        .iter()
                        .map(|s| {
                            Scope::parse(s)
                                .with_context(|| format!("unknown scope {s}: use admin, events"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let (key, row) = api_keys::create(&pool, &email, &scopes).await?;
                    println!("{}", key.key);
                    eprintln!(
                        "created key {} for {} ({}); it is not shown again",
                        row.prefix,
                        row.owner_email,
                        row.scopes.join(",")
                    );
                }
                KeysCommand::Revoke { key } => {
                    anyhow::ensure!(api_keys::revoke(&pool, &key).await?, "no active key {key}");
                    eprintln!("revoked {key}");
                }
                KeysCommand::List => {
                    for key in api_keys::list(&pool).await? {
                        let state = key
                            .revoked_at
                            .map_or("active".to_string(), |t| format!("revoked {t}"));
                        println!(
                            "{}  {}  {}  {}",
                            key.prefix,
                            key.owner_email,
                            key.scopes.join(","),
                            state
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
