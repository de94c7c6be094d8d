//! `[[shared_signals]]`, read alike by `tollgate gateway` and `tollgate serve`: one OpenID Shared
//! Signals receiver per transmitter. The table's schema ([`SharedSignalsTable`]), its checks
//! ([`shared_signals`], with each program's own [`Rules`]), and the receiver it configures
//! ([`SharedSignalsConfig::receiver`]); where the receiver publishes is each program's to say.
//!
//! The keys, with their defaults (the reference is `docs/gateway.md`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `transmitter` | required | the transmitter's issuer identifier: its `/.well-known/ssf-configuration` is read |
//! | `audience` | required | the `aud` of its SETs for this receiver |
//! | `bearer_token_env` | one of the two forms | the environment variable holding a fixed token for the transmitter's API |
//! | `token_url`, `client_id`, `client_secret_env`, `scope` | one of the two forms | OAuth 2.0 client credentials for the transmitter's API: the token endpoint, the client, the environment variable holding its secret, the scopes to ask for (optional) |
//! | `token_auth_method` | `"client_secret_basic"` | how the client authenticates at `token_url`: `client_secret_basic`, `client_secret_post` (both with `client_secret_env`), or `private_key_jwt` (RFC 7523) with `private_key_file`, `private_key_id` and `private_key_algorithm` (`RS256` by default; `ES256`, `EdDSA`) instead of a secret |
//! | `token_issuers` | `[transmitter]` | the issuers whose tokens its events may revoke (the program's rules decide which are allowed) |
//! | `delivery` | `"poll"` | or `"push"`, with `push_path`, `push_url` and optionally `push_authorization_env` |
//! | `poll_interval` | 5 (poll), 30 (push) | seconds between polls that brought nothing; with push, between reads of the stream's status |
//! | `max_age` | 86400 | how old a SET may be, in seconds (at most a week) |

use crate::config::{ConfigError, Source};
use http::{HeaderValue, Uri};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tollgate_core::{SigningAlgorithm, SigningKey};
use tollgate_signals::{
    ClientAuthentication, SsfPush, SsfReceiver, SsfReceiverBuilder, SsfStatus, SsfTask, StreamState,
};
use toml::Spanned;

/// One `[[shared_signals]]` table, as read: put it in a program's file schema as
/// `Vec<Spanned<SharedSignalsTable>>` and check it with [`shared_signals`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSignalsTable {
    transmitter: Spanned<String>,
    audience: Spanned<String>,
    bearer_token_env: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
    token_auth_method: Option<Spanned<String>>,
    private_key_file: Option<Spanned<String>>,
    private_key_id: Option<Spanned<String>>,
    private_key_algorithm: Option<Spanned<String>>,
    token_issuers: Option<Spanned<Vec<Spanned<String>>>>,
    delivery: Option<Spanned<String>>,
    push_path: Option<Spanned<String>>,
    push_url: Option<Spanned<String>>,
    push_authorization_env: Option<Spanned<String>>,
    poll_interval: Option<Spanned<u64>>,
    max_age: Option<Spanned<u64>>,
}

/// What a program allows of a `[[shared_signals]]` table beyond the table itself.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    /// `Ok` for an issuer whose tokens a transmitter may revoke here, else why not (the gateway:
    /// one of its configured issuers; `tollgate serve`: any but its own).
    pub token_issuer: &'a dyn Fn(&str) -> Result<(), String>,
    /// What already answers this path of the program's listener, if anything does (forward-auth,
    /// the logout receiver, the token service's endpoints): a `push_path` must be free.
    pub path_taken: &'a dyn Fn(&str) -> Option<String>,
}

impl fmt::Debug for Rules<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules").finish_non_exhaustive()
    }
}

/// One `[[shared_signals]]` table, checked: the receiver of one transmitter.
#[derive(Debug, Clone)]
pub struct SharedSignalsConfig {
    transmitter: String,
    audience: String,
    credentials: Credentials,
    token_issuers: Vec<String>,
    delivery: SignalDelivery,
    interval: Duration,
    max_age: Duration,
}

