//! `POST /connect/token`: the `password`, `client_credentials` and `refresh_token` grants.

use crate::auth::{PeerAddr, SignInError};
use crate::directory::{Client, GrantType, User};
use crate::issuer::Issuer;
use crate::ledger::{AccessSpec, Issued, RedeemError};
use crate::outcome::TokenIssued;
use crate::protocol::MAX_IDENTIFIER_LEN;
use crate::protocol::form::Form;
use crate::protocol::response::{self, ErrorCode, Failure, ResponseBody};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;
use tollgate_core::TenantPath;

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// What every grant is asked for: by whom, in which form, for how long, bound to which client
/// certificate (`x5t#S256`, RFC 8705 §3).
#[derive(Clone, Copy)]
struct Asked<'a> {
    client: &'a Client,
    form: &'a Form,
    lifetime: Duration,
    certificate: Option<&'a str>,
}

/// Handles a token request whose form has been parsed.
pub(crate) async fn handle(
    issuer: &Issuer,
    request: &Parts,
    form: &Form,
) -> Result<Response<ResponseBody>, Failure> {
    let client = issuer.clients.authenticate(request, form).await?;
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
    let lifetime = lifetime(issuer, &client, form.get("access-token-lifetime"))?;
    let certificate = crate::auth::binding(&client, request)?;
    let asked = Asked {
        client: &client,
        form,
        lifetime,
        certificate: certificate.as_deref(),
    };
    let mut response = match grant {
        GrantType::ClientCredentials => client_credentials(issuer, asked).await,
        GrantType::Password => {
            let peer = request.extensions.get::<PeerAddr>().map(|p| p.0);
            password(issuer, asked, peer).await
        }
        GrantType::RefreshToken => refresh(issuer, asked).await,
    }?;
    response.extensions_mut().insert(TokenIssued::new(grant));
    Ok(response)
}

/// `access-token-lifetime`, clamped to the client's maximum; the default when absent.
fn lifetime(issuer: &Issuer, client: &Client, asked: Option<&str>) -> Result<Duration, Failure> {
    let lifetimes = issuer.ledger.lifetimes();
    let max = client
        .max_access_token_lifetime
        .unwrap_or(lifetimes.access_max)
        .min(lifetimes.access_max);
    let Some(asked) = asked else {
        return Ok(lifetimes.access_default.min(max));
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

/// `tenant_path` as sent, if it was; `invalid_request` when it is malformed or names a tenant
/// that was not declared.
///
/// An undeclared tenant is refused like a malformed one (`invalid_request`, RFC 6749 §5.2: "an
/// unsupported parameter value"), not as `invalid_grant`: it is wrong whoever asks and whatever
/// their credentials, so it is answered before any password is verified and reveals nothing
/// about a user.
fn asked_tenant(issuer: &Issuer, form: &Form) -> Result<Option<TenantPath>, Failure> {
    let Some(path) = form.get("tenant_path") else {
        return Ok(None);
    };
    let tenant =
        TenantPath::parse(path).map_err(|_| Failure::invalid_request("malformed tenant_path"))?;
    if !issuer.tenants.exists(&tenant) {
        return Err(Failure::invalid_request(
            "tenant_path names a tenant that does not exist",
        ));
    }
    Ok(Some(tenant))
}

/// The tenant a request without `tenant_path` acts in: the only one configured, else the root.
fn only_tenant_or_root(tenants: &[TenantPath]) -> TenantPath {
    match tenants {
        [only] => only.clone(),
        _ => TenantPath::root(),
    }
}

/// The granted scope: every allowed scope when none is asked for; `invalid_scope` when any asked
/// scope is not allowed. Returned in the allowed list's order, each scope once.
fn scope<'a>(
    asked: Option<&str>,
    allowed: impl Iterator<Item = &'a str>,
) -> Result<String, Failure> {
    let mut granted: Vec<&str> = Vec::new();
    for scope in allowed {
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    let asked: Vec<&str> = asked
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    // Absent, empty or separators only: every allowed scope.
    if !asked.is_empty() {
        if let Some(bad) = asked.iter().find(|s| !granted.contains(s)) {
            tracing::debug!(scope = %bad, "scope not allowed");
            return Err(Failure::bad_request(
                ErrorCode::InvalidScope,
                "a requested scope is not allowed",
            ));
        }
        granted.retain(|s| asked.contains(s));
    }
    Ok(granted.join(" "))
}

fn token_response(issued: &Issued, lifetime: Duration, scope: &str) -> Response<ResponseBody> {
    response::json(
        StatusCode::OK,
        &TokenResponse {
            access_token: &issued.access_token,
            token_type: "Bearer",
            expires_in: lifetime.as_secs(),
            scope,
            refresh_token: issued.refresh_token.as_deref(),
        },
    )
}

async fn client_credentials(
    issuer: &Issuer,
    asked: Asked<'_>,
) -> Result<Response<ResponseBody>, Failure> {
    let Asked {
        client,
        form,
        lifetime,
        certificate,
    } = asked;
    let tenant =
        asked_tenant(issuer, form)?.unwrap_or_else(|| only_tenant_or_root(&client.tenants));
    if !client.tenants.iter().any(|t| t.covers(tenant.as_str())) {
        return Err(Failure::bad_request(
            ErrorCode::UnauthorizedClient,
            "the client may not act in this tenant",
        ));
    }
    let scope = scope(form.get("scope"), client.scopes.iter().map(String::as_str))?;
    let spec = AccessSpec {
        client_id: &client.id,
        audience: &client.audience,
        subject: &client.id,
        tenant: &tenant,
        scope: scope.clone(),
        roles: client.roles.clone(),
        lifetime,
        certificate,
    };
    // RFC 6749 §4.4.3: no refresh token for client credentials.
    let issued = issuer.ledger.issue(spec, None).await?;
    Ok(token_response(&issued, lifetime, &scope))
}

fn invalid_credentials() -> Failure {
    Failure::bad_request(ErrorCode::InvalidGrant, "invalid username or password")
}

async fn password(
    issuer: &Issuer,
    asked: Asked<'_>,
    peer: Option<IpAddr>,
) -> Result<Response<ResponseBody>, Failure> {
    let Asked {
        client,
        form,
        lifetime,
        certificate,
    } = asked;
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return Err(Failure::invalid_request(
            "username and password are required",
        ));
    };
    if username.len() > MAX_IDENTIFIER_LEN {
        return Err(Failure::invalid_request("username is too long"));
    }
    let asked = asked_tenant(issuer, form)?;
    let user = match issuer.users.verify(username, password, peer).await {
        Ok(user) => user,
        Err(SignInError::Invalid) => return Err(invalid_credentials()),
        Err(SignInError::Throttled(wait)) => {
            return Err(Failure {
                retry_after: Some(wait),
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::InvalidGrant,
                    "too many failed sign-in attempts; retry later",
                )
            });
        }
        Err(SignInError::Unavailable(e)) => {
            tracing::error!(error = %e, "user directory lookup failed");
            return Err(Failure::unavailable());
        }
    };
    // The password is proven: saying what else is wrong reveals nothing to a guesser.
    let tenant = user_tenant(&user, asked)?;
    let allowed = client.scopes.iter().map(String::as_str).filter(|s| {
        user.scopes
            .as_ref()
            .is_none_or(|mine| mine.iter().any(|m| m == s))
    });
    let scope = scope(form.get("scope"), allowed)?;
    let spec = AccessSpec {
        client_id: &client.id,
        audience: &client.audience,
        subject: &user.subject,
        tenant: &tenant,
        scope: scope.clone(),
        roles: user.roles.clone(),
        lifetime,
        certificate,
    };
    let refresh_scope = client
        .allows(GrantType::RefreshToken)
        .then(|| scope.clone());
    let issued = issuer.ledger.issue(spec, refresh_scope).await?;
    Ok(token_response(&issued, lifetime, &scope))
}

