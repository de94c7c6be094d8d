//! `[back_channel_logout]` and `[[shared_signals]]`, checked: where the gateway receives identity
//! providers' logouts and security events, and which configured issuers' tokens they may revoke.

use super::IssuerConfig;
use super::file::BackChannelLogoutFile;
use std::time::Duration;
use tollgate_program::config::{ConfigError, Source};
use tollgate_program::signals::{
    self, PLAIN_PATH, Rules, SharedSignalsConfig, SharedSignalsTable, is_plain_path,
};
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

pub(super) fn back_channel_logout(
    source: &Source,
    file: &BackChannelLogoutFile,
    issuers: &[IssuerConfig],
    forward_auth_path: Option<&str>,
) -> Result<BackChannelLogoutConfig, ConfigError> {
    let path = file.path.get_ref();
    if !is_plain_path(path) {
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

/// `[[shared_signals]]`, checked as both programs check it, with the gateway's rules: a
/// transmitter may revoke the tokens of configured issuers only (a cutoff of tokens the gateway
/// does not accept protects nothing, and a name that is none is most likely a typo, or a
/// transmitter whose issuer differs from its tokens', as Okta's does); a push path must not be
/// one the listener already answers before any route (`taken`: what it is, and the path).
pub(super) fn shared_signals(
    source: &Source,
    tables: &[Spanned<SharedSignalsTable>],
    issuers: &[IssuerConfig],
    taken: &[(&str, &str)],
) -> Result<Vec<SharedSignalsConfig>, ConfigError> {
    let token_issuer = |name: &str| {
        if issuers.iter().any(|c| c.issuer == name) {
            Ok(())
        } else {
            Err(
                "is not a configured issuer (a transmitter may only revoke tokens the gateway \
                 accepts)"
                    .to_owned(),
            )
        }
    };
    let path_taken = |path: &str| {
        taken
            .iter()
            .find(|(_, p)| *p == path)
            .map(|(what, _)| (*what).to_owned())
    };
    signals::shared_signals(
        source,
        tables,
        Rules {
            token_issuer: &token_issuer,
            path_taken: &path_taken,
        },
    )
}
