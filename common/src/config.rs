//! Configuration groups shared by the services, read from the environment with `clap`.
//!
//! Every value has a default that matches the local stack (`scripts/stack up`), so a
//! developer needs no configuration at all; production sets `REFTRACK_ENV=production`,
//! which makes the secrets mandatory. A bad value stops start-up with one line that
//! names the variable (see [`load`]).

use std::fmt;
use std::str::FromStr;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Which deployment this is: decides whether development defaults for secrets are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Dev,
    Test,
    Production,
}

/// A start-up configuration error, rendered as one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("bad configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            message: message.into(),
        }
    }
}

/// Checks that go beyond parsing single values (cross-field rules, secrets per profile).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Parses a service's configuration from the environment (and command-line flags) and
/// validates it, turning clap's multi-line report into one line that names the variable.
pub fn load<C: Parser + Validate>() -> Result<C, ConfigError> {
    load_from::<C, _, _>(std::env::args_os())
}

/// [`load`] with explicit arguments, for tests.
pub fn load_from<C, I, T>(args: I) -> Result<C, ConfigError>
where
    C: Parser + Validate,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = C::try_parse_from(args).map_err(|err| {
        use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
        if matches!(err.kind(), DisplayHelp | DisplayVersion) {
            // Asked for, not an error: print it as clap would and stop.
            err.exit();
        }
        one_line(&C::command(), &err)
    })?;
    config.validate()?;
    Ok(config)
}

fn one_line(command: &clap::Command, err: &clap::Error) -> ConfigError {
    use clap::error::ContextKind;
    let arg = err
        .get(ContextKind::InvalidArg)
        .map(ToString::to_string)
        .unwrap_or_default();
    // clap names the flag (`--database-url <URL>`); operators set the environment
    // variable behind it, so name that.
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--");
    let var = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            if arg.is_empty() {
                "arguments".to_string()
            } else {
                arg.clone()
            }
        });
    let value = err
        .get(ContextKind::InvalidValue)
        .map(|v| format!(" '{v}'"))
        .unwrap_or_default();
    let detail = err
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let message = match detail.rsplit_once(": ") {
        Some((_, reason)) if !value.is_empty() => format!("invalid value{value}: {reason}"),
        _ => detail,
    };
    ConfigError::new(var, message)
}

/// A URL that may carry a password: `Debug` and `Display` never print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl FromStr for SecretUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s).map_err(|e| e.to_string())?;
        if !url.has_host() {
            return Err("the URL has no host".to_string());
        }
        Ok(Self(url))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut redacted = self.0.clone();
        if redacted.password().is_some() {
            let _ = redacted.set_password(Some("***"));
        }
        f.write_str(redacted.as_str())
    }
}

/// Parses an `http`/`https` URL with a host (clap value parser).
pub fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err("expected an http:// or https:// URL with a host".to_string());
    }
    Ok(url)
}

/// Parses a non-empty secret (clap value parser); empty strings count as unset.
pub fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(SecretString::from(s.to_string()))
}

/// The fewest bytes a production secret may have (an HMAC key's own size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets this repository ships (development fallbacks, examples); production refuses
/// them, and anything that starts as a placeholder does.
const SHIPPED_SECRETS: &[&str] = &[
    "reftrack-dev-jwt-signing-key",
    "reftrack-dev-visitor-hash-secret",
];
const PLACEHOLDER_PREFIXES: &[&str] = &["change-me", "changeme", "replace-me", "secret"];