/// How the receiver authenticates to the transmitter's API.
#[derive(Debug, Clone)]
enum Credentials {
    /// A fixed bearer token (`bearer_token_env`).
    Bearer(Secret),
    /// OAuth 2.0 client credentials, whose tokens the receiver renews.
    ClientCredentials {
        token_url: String,
        client_id: String,
        /// Its `Debug` shows the method, never the secret or the key.
        authentication: ClientAuthentication,
        scope: Option<String>,
    },
}

/// How a transmitter's SETs reach the receiver.
#[derive(Debug, Clone)]
enum SignalDelivery {
    /// The receiver polls the transmitter (RFC 8936).
    Poll,
    /// The transmitter POSTs to `url`, which reaches the program's listener at `path` (RFC 8935),
    /// with `authorization` as its `Authorization` header when set.
    Push {
        path: String,
        url: String,
        authorization: Option<Secret>,
    },
}

/// A value read from the environment that no log, error or `Debug` output may show.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl SharedSignalsConfig {
    /// The transmitter's issuer identifier (the `transmitter` label of the metrics).
    pub fn transmitter(&self) -> &str {
        &self.transmitter
    }

    /// With push delivery, the path of the program's listener the SETs arrive at (to be
    /// answered by [`SsfReceiver::push_service`] before anything else); `None` with poll delivery.
    pub fn push_path(&self) -> Option<&str> {
        match &self.delivery {
            SignalDelivery::Poll => None,
            SignalDelivery::Push { path, .. } => Some(path),
        }
    }

    /// The receiver's builder with everything the table says; the program adds where the
    /// cutoffs are published (and its replay protection), then builds it.
    pub fn receiver(&self) -> SsfReceiverBuilder {
        let builder = SsfReceiver::builder(&self.transmitter, &self.audience);
        let builder = match &self.credentials {
            Credentials::Bearer(token) => builder.bearer_token(&token.0),
            Credentials::ClientCredentials {
                token_url,
                client_id,
                authentication,
                scope,
            } => builder.client_credentials_with(
                token_url,
                client_id,
                authentication.clone(),
                scope.clone(),
            ),
        };
        let builder = builder
            .token_issuers(self.token_issuers.iter().cloned())
            .max_age(self.max_age)
            .description("tollgate: revocations of access tokens");
        match &self.delivery {
            SignalDelivery::Poll => builder.poll_interval(self.interval),
            SignalDelivery::Push {
                url, authorization, ..
            } => builder
                .push(url, authorization.as_ref().map(|a| a.0.clone()))
                .status_interval(self.interval),
        }
    }
}

/// The wait between polls when the table sets none: soon enough for a revocation, light on the
/// transmitter.
const DEFAULT_POLL_INTERVAL: u64 = 5;
/// The wait between status reads of a push stream when the table sets none: pushes need no
/// polling, this only notices a transmitter that went away or paused the stream.
const DEFAULT_STATUS_INTERVAL: u64 = 30;
/// How old a SET may be by default: a polled SET may have waited at the transmitter while the
/// receiver was away, and refusing it loses its revocation for good.
const DEFAULT_MAX_AGE: u64 = 86_400;
/// The longest freshness window accepted: a week (replay protection remembers every `jti` that
/// long).
const MAX_AGE_LIMIT: u64 = 7 * 86_400;

/// A path a receiver answers on: absolute, of characters that need no encoding, without dot
/// segments or empty ones, so that it is compared exactly with a request's and no route or
/// upstream reads it otherwise.
pub fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && path
            .split('/')
            .all(|segment| segment.is_empty() || !segment.bytes().all(|b| b == b'.'))
}

/// What a path that is not plain is told.
pub const PLAIN_PATH: &str =
    "must be a plain absolute path (letters, digits, / - _ . ~; no dot segments)";

