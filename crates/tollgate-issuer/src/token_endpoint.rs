//! `POST /connect/token`: the `password`, `client_credentials` and `refresh_token` grants.

use crate::client_auth;
use crate::directory::{Client, GrantType};
use crate::form::Form;
use crate::issuer::{Shared, TokenSpec};
use crate::live::{RotateError, refresh_identity};
use crate::response::{self, ErrorCode, Failure, ResponseBody};
use crate::store::{Record, RefreshTokenRecord, TokenHash};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;
use std::time::Duration;
use tollgate_core::{RevocationEvent, TenantPath};

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// Handles a token request whose form has been parsed.
pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response<ResponseBody>, Failure> {
    let client = client_auth::authenticate(shared, headers, form).await?;
    let grant_type = form
        .get("grant_type")
        .ok_or(Failure::invalid_request("grant_type is required"))?;
    let grant = GrantType::parse(grant_type).ok_or(Failure::bad_request(
        ErrorCode::UnsupportedGrantType,
        "unsupported grant_type",
    ))?;
    if !client.allows(grant) {
        return Err(Failure::bad_request(
            ErrorCode::UnauthorizedClient,
            "the client may not use this grant type",
        ));
    }
    let lifetime = lifetime(shared, &client, form.get("access-token-lifetime"))?;
    match grant {
        GrantType::ClientCredentials => client_credentials(shared, &client, form, lifetime).await,
        GrantType::Password => password(shared, &client, form, lifetime).await,
        GrantType::RefreshToken => refresh(shared, &client, form, lifetime).await,
    }
}

/// `access-token-lifetime`, clamped to the client's maximum; the default when absent.
fn lifetime(shared: &Shared, client: &Client, asked: Option<&str>) -> Result<Duration, Failure> {
    let max = client
        .max_access_token_lifetime
        .unwrap_or(shared.lifetimes.access_max)
        .min(shared.lifetimes.access_max);
    let Some(asked) = asked else {
        return Ok(shared.lifetimes.access_default.min(max));
    };
    // Digits only: `+5`, ` 5`, `5.0` and `0` are not positive integers in the sense of this API.
    // A positive integer too large for u64 is still one: it is clamped like any other.
    let seconds = (!asked.is_empty() && asked.bytes().all(|b| b.is_ascii_digit()))
        .then(|| asked.parse::<u64>().unwrap_or(u64::MAX))
        .filter(|s| *s > 0)
        .ok_or(Failure::invalid_request(
            "access-token-lifetime must be a positive integer (seconds)",
        ))?;
    Ok(Duration::from_secs(seconds).min(max))
}

/// `tenant_path`, `/` when absent.
fn tenant(form: &Form) -> Result<TenantPath, Failure> {
    match form.get("tenant_path") {
        None => Ok(TenantPath::root()),
        Some(path) => {
            TenantPath::parse(path).map_err(|_| Failure::invalid_request("malformed tenant_path"))
        }
    }
}

/// The granted scope: every allowed scope when none is asked for; `invalid_scope` when any asked
/// scope is not allowed. Returned in the allowed list's order, without repeats.
fn scope<'a>(
    asked: Option<&str>,
    allowed: impl Iterator<Item = &'a str> + Clone,
) -> Result<String, Failure> {
    let Some(asked) = asked else {
        return Ok(allowed.collect::<Vec<_>>().join(" "));
    };
    let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
    // Separators only name no scope: as if `scope` were empty, hence absent.
    if asked.is_empty() {
        return Ok(allowed.collect::<Vec<_>>().join(" "));
    }
    if let Some(bad) = asked.iter().find(|s| !allowed.clone().any(|a| a == **s)) {
        tracing::debug!(scope = %bad, "scope not allowed");
        return Err(Failure::bad_request(
            ErrorCode::InvalidScope,
            "a requested scope is not allowed",
        ));
    }
    Ok(allowed
        .filter(|a| asked.contains(a))
        .collect::<Vec<_>>()
        .join(" "))
}

fn token_response(
    access_token: &str,
    lifetime: Duration,
    scope: &str,
    refresh_token: Option<&str>,
) -> Response<ResponseBody> {
    response::json(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime.as_secs(),
            scope,
            refresh_token,
        },
    )
}