/// Requires a secret outside the dev and test profiles; returns the secret or the
/// development fallback. In production the secret must be at least [`MIN_SECRET_BYTES`]
/// long and not one the repository ships.
pub fn require_secret(
    profile: Profile,
    var: &str,
    value: Option<&SecretString>,
    dev_fallback: &str,
) -> Result<SecretString, ConfigError> {
    const HOW: &str = "generate one with `openssl rand -base64 48`";
    match (value, profile) {
        (None, Profile::Dev | Profile::Test) => Ok(SecretString::from(dev_fallback.to_string())),
        (Some(secret), Profile::Dev | Profile::Test) => Ok(secret.clone()),
        (None, Profile::Production) => Err(ConfigError::new(
            var,
            format!("must be set when REFTRACK_ENV=production; {HOW}"),
        )),
        (Some(secret), Profile::Production) => {
            let text = secret.expose_secret();
            let lower = text.to_ascii_lowercase();
            if text == dev_fallback
                || SHIPPED_SECRETS.contains(&text)
                || PLACEHOLDER_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                Err(ConfigError::new(
                    var,
                    format!("is a value shipped with reftrack, not a secret; {HOW}"),
                ))
            } else if text.len() < MIN_SECRET_BYTES {
                Err(ConfigError::new(
                    var,
                    format!(
                        "is {} bytes; production needs at least {MIN_SECRET_BYTES}; {HOW}",
                        text.len()
                    ),
                ))
            } else {
                Ok(secret.clone())
            }
        }
    }
}

/// Exposes a secret's text; one named place so that every use is easy to find.
pub fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Deployment profile: dev, test or production (production requires every secret).
    #[arg(
        id = "env",
        long = "env",
        env = "REFTRACK_ENV",
        value_enum,
        default_value = "dev"
    )]
    pub profile: Profile,

    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Sample {
        #[command(flatten)]
        common: CommonConfig,
        #[arg(
            id = "database_url",
            long = "database-url",
            env = "DATABASE_URL_FOR_TEST"
        )]
        database_url: Option<SecretUrl>,
        #[arg(id = "secret", long = "secret", env = "SAMPLE_SECRET_FOR_TEST", value_parser = parse_secret)]
        secret: Option<SecretString>,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            require_secret(
                self.common.profile,
                "SAMPLE_SECRET_FOR_TEST",
                self.secret.as_ref(),
                "dev",
            )
            .map(|_| ())
        }
    }

    #[test]
    fn bad_url_names_the_variable_in_one_line() {
        let err = load_from::<Sample, _, _>(["x", "--database-url", "not a url"]).unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("bad configuration: DATABASE_URL_FOR_TEST: invalid value 'not a url'"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn missing_secret_in_production_names_the_variable() {
        let err = load_from::<Sample, _, _>(["x", "--env", "production"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad configuration: SAMPLE_SECRET_FOR_TEST: must be set when REFTRACK_ENV=production; \
             generate one with `openssl rand -base64 48`"
        );
        assert!(load_from::<Sample, _, _>(["x"]).is_ok());
    }

    #[test]
    fn production_refuses_shipped_placeholder_and_short_secrets() {
        let strong = "q8Xr2vN0c7LmZ1pT4yHs9WbE6uKaJd3FgQ5oRiVtYw==";
        let with = |secret: &str| {
            load_from::<Sample, _, _>(["x", "--env", "production", "--secret", secret])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(with(strong), Ok(()));
        for shipped in [
            "dev",
            "reftrack-dev-jwt-signing-key",
            "change-me-jwt-signing-key-0123456789abcdef",
        ] {
            let err = with(shipped).unwrap_err();
            assert!(
                err.contains("a value shipped with reftrack"),
                "{shipped}: {err}"
            );
            assert_eq!(err.lines().count(), 1);
        }
        let err = with("s3cr3t-but-only-24-bytes").unwrap_err();
        assert!(
            err.contains("is 24 bytes; production needs at least 32"),
            "{err}"
        );
        // Development takes anything, and the fallback when unset.
        assert!(load_from::<Sample, _, _>(["x", "--secret", "s3"]).is_ok());
    }

    #[test]
    fn secret_urls_never_print_their_password() {
        let url: SecretUrl = "postgres://u:hunter2@db:5432/x".parse().unwrap();
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        assert!(url.expose().contains("hunter2"));
    }
}