/// Every `[[shared_signals]]` table, checked, with errors naming `shared_signals[i].key` and never
/// a secret: a transmitter once; `token_issuers` (default: the transmitter itself) allowed by
/// `rules`; `delivery` and the push keys; each push path plain, free and its own; the secrets
/// read from the environment at once (a variable that is not set stops the program at start).
pub fn shared_signals(
    source: &Source,
    tables: &[Spanned<SharedSignalsTable>],
    rules: Rules<'_>,
) -> Result<Vec<SharedSignalsConfig>, ConfigError> {
    let mut checked: Vec<SharedSignalsConfig> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let key = |name: &str| format!("shared_signals[{i}].{name}");
        let config = receiver(source, table.get_ref(), rules, &key)?;
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
        if let Some(path) = config.push_path() {
            let spanned = file.push_path.as_ref().unwrap_or(&file.transmitter);
            if let Some(what) = (rules.path_taken)(path) {
                return Err(source.error(spanned, &key("push_path"), format_args!("is {what}")));
            }
            if let Some(j) = checked.iter().position(|c| c.push_path() == Some(path)) {
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
    file: &SharedSignalsTable,
    rules: Rules<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<SharedSignalsConfig, ConfigError> {
    let transmitter = http_url(source, &file.transmitter, &key("transmitter"))?;
    if file.audience.get_ref().trim().is_empty() {
        return Err(source.error(&file.audience, &key("audience"), "must not be empty"));
    }
    let credentials = credentials(source, file, key)?;
    let token_issuers = token_issuers(source, file, rules, key)?;
    let delivery = delivery(source, file, key)?;
    let default_interval = match delivery {
        SignalDelivery::Poll => DEFAULT_POLL_INTERVAL,
        SignalDelivery::Push { .. } => DEFAULT_STATUS_INTERVAL,
    };
    Ok(SharedSignalsConfig {
        transmitter,
        audience: file.audience.get_ref().clone(),
        credentials,
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
            MAX_AGE_LIMIT,
            DEFAULT_MAX_AGE,
        )?,
    })
}

/// Either `bearer_token_env`, or `token_url` + `client_id` + `client_secret_env` (+ `scope`):
/// exactly one of the two forms.
fn credentials(
    source: &Source,
    file: &SharedSignalsTable,
    key: &dyn Fn(&str) -> String,
) -> Result<Credentials, ConfigError> {
    let oauth_keys = [
        ("token_url", file.token_url.as_ref()),
        ("client_id", file.client_id.as_ref()),
        ("client_secret_env", file.client_secret_env.as_ref()),
        ("scope", file.scope.as_ref()),
        ("token_auth_method", file.token_auth_method.as_ref()),
        ("private_key_file", file.private_key_file.as_ref()),
        ("private_key_id", file.private_key_id.as_ref()),
        ("private_key_algorithm", file.private_key_algorithm.as_ref()),
    ];
    let first_oauth_key = oauth_keys.iter().find_map(|(n, v)| v.map(|v| (*n, v)));
    match (&file.bearer_token_env, first_oauth_key) {
        (Some(_), Some((name, value))) => Err(source.error(
            value,
            &key(name),
            "is for client credentials, and bearer_token_env is set too: use one of the two \
             forms",
        )),
        (Some(var), None) => Ok(Credentials::Bearer(secret_from_env(
            source,
            var,
            &key("bearer_token_env"),
            "Bearer ",
        )?)),
        (None, None) => Err(source.error(
            &file.transmitter,
            &key("bearer_token_env"),
            "is not set: the transmitter's API needs bearer_token_env, or token_url, client_id \
             and client_secret_env (OAuth 2.0 client credentials)",
        )),
        (None, Some(_)) => client_credentials(source, file, key),
    }
}

/// `token_url` and `client_id` required, `scope` optional; then `client_secret_env`, or with
/// `token_auth_method = "private_key_jwt"` the key instead.
fn client_credentials(
    source: &Source,
    file: &SharedSignalsTable,
    key: &dyn Fn(&str) -> String,
) -> Result<Credentials, ConfigError> {
    let required = |value, name, what| required_key(source, file, key, value, name, what);
    let token_url = required(
        file.token_url.as_ref(),
        "token_url",
        "the provider's OAuth 2.0 token endpoint",
    )?;
    let client_id = required(
        file.client_id.as_ref(),
        "client_id",
        "the OAuth client's id",
    )?;
    let scope = file
        .scope
        .as_ref()
        .map(|s| required(Some(s), "scope", "").map(|s| s.get_ref().clone()))
        .transpose()?;
    let method = file.token_auth_method.as_ref();
    let authentication = match method.map_or("client_secret_basic", |m| m.get_ref().as_str()) {
        name @ ("client_secret_basic" | "client_secret_post") => {
            let key_keys = [
                ("private_key_file", file.private_key_file.as_ref()),
                ("private_key_id", file.private_key_id.as_ref()),
                ("private_key_algorithm", file.private_key_algorithm.as_ref()),
            ];
            if let Some((extra, value)) = key_keys.iter().find_map(|(n, v)| v.map(|v| (*n, v))) {
                return Err(source.error(
                    value,
                    &key(extra),
                    format_args!("is for token_auth_method = \"private_key_jwt\", not {name}"),
                ));
            }
            let secret_env = required(
                file.client_secret_env.as_ref(),
                "client_secret_env",
                "the environment variable holding the client's secret",
            )?;
            let secret = secret_from_env(source, secret_env, &key("client_secret_env"), "")?.0;
            if name == "client_secret_basic" {
                ClientAuthentication::ClientSecretBasic(secret)
            } else {
                ClientAuthentication::ClientSecretPost(secret)
            }
        }
        "private_key_jwt" => {
            if let Some(env) = &file.client_secret_env {
                return Err(source.error(
                    env,
                    &key("client_secret_env"),
                    "is not used with token_auth_method = \"private_key_jwt\" (the client \
                     signs with private_key_file instead)",
                ));
            }
            ClientAuthentication::PrivateKeyJwt(std::sync::Arc::new(client_key(source, file, key)?))
        }
        _ => {
            return Err(source.error(
                method.unwrap_or(&file.transmitter),
                &key("token_auth_method"),
                "must be client_secret_basic, client_secret_post or private_key_jwt",
            ));
        }
    };
    Ok(Credentials::ClientCredentials {
        token_url: http_url(source, token_url, &key("token_url"))?,
        client_id: client_id.get_ref().clone(),
        authentication,
        scope,
    })
}

/// `private_key_file` (PKCS#8, DER or PEM, relative to the configuration file), under
/// `private_key_id` (the `kid` the provider knows the public key by), for
/// `private_key_algorithm` (`RS256` unless said: Okta's default; `ES256`, `EdDSA`).
fn client_key(
    source: &Source,
    file: &SharedSignalsTable,
    key: &dyn Fn(&str) -> String,
) -> Result<SigningKey, ConfigError> {
    let required = |value, name, what| required_key(source, file, key, value, name, what);
    let path = required(
        file.private_key_file.as_ref(),
        "private_key_file",
        "the client's private key (PKCS#8, PEM or DER) for private_key_jwt",
    )?;
    let kid = required(
        file.private_key_id.as_ref(),
        "private_key_id",
        "the key id (kid) the provider knows the client's public key by",
    )?;
    let algorithm = match &file.private_key_algorithm {
        None => SigningAlgorithm::RS256,
        Some(alg) => alg
            .get_ref()
            .parse::<SigningAlgorithm>()
            .ok()
            .filter(|a| !a.is_symmetric())
            .ok_or_else(|| {
                source.error(
                    alg,
                    &key("private_key_algorithm"),
                    "must be RS256, ES256 or EdDSA",
                )
            })?,
    };
    let resolved = source.resolve(std::path::Path::new(path.get_ref()));
    let bytes = std::fs::read(&resolved).map_err(|e| {
        source.error(
            path,
            &key("private_key_file"),
            format_args!("cannot read {}: {e}", resolved.display()),
        )
    })?;
    let der = crate::tls::pem::pkcs8_der(&bytes).ok_or_else(|| {
        source.error(
            path,
            &key("private_key_file"),
            format_args!(
                "{}: not a PKCS#8 private key (DER, or PEM `PRIVATE KEY`; `openssl pkcs8 \
                 -topk8 -nocrypt` converts others)",
                resolved.display()
            ),
        )
    })?;
    SigningKey::from_der(algorithm, kid.get_ref(), &der).map_err(|e| {
        source.error(
            path,
            &key("private_key_file"),
            format_args!("{}: {e}", resolved.display()),
        )
    })
}

/// A key the client credentials need, set and not empty.
fn required_key<'a>(
    source: &Source,
    file: &SharedSignalsTable,
    key: &dyn Fn(&str) -> String,
    value: Option<&'a Spanned<String>>,
    name: &str,
    what: &str,
) -> Result<&'a Spanned<String>, ConfigError> {
    let spanned = value.ok_or_else(|| {
        source.error(
            &file.transmitter,
            &key(name),
            format_args!("is not set: client credentials need {name}, {what}"),
        )
    })?;
    if spanned.get_ref().trim().is_empty() {
        return Err(source.error(spanned, &key(name), "must not be empty"));
    }
    Ok(spanned)
}