async fn client_credentials(
    shared: &Shared,
    client: &Client,
    form: &Form,
    lifetime: Duration,
) -> Result<Response<ResponseBody>, Failure> {
    let tenant = tenant(form)?;
    if !client.tenants.iter().any(|t| t.covers(tenant.as_str())) {
        return Err(Failure::bad_request(
            ErrorCode::UnauthorizedClient,
            "the client may not act in this tenant",
        ));
    }
    let scope = scope(form.get("scope"), client.scopes.iter().map(String::as_str))?;
    let (token, record) = shared
        .mint(TokenSpec {
            client,
            subject: &client.id,
            tenant: &tenant,
            scope: scope.clone(),
            roles: client.roles.clone(),
            grant_id: None,
            lifetime,
        })
        .await?;
    // Not waited for: losing this record in a crash would only make a later batch count miss
    // the token, never let a revoked token through (cutoffs are judged by issue instant).
    let jti = record.jti.clone();
    if let Err(e) = shared.store.write_behind(vec![Record::AccessToken(record)]) {
        tracing::error!(error = %e, "cannot record an issued token");
        shared.live.remove_access(&jti);
        return Err(Failure::unavailable());
    }
    // RFC 6749 §4.4.3: no refresh token for client credentials.
    Ok(token_response(&token, lifetime, &scope, None))
}

fn invalid_credentials() -> Failure {
    Failure::bad_request(ErrorCode::InvalidGrant, "invalid username or password")
}

async fn password(
    shared: &Shared,
    client: &Client,
    form: &Form,
    lifetime: Duration,
) -> Result<Response<ResponseBody>, Failure> {
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return Err(Failure::invalid_request(
            "username and password are required",
        ));
    };
    let tenant = tenant(form)?;
    let now = shared.clock.now();
    let attempt = match shared.throttle.begin(username, now) {
        Ok(attempt) => attempt,
        Err(wait) => {
            return Err(Failure {
                retry_after: Some(wait.as_secs().max(1)),
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::InvalidGrant,
                    "too many failed sign-in attempts; retry later",
                )
            });
        }
    };
    let user = shared.users.by_username(username).await.map_err(|e| {
        tracing::error!(error = %e, "user directory lookup failed");
        Failure::unavailable()
    })?;
    // The hash is verified whatever else is wrong, so that every failure takes as long.
    let matched = shared
        .hasher
        .verify_password(user.as_ref().map(|u| &u.password), password)
        .await;
    let user = match user {
        Some(user) if matched && user.enabled && user.in_tenant(&tenant) => user,
        _ => {
            attempt.failed(shared.clock.now());
            return Err(invalid_credentials());
        }
    };
    attempt.succeeded();
    // Like a refresh: a batch revocation must not count while this grant's tokens are half-made.
    let _gate = shared.revocation_gate.read().await;
    let allowed = client.scopes.iter().map(String::as_str).filter(|s| {
        user.scopes
            .as_ref()
            .is_none_or(|mine| mine.iter().any(|m| m == s))
    });
    let scope = scope(form.get("scope"), allowed)?;
    issue_with_refresh(
        shared,
        client,
        &user.subject,
        &tenant,
        scope.clone(),
        &scope,
        user.roles.clone(),
        None,
        lifetime,
    )
    .await
}

/// Issues an access token, and a refresh token when the client may refresh, committing both
/// durably before answering. `grant_id` continues a family on rotation.
#[allow(clippy::too_many_arguments)]
async fn issue_with_refresh(
    shared: &Shared,
    client: &Client,
    subject: &str,
    tenant: &TenantPath,
    refresh_scope: String,
    access_scope: &str,
    roles: Vec<String>,
    rotated: Option<(TokenHash, String)>,
    lifetime: Duration,
) -> Result<Response<ResponseBody>, Failure> {
    let refresh_allowed = client.allows(GrantType::RefreshToken);
    let grant_id = match &rotated {
        Some((_, grant)) => Some(grant.clone()),
        None => refresh_allowed.then(new_opaque_id),
    };
    let (access_token, access_record) = shared
        .mint(TokenSpec {
            client,
            subject,
            tenant,
            scope: access_scope.to_owned(),
            roles,
            grant_id: grant_id.clone(),
            lifetime,
        })
        .await?;
    let jti = access_record.jti.clone();
    let mut records = vec![Record::AccessToken(access_record)];
    let mut refresh = None;
    if let (true, Some(grant_id)) = (refresh_allowed, grant_id) {
        let token = new_refresh_token();
        let now = shared.clock.now();
        let record = RefreshTokenRecord {
            hash: hash_refresh_token(&token),
            grant_id,
            client_id: client.id.clone(),
            subject: subject.to_owned(),
            tenant: tenant.as_str().to_owned(),
            scope: refresh_scope,
            issued_at: now,
            expires_at: now.saturating_add(shared.lifetimes.refresh),
            rotated: false,
        };
        records.push(Record::RefreshToken(record.clone()));
        refresh = Some((token, record));
    }
    if let Some((old, _)) = &rotated {
        records.push(Record::RefreshRotated(*old));
    }
    if let Err(failure) = shared.commit(records).await {
        // Never handed out: it must not count in a batch revocation.
        shared.live.remove_access(&jti);
        return Err(failure);
    }
    let refresh_token = refresh.map(|(token, record)| {
        shared.live.insert_refresh(record);
        token
    });
    Ok(token_response(
        &access_token,
        lifetime,
        access_scope,
        refresh_token.as_deref(),
    ))
}

