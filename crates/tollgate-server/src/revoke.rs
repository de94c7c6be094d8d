//! `tollgate revoke`: publishes one revocation straight into the Redis stream, for tokens
//! tollgate did not issue (Keycloak, Auth0, ...). Every follower of the stream enforces it;
//! no token service stores it, so it lives as long as the stream or a snapshot holds it.
//!
//! A cutoff applies to every issuer's tokens, as tollgate's own do, unless `--issuer` limits it
//! to one issuer's: subjects and sessions are each identity provider's own names (two providers
//! may both have a user `1234`), so a cutoff for a provider's user or session names the
//! provider.

use crate::config;
use clap::ArgGroup;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_core::{CutoffScope, RevocationEvent, TenantPath, UnixMillis};
use tollgate_redis::RedisTarget;
use tollgate_redis::wire::{self, Keys};

/// The environment variable whose value, if set, is the Redis password.
pub(crate) const PASSWORD_ENV: &str = "TOLLGATE_REDIS_PASSWORD";

/// How long Redis may take to answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `tollgate revoke`'s arguments.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("redis_target").required(true).args(["redis", "config"])),
    group(ArgGroup::new("scope").required(true).args(["jti", "all", "tenant", "subject", "client", "session"])),
)]
pub(crate) struct Args {
    /// The Redis URL (`redis://host:port/db` or `rediss://...`); the password is taken from
    /// TOLLGATE_REDIS_PASSWORD if set.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Takes Redis from the `[replication]` table of this configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The prefix of the Redis keys [default: tollgate, or the configuration's].
    #[arg(long, value_name = "PREFIX")]
    key_prefix: Option<String>,
    /// Revokes one token by its `jti` (with --expires-at).
    #[arg(long, value_name = "ID", requires = "expires_at")]
    jti: Option<String>,
    /// The revoked token's expiry: the revocation is kept until then.
    #[arg(
        long,
        value_name = "TIME",
        conflicts_with_all = ["all", "tenant", "subject", "client", "session"]
    )]
    expires_at: Option<String>,
    /// Cuts off every token.
    #[arg(long)]
    all: bool,
    /// Cuts off the tokens of this tenant and its sub-tenants (`/Acme`).
    #[arg(long, value_name = "PATH")]
    tenant: Option<String>,
    /// Cuts off the tokens of this subject (`sub`).
    #[arg(long, value_name = "SUB")]
    subject: Option<String>,
    /// Cuts off the tokens issued to this client (`client_id`).
    #[arg(long, value_name = "ID")]
    client: Option<String>,
    /// Cuts off the tokens of this session (`sid`: what a back-channel logout ends).
    #[arg(long, value_name = "SID")]
    session: Option<String>,
    /// Limits the cutoff to the tokens of this issuer (`iss`, compared exactly) [default: every
    /// issuer's]. A `--jti` revocation is for that token whoever issued it: no `--issuer`.
    #[arg(long, value_name = "ISS", conflicts_with_all = ["jti", "expires_at"])]
    issuer: Option<String>,
    /// The cutoff: tokens issued before this instant are refused [default: now].
    #[arg(long, value_name = "TIME", conflicts_with = "jti")]
    before: Option<String>,
}