/// `token_issuers`, or the transmitter itself, each allowed by the program's rules.
fn token_issuers(
    source: &Source,
    file: &SharedSignalsTable,
    rules: Rules<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<String>, ConfigError> {
    let Some(listed) = &file.token_issuers else {
        let transmitter = file.transmitter.get_ref();
        if let Err(why) = (rules.token_issuer)(transmitter) {
            return Err(source.error(
                &file.transmitter,
                &key("token_issuers"),
                format_args!(
                    "not set, so it is the transmitter `{transmitter}`, which {why}: list the \
                     issuers whose tokens this transmitter may revoke"
                ),
            ));
        }
        return Ok(vec![transmitter.clone()]);
    };
    if listed.get_ref().is_empty() {
        return Err(source.error(
            listed,
            &key("token_issuers"),
            "name at least one issuer (without the key, the transmitter's own)",
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(listed.get_ref().len());
    for name in listed.get_ref() {
        let issuer = name.get_ref();
        if let Err(why) = (rules.token_issuer)(issuer) {
            return Err(source.error(
                name,
                &key("token_issuers"),
                format_args!("`{issuer}` {why}"),
            ));
        }
        if names.contains(issuer) {
            return Err(source.error(
                name,
                &key("token_issuers"),
                format_args!("`{issuer}` is listed twice"),
            ));
        }
        names.push(issuer.clone());
    }
    Ok(names)
}

/// `delivery` and the push keys, which only push delivery may set.
fn delivery(
    source: &Source,
    file: &SharedSignalsTable,
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
        Some("push") => push(source, file, key),
        Some(_) => {
            let spanned = file.delivery.as_ref().unwrap_or(&file.transmitter);
            Err(source.error(spanned, &key("delivery"), "must be \"poll\" or \"push\""))
        }
    }
}

/// Push delivery: `push_path` and `push_url` required, `push_authorization_env` read.
fn push(
    source: &Source,
    file: &SharedSignalsTable,
    key: &dyn Fn(&str) -> String,
) -> Result<SignalDelivery, ConfigError> {
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
            "where the program's listener receives the SETs",
        )
    })?;
    if !is_plain_path(path.get_ref()) {
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

/// An `http://` or `https://` URL with a host, as written (a transmitter's issuer identifier is
/// compared exactly; a push URL is given to the transmitter as is).
fn http_url(source: &Source, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let url = value.get_ref();
    let wrong = || source.error(value, key, "must be an http:// or https:// URL with a host");
    let uri: Uri = url.parse().map_err(|_| wrong())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(url.clone()),
        _ => Err(wrong()),
    }
}

/// The secret in the environment variable `var` names: set, not empty, and a valid header value
/// after `prefix` (it is sent in an `Authorization` header). Errors name the variable, never the
/// value.
fn secret_from_env(
    source: &Source,
    var: &Spanned<String>,
    key: &str,
    prefix: &str,
) -> Result<Secret, ConfigError> {
    let name = var.get_ref();
    let fail = |what: &str| {
        source.error(
            var,
            key,
            format_args!("environment variable `{name}` {what}"),
        )
    };
    let value = std::env::var(name).map_err(|_| fail("is not set"))?;
    if value.trim().is_empty() {
        return Err(fail("is empty"));
    }
    if HeaderValue::try_from(format!("{prefix}{value}")).is_err() {
        return Err(fail("holds characters a header cannot carry"));
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

/// The receivers a program built from its `[[shared_signals]]` tables: each with its
/// transmitter and, for push delivery, the path its SETs arrive at. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    receivers: Vec<Receiver>,
}

/// One transmitter's receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    transmitter: String,
    receiver: SsfReceiver,
    /// Push delivery: the path of the program's listener the SETs arrive at, and its service.
    push: Option<(String, SsfPush)>,
}

impl Receivers {
    /// The receivers of `configs`, each builder given where to publish by `publish` (the
    /// program's own choice: Redis, an index, a store). Nothing is sent before
    /// [`start`](Self::start).
    pub fn build(
        configs: &[SharedSignalsConfig],
        mut publish: impl FnMut(SsfReceiverBuilder) -> SsfReceiverBuilder,
    ) -> Result<Receivers, String> {
        let receivers = configs
            .iter()
            .map(|config| {
                let transmitter = config.transmitter().to_owned();
                let receiver = publish(config.receiver())
                    .build()
                    .map_err(|e| format!("shared signals {transmitter}: {e}"))?;
                let push = config
                    .push_path()
                    .map(|path| (path.to_owned(), receiver.push_service()));
                Ok(Receiver {
                    transmitter,
                    receiver,
                    push,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Receivers { receivers })
    }

    /// Starts every receiver's background task (stream set-up, verification, polling or status
    /// reads) on the current runtime; each stops when its handle is dropped.
    pub fn start(&self) -> Result<Vec<SsfTask>, String> {
        self.receivers
            .iter()
            .map(|r| {
                r.receiver
                    .start()
                    .map_err(|e| format!("shared signals {}: {e}", r.transmitter))
            })
            .collect()
    }

    /// The push endpoint that answers `path` (compared exactly), if one does.
    pub fn push_endpoint(&self, path: &str) -> Option<&SsfPush> {
        self.receivers
            .iter()
            .find_map(|r| r.push.as_ref().filter(|(p, _)| p == path).map(|(_, s)| s))
    }

    /// Each receiver with its transmitter, in the configuration's order (for the metrics).
    pub fn each(&self) -> Vec<(&str, &SsfReceiver)> {
        self.receivers
            .iter()
            .map(|r| (r.transmitter.as_str(), &r.receiver))
            .collect()
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// `Ok` when every receiver is ready; otherwise why the first that is not is not, naming its
    /// transmitter (what a `/readyz` says).
    pub fn check(&self) -> Result<(), String> {
        match self.receivers.iter().find(|r| !r.receiver.ready()) {
            Some(r) => Err(not_ready(&r.transmitter, &r.receiver.status())),
            None => Ok(()),
        }
    }
}

/// Why a receiver is not ready, as far as its status tells: the transmitter, then the stream's
/// state or the last failure to reach it.
fn not_ready(transmitter: &str, status: &SsfStatus) -> String {
    let failed_since_contact = status
        .last_error
        .as_ref()
        .filter(|(at, _)| status.last_contact.is_none_or(|contact| *at >= contact));
    let why = match (status.stream_state, failed_since_contact) {
        (StreamState::Paused, _) => "the transmitter paused the stream".to_owned(),
        (StreamState::Disabled, _) => "the transmitter disabled the stream".to_owned(),
        (_, Some((_, error))) => error.clone(),
        _ if status.stream_id.is_none() => "no stream set up yet".to_owned(),
        _ if !status.verified => "the stream is not verified yet".to_owned(),
        _ => "no answer from the transmitter lately".to_owned(),
    };
    format!("shared signals transmitter {transmitter} not ready: {why}")
}

#[cfg(test)]
mod tests {
    use super::{Rules, SharedSignalsTable, is_plain_path, shared_signals};
    use crate::config::{ConfigError, Source};
    use serde::Deserialize;
    use std::path::Path;
    use tollgate_core::{SigningAlgorithm, SigningKey};
    use toml::Spanned;

    /// Variables cargo sets for every test run, so that no test sets the environment.
    const SECRET_ENV: &str = "CARGO_PKG_NAME";
    const OTHER_ENV: &str = "CARGO_MANIFEST_DIR";
    const UNSET_ENV: &str = "TOLLGATE_TEST_SURELY_UNSET_VARIABLE";

    #[derive(Deserialize)]
    struct File {
        shared_signals: Vec<Spanned<SharedSignalsTable>>,
    }

    fn check(table: &str) -> Result<Vec<super::SharedSignalsConfig>, ConfigError> {
        let text = format!(
            "[[shared_signals]]\ntransmitter = \"https://ssf.example.test\"\n\
             audience = \"https://api.example.test\"\n{table}"
        );
        let source = Source::new(Path::new("test.toml"), text);
        let file: File = source.deserialize()?;
        let rules = Rules {
            token_issuer: &|_| Ok(()),
            path_taken: &|_| None,
        };
        shared_signals(&source, &file.shared_signals, rules)
    }

    fn secret(var: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| panic!("cargo sets {var} for the tests"))
    }

    #[test]
    fn the_client_authenticates_with_its_secret_or_with_its_key() {
        let base =
            "token_url = \"https://org.okta.example/oauth2/v1/token\"\nclient_id = \"0oa1\"\n";
        let post = format!(
            "{base}client_secret_env = \"{SECRET_ENV}\"\ntoken_auth_method = \"client_secret_post\"\n"
        );
        let shown = format!("{:?}", check(&post).unwrap_or_else(|e| panic!("{e}")));
        assert!(shown.contains("client_secret_post"), "{shown}");
        assert!(
            !shown.contains(&secret(SECRET_ENV)),
            "the secret in {shown}"
        );

        // A key as an identity provider hands it out (Okta: RSA, PKCS#8 PEM), and as DER.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("client.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (needed by this test) runs");
        assert!(status.success(), "openssl genpkey failed");
        let der = dir.path().join("client.der");
        let es256 = SigningKey::generate(SigningAlgorithm::ES256, "x").unwrap();
        std::fs::write(&der, es256.to_der()).unwrap();
        let jwt = |file: &Path, extra: &str| {
            format!(
                "{base}token_auth_method = \"private_key_jwt\"\nprivate_key_file = {:?}\n\
                 private_key_id = \"okta-key-1\"\n{extra}",
                file.display().to_string()
            )
        };
        let shown = format!(
            "{:?}",
            check(&jwt(&pem, "")).unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(
            shown.contains("okta-key-1") && shown.contains("RS256"),
            "{shown}"
        );
        let es = jwt(&der, "private_key_algorithm = \"ES256\"\n");
        let shown = format!("{:?}", check(&es).unwrap_or_else(|e| panic!("{e}")));
        assert!(shown.contains("ES256"), "{shown}");

        for (table, key, wanted) in [
            (
                format!("{base}token_auth_method = \"client_secret_jwt\"\n"),
                "token_auth_method",
                "must be client_secret_basic, client_secret_post or private_key_jwt",
            ),
            (
                format!("{base}client_secret_env = \"{SECRET_ENV}\"\nprivate_key_id = \"k\"\n"),
                "private_key_id",
                "is for token_auth_method = \"private_key_jwt\", not client_secret_basic",
            ),
            (
                jwt(&pem, &format!("client_secret_env = \"{SECRET_ENV}\"\n")),
                "client_secret_env",
                "is not used with token_auth_method = \"private_key_jwt\"",
            ),
            (
                jwt(&pem, "").replace("private_key_id = \"okta-key-1\"\n", ""),
                "private_key_id",
                "client credentials need private_key_id",
            ),
            (
                jwt(&dir.path().join("missing.pem"), ""),
                "private_key_file",
                "cannot read",
            ),
            (
                jwt(&pem, "private_key_algorithm = \"HS256\"\n"),
                "private_key_algorithm",
                "must be RS256, ES256 or EdDSA",
            ),
            (
                // An RSA key read as an EC one.
                jwt(&pem, "private_key_algorithm = \"ES256\"\n"),
                "private_key_file",
                "client.pem",
            ),
        ] {
            let error = check(&table).map(|_| ()).unwrap_err().to_string();
            assert!(!error.contains('\n'), "{error}");
            assert!(
                error.contains(&format!("shared_signals[0].{key}")),
                "{key}: {error}"
            );
            assert!(error.contains(wanted), "{table}\n=> {error}");
            assert!(!error.contains(&secret(SECRET_ENV)), "a secret in {error}");
        }
    }

    #[test]
    fn client_credentials_are_the_other_form_of_credentials_and_exactly_one_is_set() {
        let oauth = format!(
            "token_url = \"https://org.okta.example/oauth2/v1/token\"\nclient_id = \"0oa1\"\n\
             client_secret_env = \"{SECRET_ENV}\"\nscope = \"ssf.read ssf.manage\"\n"
        );
        let configs = check(&oauth).unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{:?} {:?}", configs, configs[0].receiver());
        for part in [
            "https://org.okta.example/oauth2/v1/token",
            "0oa1",
            "ssf.read ssf.manage",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(
            !shown.contains(&secret(SECRET_ENV)),
            "the secret in {shown}"
        );
        assert!(check(&oauth.replace("scope = \"ssf.read ssf.manage\"\n", "")).is_ok());
        let bearer = format!("bearer_token_env = \"{OTHER_ENV}\"\n");
        for (table, key, wanted) in [
            (
                format!("{bearer}{oauth}"),
                "token_url",
                "bearer_token_env is set too",
            ),
            (String::new(), "bearer_token_env", "is not set"),
            (
                oauth.replace("client_id = \"0oa1\"\n", ""),
                "client_id",
                "client credentials need client_id",
            ),
            (
                oauth.replace(
                    "token_url = \"https://org.okta.example/oauth2/v1/token\"\n",
                    "",
                ),
                "token_url",
                "client credentials need token_url",
            ),
            (
                oauth.replace(&format!("client_secret_env = \"{SECRET_ENV}\"\n"), ""),
                "client_secret_env",
                "client credentials need client_secret_env",
            ),
            (
                oauth.replace(SECRET_ENV, UNSET_ENV),
                "client_secret_env",
                "environment variable `TOLLGATE_TEST_SURELY_UNSET_VARIABLE` is not set",
            ),
            (
                oauth.replace("https://org.okta.example", "org.okta.example"),
                "token_url",
                "http:// or https:// URL",
            ),
            (
                oauth.replace("ssf.read ssf.manage", " "),
                "scope",
                "must not be empty",
            ),
        ] {
            let error = check(&table).map(|_| ()).unwrap_err().to_string();
            assert!(!error.contains('\n'), "{error}");
            assert!(
                error.contains(&format!("shared_signals[0].{key}")),
                "{key}: {error}"
            );
            assert!(error.contains(wanted), "{table}\n=> {error}");
            for var in [SECRET_ENV, OTHER_ENV] {
                assert!(!error.contains(&secret(var)), "a secret in {error}");
            }
        }
    }

    #[test]
    fn a_plain_path_has_no_dot_or_empty_segment_and_nothing_to_decode() {
        for path in ["/ssf", "/ssf/events", "/a.b/c-d_e~f", "/ssf/"] {
            assert!(is_plain_path(path), "{path}");
        }
        for path in [
            "ssf", "", "/a/../b", "/a/./b", "/..", "/a//b", "/a%2fb", "/a;b", "/é", "/a b",
        ] {
            assert!(!is_plain_path(path), "{path}");
        }
    }
}