/// The tenant a signed-in user acts in: `tenant_path` if the user belongs to it; without it, the
/// user's only tenant.
fn user_tenant(user: &User, asked: Option<TenantPath>) -> Result<TenantPath, Failure> {
    match (asked, user.tenants.as_slice()) {
        (Some(tenant), _) if user.in_tenant(&tenant) => Ok(tenant),
        (Some(_), _) => Err(Failure::bad_request(
            ErrorCode::InvalidGrant,
            "the user is not a member of tenant_path",
        )),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(Failure::invalid_request(
            "the user belongs to several tenants: name one with tenant_path",
        )),
    }
}

async fn refresh(issuer: &Issuer, asked: Asked<'_>) -> Result<Response<ResponseBody>, Failure> {
    let Asked {
        client,
        form,
        lifetime,
        certificate,
    } = asked;
    let token = form
        .get("refresh_token")
        .ok_or(Failure::invalid_request("refresh_token is required"))?;
    let invalid = || Failure::bad_request(ErrorCode::InvalidGrant, "invalid refresh token");
    let redemption = issuer
        .ledger
        .redeem(&client.id, token)
        .await
        .map_err(|e| match e {
            RedeemError::Invalid => invalid(),
            RedeemError::Ledger(e) => e.into(),
        })?;
    let record = redemption.record().clone();
    let user = issuer.users.user(&record.subject).await.map_err(|e| {
        tracing::error!(error = %e, "user directory lookup failed");
        Failure::unavailable()
    })?;
    let tenant = TenantPath::parse(&record.tenant).map_err(|_| invalid())?;
    let Some(user) = user.filter(|u| u.enabled && u.in_tenant(&tenant)) else {
        return Err(invalid());
    };
    // Scope may narrow, never widen (RFC 6749 §6).
    let scope = scope(
        form.get("scope"),
        record.scope.split(' ').filter(|s| !s.is_empty()),
    )?;
    let spec = AccessSpec {
        client_id: &client.id,
        audience: &client.audience,
        subject: &record.subject,
        tenant: &tenant,
        scope: scope.clone(),
        roles: user.roles.clone(),
        lifetime,
        certificate,
    };
    let issued = redemption.complete(spec).await?;
    Ok(token_response(&issued, lifetime, &scope))
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
            scope(Some("read read"), ["read", "write", "read"].into_iter()).unwrap(),
            "read",
            "each scope once, however often asked or configured"
        );
        assert_eq!(
            scope(None, ["read", "write", "read"].into_iter()).unwrap(),
            "read write"
        );
        assert_eq!(
            scope(Some("read delete"), allowed.iter().copied())
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
    }
}
