//! `[back_channel_logout]` and `[[shared_signals]]`, checked: where the gateway receives identity
//! providers' logouts and security events, and which configured issuers' tokens they may revoke.

use super::IssuerConfig;
use super::file::{BackChannelLogoutFile, SharedSignalsFile};
use http::{HeaderValue, Uri};
use std::fmt;
use std::time::Duration;
use tollgate_program::config::{ConfigError, Source};
use tollgate_signals::RevokeOnLogout;
use toml::Spanned;

/// `[back_channel_logout]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct BackChannelLogoutConfig {
    /// The path on the gateway's listener, compared exactly.
    pub(crate) path: String,
    pub(crate) max_age: Duration,
    pub(crate) issuers: Vec<LogoutIssuerConfig>,
}

/// One issuer whose logout tokens are accepted.
#[derive(Debug, Clone)]
pub(crate) struct LogoutIssuerConfig {
    /// Its place in the configuration's issuers (whose keys verify its logout tokens).
    pub(crate) issuer: usize,
    pub(crate) client_id: String,
    pub(crate) revoke: RevokeOnLogout,
}

/// The longest freshness window accepted: a day (a logout token is sent the moment a session
/// ends; a longer window only keeps replay protection busy).
const MAX_AGE_LIMIT: u64 = 86_400;

/// A path a receiver answers on: absolute, of characters that need no encoding, and routed as
/// written (no dot segments, no empty ones), so that it is compared exactly with a request's.
fn plain_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && crate::route::routable(path).is_some_and(|p| p == path)
}

const PLAIN_PATH: &str =
    "must be a plain absolute path (letters, digits, / - _ . ~; no dot segments)";

pub(super) fn back_channel_logout(
    source: &Source,
    file: &BackChannelLogoutFile,
    issuers: &[IssuerConfig],
    forward_auth_path: Option<&str>,
) -> Result<BackChannelLogoutConfig, ConfigError> {
    let path = file.path.get_ref();
    if !plain_path(path) {
        return Err(source.error(&file.path, "back_channel_logout.path", PLAIN_PATH));
    }
    if forward_auth_path == Some(path.as_str()) {
        return Err(source.error(
            &file.path,
            "back_channel_logout.path",
            "is forward_auth's path",
        ));
    }
    let max_age = match &file.max_age {
        Some(age) if !(1..=MAX_AGE_LIMIT).contains(age.get_ref()) => {
            return Err(source.error(
                age,
                "back_channel_logout.max_age",
                format_args!("must be between 1 and {MAX_AGE_LIMIT} seconds"),
            ));
        }
        Some(age) => Duration::from_secs(*age.get_ref()),
        None => Duration::from_secs(300),
    };
    if file.issuers.get_ref().is_empty() {
        return Err(source.error(
            &file.issuers,
            "back_channel_logout.issuers",
            "name at least one issuer whose logout tokens are accepted",
        ));
    }
    let mut checked: Vec<LogoutIssuerConfig> = Vec::new();
    for (i, entry) in file.issuers.get_ref().iter().enumerate() {
        let key = |name: &str| format!("back_channel_logout.issuers[{i}].{name}");
        let name = entry.issuer.get_ref();
        let Some(index) = issuers.iter().position(|c| &c.issuer == name) else {
            return Err(source.error(
                &entry.issuer,
                &key("issuer"),
                format_args!("`{name}` is not a configured issuer (its keys verify its logouts)"),
            ));
        };
        if checked.iter().any(|c| c.issuer == index) {
            return Err(source.error(
                &entry.issuer,
                &key("issuer"),
                format_args!("`{name}` is listed twice"),
            ));
        }
        if entry.client_id.get_ref().trim().is_empty() {
            return Err(source.error(&entry.client_id, &key("client_id"), "must not be empty"));
        }
        let revoke = match entry.revoke.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("session") => RevokeOnLogout::Session,
            Some("subject") => RevokeOnLogout::Subject,
            Some(_) => {
                let spanned = entry.revoke.as_ref().unwrap_or(&entry.issuer);
                return Err(source.error(
                    spanned,
                    &key("revoke"),
                    "must be \"session\" or \"subject\"",
                ));
            }
        };
        checked.push(LogoutIssuerConfig {
            issuer: index,
            client_id: entry.client_id.get_ref().clone(),
            revoke,
        });
    }
    Ok(BackChannelLogoutConfig {
        path: path.clone(),
        max_age,
        issuers: checked,
    })
}

/// `[[shared_signals]]`, checked: one Shared Signals receiver per transmitter.
#[derive(Debug, Clone)]
pub(crate) struct SharedSignalsConfig {
    /// The transmitter's issuer identifier.
    pub(crate) transmitter: String,
    pub(crate) audience: String,
    pub(crate) bearer_token: Secret,
    /// Configured issuers of the gateway, never empty.
    pub(crate) token_issuers: Vec<String>,
    pub(crate) delivery: SignalDelivery,
    /// Poll delivery: the wait after a poll that brought nothing. Push delivery: how often the
    /// stream's status is read (how the receiver notices a transmitter that went away).
    pub(crate) interval: Duration,
    pub(crate) max_age: Duration,
}