/// Publishes the event `args` describe and prints it, with the id the stream gave it.
pub(crate) fn run(args: Args) -> Result<(), String> {
    let event = event(&args)?;
    let (target, keys) = destination(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let id = runtime.block_on(async {
        let mut connection = target
            .connect_for(&keys, RESPONSE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        // Printed as published only once a failover cannot lose it.
        let acks = target.replica_acks();
        tollgate_redis::publish_acked(&mut connection, &keys, std::slice::from_ref(&event), acks)
            .await
            .map_err(|e| format!("cannot publish to {target}: {e}"))
    })?;
    let id = id
        .first()
        .map_or_else(|| "an unknown id".to_owned(), ToString::to_string);
    println!("published {} as {id} to {target}", describe(&event));
    Ok(())
}

/// The event, checked before anything touches the network.
fn event(args: &Args) -> Result<RevocationEvent, String> {
    let id = |flag: &str, value: &str| {
        wire::check_id(flag, value)
            .map(|()| value.to_owned())
            .map_err(|e| format!("--{flag}: {e}"))
    };
    if let (Some(jti), Some(expires_at)) = (&args.jti, &args.expires_at) {
        let expires_at = instant("expires-at", expires_at)?;
        if expires_at <= now() {
            return Err(format!(
                "--expires-at: {} has passed: an expired token is refused anyway",
                show(expires_at)
            ));
        }
        return Ok(RevocationEvent::Token {
            jti: id("jti", jti)?,
            expires_at,
        });
    }
    let scope = if args.all {
        CutoffScope::All
    } else if let Some(tenant) = &args.tenant {
        let path = TenantPath::parse(tenant).map_err(|e| format!("--tenant: {e}"))?;
        CutoffScope::Tenant(path.as_str().to_owned())
    } else if let Some(subject) = &args.subject {
        CutoffScope::Subject(id("subject", subject)?)
    } else if let Some(client) = &args.client {
        CutoffScope::Client(id("client", client)?)
    } else if let Some(session) = &args.session {
        CutoffScope::Session(id("session", session)?)
    } else {
        // clap's argument groups make this unreachable; say so rather than panic.
        return Err(
            "name what to revoke: --jti, --all, --tenant, --subject, --client or --session".into(),
        );
    };
    if let Some(issuer) = &args.issuer {
        wire::check_issuer(issuer).map_err(|e| format!("--issuer: {e}"))?;
    }
    let issued_before = match &args.before {
        Some(before) => instant("before", before)?,
        None => now(),
    };
    Ok(RevocationEvent::cutoff(
        args.issuer.as_deref(),
        scope,
        issued_before,
    ))
}

/// Where to publish: `--redis` (password from [`PASSWORD_ENV`]) or the configuration's
/// `[replication]` table (its `password_env`, else [`PASSWORD_ENV`]).
fn destination(args: &Args) -> Result<(RedisTarget, Keys), String> {
    let (target, prefix, has_password) = match (&args.redis, &args.config) {
        (Some(url), _) => (
            RedisTarget::new(url).map_err(|e| format!("--redis: {e}"))?,
            config::DEFAULT_KEY_PREFIX.to_owned(),
            false,
        ),
        (None, Some(path)) => {
            let replication = config::load_replication(path)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{}: no [replication] table", path.display()))?;
            (
                replication.target().clone(),
                replication.key_prefix().to_owned(),
                replication.has_password_env(),
            )
        }
        (None, None) => return Err("name the Redis: --redis URL or --config FILE".into()),
    };
    let target = match std::env::var(PASSWORD_ENV) {
        Ok(password) if !password.is_empty() && !has_password => target
            .with_password(&password)
            .map_err(|e| format!("{PASSWORD_ENV}: {e}"))?,
        _ => target,
    };
    let prefix = args.key_prefix.clone().unwrap_or(prefix);
    config::check_key_prefix(&prefix).map_err(|e| format!("--key-prefix: {e}"))?;
    Ok((target, Keys::new(&prefix)))
}

/// RFC 3339 (`2026-11-22T10:00:00Z`, fractional seconds allowed) or whole Unix seconds.
fn instant(flag: &str, text: &str) -> Result<UnixMillis, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return jiff::Timestamp::from_second(seconds)
            .map(|ts| UnixMillis(ts.as_millisecond()))
            .map_err(|_| format!("--{flag}: {seconds} is out of range"));
    }
    text.parse::<jiff::Timestamp>()
        .map(|ts| UnixMillis(ts.as_millisecond()))
        .map_err(|_| {
            format!(
                "--{flag}: {text:?} is neither an RFC 3339 time (2026-11-22T10:00:00Z) nor Unix \
                 seconds"
            )
        })
}

fn now() -> UnixMillis {
    UnixMillis::from(std::time::SystemTime::now())
}

/// `2026-11-22T10:00:00.000Z (1763805600000)`.
fn show(at: UnixMillis) -> String {
    match jiff::Timestamp::from_millisecond(at.0) {
        Ok(ts) => format!("{ts:.3} ({})", at.0),
        Err(_) => at.0.to_string(),
    }
}

/// One line saying what the event revokes.
fn describe(event: &RevocationEvent) -> String {
    match event {
        RevocationEvent::Token { jti, expires_at } => {
            format!("token {jti:?} until {}", show(*expires_at))
        }
        RevocationEvent::Grant {
            grant_id,
            expires_at,
        } => format!("grant {grant_id:?} until {}", show(*expires_at)),
        other => match other.as_cutoff() {
            Some((issuer, scope, issued_before)) => {
                let scope = match scope {
                    CutoffScope::All => "all".to_owned(),
                    CutoffScope::Tenant(path) => format!("tenant {path:?}"),
                    CutoffScope::Subject(sub) => format!("subject {sub:?}"),
                    CutoffScope::Client(id) => format!("client {id:?}"),
                    CutoffScope::Session(sid) => format!("session {sid:?}"),
                    other => format!("{other:?}"),
                };
                let of = issuer.map_or(String::new(), |iss| format!(" of issuer {iss:?}"));
                format!("cutoff {scope}{of} issued before {}", show(issued_before))
            }
            None => format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_unix_seconds() {
        assert_eq!(
            instant("before", "2026-11-22T10:00:00Z"),
            Ok(UnixMillis(1_795_341_600_000))
        );
        assert_eq!(
            instant("before", "2026-11-22T10:00:00.25Z"),
            Ok(UnixMillis(1_795_341_600_250))
        );
        assert_eq!(
            instant("before", "1795341600"),
            Ok(UnixMillis(1_795_341_600_000))
        );
        let err = instant("before", "yesterday").unwrap_err();
        assert!(err.starts_with("--before:"), "{err}");
        assert!(instant("before", "99999999999999999").is_err());
    }

    #[test]
    fn the_line_names_the_event_and_its_instant() {
        let event = RevocationEvent::Cutoff {
            scope: CutoffScope::Subject("alice".into()),
            issued_before: UnixMillis(1_795_341_600_000),
        };
        assert_eq!(
            describe(&event),
            "cutoff subject \"alice\" issued before 2026-11-22T10:00:00.000Z (1795341600000)"
        );
        let event = RevocationEvent::cutoff(
            Some("https://id.example.com"),
            CutoffScope::Session("s-1".into()),
            UnixMillis(1_795_341_600_000),
        );
        assert_eq!(
            describe(&event),
            "cutoff session \"s-1\" of issuer \"https://id.example.com\" issued before \
             2026-11-22T10:00:00.000Z (1795341600000)"
        );
    }
}