async fn refresh(
    shared: &Shared,
    client: &Client,
    form: &Form,
    lifetime: Duration,
) -> Result<Response<ResponseBody>, Failure> {
    let token = form
        .get("refresh_token")
        .ok_or(Failure::invalid_request("refresh_token is required"))?;
    let invalid = || Failure::bad_request(ErrorCode::InvalidGrant, "invalid refresh token");
    let hash = hash_refresh_token(token);
    let now = shared.clock.now();
    let _gate = shared.revocation_gate.read().await;
    let known = shared.live.refresh(&hash).ok_or_else(invalid)?;
    if known.client_id != client.id || known.expires_at <= now {
        return Err(invalid());
    }
    if shared.index.check(&refresh_identity(&known)).is_err() {
        return Err(invalid());
    }
    let record = match shared.live.rotate(&hash) {
        Ok(record) => record,
        Err(RotateError::Unknown) => return Err(invalid()),
        Err(RotateError::Reused(record)) => {
            // RFC 9700 §4.14.2: a rotated token presented again means one of its holders is not
            // the client; revoke the whole family.
            tracing::warn!(client_id = %client.id, grant_id = %record.grant_id, "refresh token reuse; revoking its grant");
            shared
                .revoke(RevocationEvent::Grant {
                    grant_id: record.grant_id.clone(),
                    expires_at: shared.grant_expiry(now),
                })
                .await?;
            return Err(invalid());
        }
    };
    let outcome = refresh_rotated(shared, client, form, lifetime, hash, record).await;
    if outcome.is_err() {
        shared.live.unrotate(&hash);
    }
    outcome
}

async fn refresh_rotated(
    shared: &Shared,
    client: &Client,
    form: &Form,
    lifetime: Duration,
    hash: TokenHash,
    record: RefreshTokenRecord,
) -> Result<Response<ResponseBody>, Failure> {
    let invalid = || Failure::bad_request(ErrorCode::InvalidGrant, "invalid refresh token");
    let user = shared
        .users
        .by_subject(&record.subject)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "user directory lookup failed");
            Failure::unavailable()
        })?;
    let tenant = TenantPath::parse(&record.tenant).map_err(|_| invalid())?;
    let Some(user) = user.filter(|u| u.enabled && u.in_tenant(&tenant)) else {
        return Err(invalid());
    };
    // Scope may narrow, never widen (RFC 6749 §6).
    let access_scope = scope(
        form.get("scope"),
        record.scope.split(' ').filter(|s| !s.is_empty()),
    )?;
    issue_with_refresh(
        shared,
        client,
        &record.subject,
        &tenant,
        record.scope.clone(),
        &access_scope,
        user.roles.clone(),
        Some((hash, record.grant_id)),
        lifetime,
    )
    .await
}

/// 128 random bits, base64url.
pub(crate) fn new_opaque_id() -> String {
    random_b64::<16>()
}

/// A refresh token: 256 random bits, base64url (43 characters).
fn new_refresh_token() -> String {
    random_b64::<32>()
}

fn random_b64<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // Failure of the system RNG is not recoverable (aws-lc aborts on it internally).
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a refresh token: tokens carry 256 random bits, so a fast digest is a safe lookup
/// key and the store never holds a usable token.
pub(crate) fn hash_refresh_token(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_to_all_allowed_and_refuses_unknown() {
        let allowed = ["read", "write", "admin"];
        assert_eq!(
            scope(None, allowed.iter().copied()).unwrap(),
            "read write admin"
        );
        assert_eq!(
            scope(Some("write  read"), allowed.iter().copied()).unwrap(),
            "read write"
        );
        assert_eq!(
            scope(Some("read delete"), allowed.iter().copied())
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn refresh_tokens_are_256_bit_and_hashed() {
        let token = new_refresh_token();
        assert_eq!(token.len(), 43);
        assert_ne!(token, new_refresh_token());
        assert_eq!(hash_refresh_token(&token), hash_refresh_token(&token));
    }
}