/// How a transmitter's SETs reach the gateway.
#[derive(Debug, Clone)]
pub(crate) enum SignalDelivery {
    /// The receiver polls the transmitter (RFC 8936).
    Poll,
    /// The transmitter POSTs to `url`, which reaches the gateway's listener at `path` (RFC 8935),
    /// with `authorization` as its `Authorization` header when set.
    Push {
        path: String,
        url: String,
        authorization: Option<Secret>,
    },
}

/// A value read from the environment that no log, error or `Debug` output may show.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The wait between polls when the table sets none: soon enough for a revocation, light on the
/// transmitter.
const DEFAULT_POLL_INTERVAL: u64 = 5;
/// The wait between status reads of a push stream when the table sets none: pushes need no
/// polling, this only notices a transmitter that went away or paused the stream.
const DEFAULT_STATUS_INTERVAL: u64 = 30;
/// How old a SET may be by default: a polled SET may have waited at the transmitter while the
/// gateway was away, and refusing it loses its revocation for good.
const DEFAULT_SET_MAX_AGE: u64 = 86_400;
/// The longest freshness window accepted: a week (replay protection remembers every `jti` that
/// long).
const SET_MAX_AGE_LIMIT: u64 = 7 * 86_400;

/// Every `[[shared_signals]]` table. `taken` are the paths of the listener already answered
/// before any route (forward-auth's, the logout receiver's), with what they are.
pub(super) fn shared_signals(
    source: &Source,
    tables: &[Spanned<SharedSignalsFile>],
    issuers: &[IssuerConfig],
    taken: &[(&str, &str)],
) -> Result<Vec<SharedSignalsConfig>, ConfigError> {
    let mut checked: Vec<SharedSignalsConfig> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let key = |name: &str| format!("shared_signals[{i}].{name}");
        let config = receiver(source, table, issuers, &key)?;
        let file = table.get_ref();
        if checked.iter().any(|c| c.transmitter == config.transmitter) {
            return Err(source.error(
                &file.transmitter,
                &key("transmitter"),
                format_args!(
                    "`{}` is configured twice (one stream per transmitter)",
                    config.transmitter
                ),
            ));
        }
        if let SignalDelivery::Push { path, .. } = &config.delivery {
            let spanned = file.push_path.as_ref().unwrap_or(&file.transmitter);
            if let Some((what, _)) = taken.iter().find(|(_, p)| p == path) {
                return Err(source.error(spanned, &key("push_path"), format_args!("is {what}")));
            }
            let earlier = checked.iter().position(
                |c| matches!(&c.delivery, SignalDelivery::Push { path: p, .. } if p == path),
            );
            if let Some(j) = earlier {
                return Err(source.error(
                    spanned,
                    &key("push_path"),
                    format_args!("is shared_signals[{j}]'s push_path"),
                ));
            }
        }
        checked.push(config);
    }
    Ok(checked)
}

/// One table, on its own.
fn receiver(
    source: &Source,
    table: &Spanned<SharedSignalsFile>,
    issuers: &[IssuerConfig],
    key: &dyn Fn(&str) -> String,
) -> Result<SharedSignalsConfig, ConfigError> {
    let file = table.get_ref();
    let transmitter = http_url(source, &file.transmitter, &key("transmitter"))?;
    if file.audience.get_ref().trim().is_empty() {
        return Err(source.error(&file.audience, &key("audience"), "must not be empty"));
    }
    let bearer_token = secret_from_env(
        source,
        &file.bearer_token_env,
        &key("bearer_token_env"),
        "Bearer ",
    )?;
    let token_issuers = token_issuers(source, table, issuers, key)?;
    let delivery = delivery(source, file, key)?;
    let default_interval = match delivery {
        SignalDelivery::Poll => DEFAULT_POLL_INTERVAL,
        SignalDelivery::Push { .. } => DEFAULT_STATUS_INTERVAL,
    };
    Ok(SharedSignalsConfig {
        transmitter,
        audience: file.audience.get_ref().clone(),
        bearer_token,
        token_issuers,
        delivery,
        interval: seconds(
            source,
            file.poll_interval.as_ref(),
            &key("poll_interval"),
            3600,
            default_interval,
        )?,
        max_age: seconds(
            source,
            file.max_age.as_ref(),
            &key("max_age"),
            SET_MAX_AGE_LIMIT,
            DEFAULT_SET_MAX_AGE,
        )?,
    })
}

/// `token_issuers`, or the transmitter itself: each a configured issuer of the gateway, since a
/// cutoff of tokens the gateway does not accept protects nothing, and a name that is none is most
/// likely a typo (or a transmitter whose issuer differs from its tokens', as Okta's does).
fn token_issuers(
    source: &Source,
    table: &Spanned<SharedSignalsFile>,
    issuers: &[IssuerConfig],
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<String>, ConfigError> {
    let file = table.get_ref();
    let known = |name: &str| issuers.iter().any(|c| c.issuer == name);
    let Some(listed) = &file.token_issuers else {
        let transmitter = file.transmitter.get_ref();
        if !known(transmitter) {
            return Err(source.error(
                &file.transmitter,
                &key("token_issuers"),
                format_args!(
                    "not set, so it is the transmitter `{transmitter}`, which is not a configured                      issuer: list the configured issuers whose tokens this transmitter may revoke"
                ),
            ));
        }
        return Ok(vec![transmitter.clone()]);
    };
    if listed.get_ref().is_empty() {
        return Err(source.error(
            listed,
            &key("token_issuers"),
            "name at least one configured issuer (without the key, the transmitter's own)",
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(listed.get_ref().len());
    for name in listed.get_ref() {
        if !known(name.get_ref()) {
            return Err(source.error(
                name,
                &key("token_issuers"),
                format_args!(
                    "`{}` is not a configured issuer (a transmitter may only revoke tokens the                      gateway accepts)",
                    name.get_ref()
                ),
            ));
        }
        if names.contains(name.get_ref()) {
            return Err(source.error(
                name,
                &key("token_issuers"),
                format_args!("`{}` is listed twice", name.get_ref()),
            ));
        }
        names.push(name.get_ref().clone());
    }
    Ok(names)
}

/// `delivery` and the push keys, which only push delivery may set.
fn delivery(
    source: &Source,
    file: &SharedSignalsFile,
    key: &dyn Fn(&str) -> String,
) -> Result<SignalDelivery, ConfigError> {
    let push_keys = [
        ("push_path", file.push_path.as_ref()),
        ("push_url", file.push_url.as_ref()),
        (
            "push_authorization_env",
            file.push_authorization_env.as_ref(),
        ),
    ];
    match file.delivery.as_ref().map(|d| d.get_ref().as_str()) {
        None | Some("poll") => {
            if let Some((name, value)) = push_keys.iter().find_map(|(n, v)| v.map(|v| (n, v))) {
                return Err(source.error(
                    value,
                    &key(name),
                    "is for delivery = \"push\" only (delivery is \"poll\")",
                ));
            }
            Ok(SignalDelivery::Poll)
        }
        Some("push") => {
            let missing = |name: &str, what: &str| {
                source.error(
                    &file.transmitter,
                    &key(name),
                    format_args!("delivery = \"push\" needs {name}: {what}"),
                )
            };
            let path = file.push_path.as_ref().ok_or_else(|| {
                missing(
                    "push_path",
                    "where the gateway's listener receives the SETs",
                )
            })?;
            if !plain_path(path.get_ref()) {
                return Err(source.error(path, &key("push_path"), PLAIN_PATH));
            }
            let url = file.push_url.as_ref().ok_or_else(|| {
                missing(
                    "push_url",
                    "the public URL of push_path the transmitter is told to POST to",
                )
            })?;
            let authorization = file
                .push_authorization_env
                .as_ref()
                .map(|var| secret_from_env(source, var, &key("push_authorization_env"), ""))
                .transpose()?;
            Ok(SignalDelivery::Push {
                path: path.get_ref().clone(),
                url: http_url(source, url, &key("push_url"))?,
                authorization,
            })
        }
        Some(_) => {
            let spanned = file.delivery.as_ref().unwrap_or(&file.transmitter);
            Err(source.error(spanned, &key("delivery"), "must be \"poll\" or \"push\""))
        }
    }
}

/// An `http://` or `https://` URL with a host, as written (it is compared exactly: a
/// transmitter's issuer identifier, or a URL given to the transmitter).
fn http_url(source: &Source, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let url = value.get_ref();
    let uri: Uri = url
        .parse()
        .map_err(|_| source.error(value, key, "must be an http:// or https:// URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(url.clone()),
        _ => Err(source.error(value, key, "must be an http:// or https:// URL with a host")),
    }
}

/// The secret in the environment variable `var` names: set, not empty, and a valid header value
/// once after `prefix` (it is sent in an `Authorization` header). Errors name the variable,
/// never the value.
fn secret_from_env(
    source: &Source,
    var: &Spanned<String>,
    key: &str,
    prefix: &str,
) -> Result<Secret, ConfigError> {
    let name = var.get_ref();
    let value = std::env::var(name).map_err(|_| {
        source.error(
            var,
            key,
            format_args!("environment variable `{name}` is not set"),
        )
    })?;
    if value.trim().is_empty() {
        return Err(source.error(
            var,
            key,
            format_args!("environment variable `{name}` is empty"),
        ));
    }
    if HeaderValue::try_from(format!("{prefix}{value}")).is_err() {
        return Err(source.error(
            var,
            key,
            format_args!("environment variable `{name}` holds characters a header cannot carry"),
        ));
    }
    Ok(Secret(value))
}

/// A number of seconds from 1 to `max`, or `default`.
fn seconds(
    source: &Source,
    value: Option<&Spanned<u64>>,
    key: &str,
    max: u64,
    default: u64,
) -> Result<Duration, ConfigError> {
    match value {
        Some(v) if !(1..=max).contains(v.get_ref()) => {
            Err(source.error(v, key, format_args!("must be between 1 and {max} seconds")))
        }
        Some(v) => Ok(Duration::from_secs(*v.get_ref())),
        None => Ok(Duration::from_secs(default)),
    }
}
