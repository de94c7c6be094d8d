//! Token revocation: `POST /connect/revocation` (RFC 7009) and the Revoke Auth Token API
//! (`POST /api/id/v1/auth/token/revoke`), which share semantics and differ in error shape.

use crate::client_auth;
use crate::directory::Client;
use crate::form::Form;
use crate::issuer::Shared;
use crate::response::{ErrorCode, Failure};
use crate::token_endpoint::hash_refresh_token;
use tollgate_core::RevocationEvent;

/// Which kind of token the caller says it is revoking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    AccessToken,
    RefreshToken,
    None,
}

impl Hint {
    /// RFC 7009: an unknown hint is ignored.
    pub(crate) fn lenient(value: Option<&str>) -> Hint {
        match value {
            Some("refresh_token") => Hint::RefreshToken,
            Some("access_token") => Hint::AccessToken,
            _ => Hint::None,
        }
    }
}

/// `/connect/revocation`: authenticate, find the token, revoke it.
pub(crate) async fn connect_revocation(
    shared: &Shared,
    headers: &http::HeaderMap,
    form: &Form,
) -> Result<(), Failure> {
    let (client, token) = client_and_token(shared, headers, form).await?;
    revoke(
        shared,
        &client,
        token,
        Hint::lenient(form.get("token_type_hint")),
    )
    .await
}

/// `/api/id/v1/auth/token/revoke`: `token_type_hint` (alias `token_type`) must be
/// `access_token` or `refresh_token` when given.
pub(crate) async fn api_revoke(
    shared: &Shared,
    headers: &http::HeaderMap,
    form: &Form,
) -> Result<(), Failure> {
    let (client, token) = client_and_token(shared, headers, form).await?;
    let hint = match (form.get("token_type_hint"), form.get("token_type")) {
        (Some(_), Some(_)) => {
            return Err(Failure::invalid_request(
                "send token_type_hint or token_type, not both",
            ));
        }
        (Some(v), None) | (None, Some(v)) => match v {
            "access_token" => Hint::AccessToken,
            "refresh_token" => Hint::RefreshToken,
            _ => {
                return Err(Failure::invalid_request(
                    "token_type_hint must be access_token or refresh_token",
                ));
            }
        },
        (None, None) => Hint::None,
    };
    revoke(shared, &client, token, hint).await
}

/// The authenticated client and the `token` parameter both endpoints require.
async fn client_and_token<'f>(
    shared: &Shared,
    headers: &http::HeaderMap,
    form: &'f Form,
) -> Result<(std::sync::Arc<Client>, &'f str), Failure> {
    let client = client_auth::authenticate(shared, headers, form).await?;
    let token = form
        .get("token")
        .ok_or(Failure::invalid_request("token is required"))?;
    Ok((client, token))
}

/// Revokes `token` for `client`. Unknown, expired, already revoked or foreign tokens are a
/// successful no-op (RFC 7009 §2.2); another client's token is refused and left alone (§2.1).
async fn revoke(shared: &Shared, client: &Client, token: &str, hint: Hint) -> Result<(), Failure> {
    let _gate = shared.revocation_gate.read().await;
    // A wrong hint only extends the search.
    let event = match hint {
        Hint::RefreshToken => match refresh_event(shared, client, token)? {
            Some(event) => Some(event),
            None => access_event(shared, client, token)?,
        },
        Hint::AccessToken | Hint::None => match access_event(shared, client, token)? {
            Some(event) => Some(event),
            None => refresh_event(shared, client, token)?,
        },
    };
    match event {
        Some(event) => shared.revoke(event).await,
        None => Ok(()),
    }
}

fn other_client() -> Failure {
    Failure::bad_request(
        ErrorCode::UnauthorizedClient,
        "the token was not issued to this client",
    )
}

/// The event revoking `token` if it is a live access token of this issuer; `Err` if it belongs to
/// another client.
fn access_event(
    shared: &Shared,
    client: &Client,
    token: &str,
) -> Result<Option<RevocationEvent>, Failure> {
    if token.split('.').count() != 3 {
        return Ok(None);
    }
    // Expired, revoked, cut-off, foreign or forged tokens fail verification: nothing to revoke.
    let Ok(claims) = shared.verifier.verify(token) else {
        return Ok(None);
    };
    if claims.client_id != client.id {
        return Err(other_client());
    }
    Ok(Some(RevocationEvent::revoke_token(&claims)))
}

/// The event revoking the grant of `token` if it is a live refresh token.
fn refresh_event(
    shared: &Shared,
    client: &Client,
    token: &str,
) -> Result<Option<RevocationEvent>, Failure> {
    let Some(record) = shared.live.refresh(&hash_refresh_token(token)) else {
        return Ok(None);
    };
    let now = shared.clock.now();
    if record.expires_at <= now || shared.index.is_grant_revoked(&record.grant_id) {
        return Ok(None);
    }
    if record.client_id != client.id {
        return Err(other_client());
    }
    // The whole family goes: the refresh token and every access token minted from its grant.
    Ok(Some(RevocationEvent::Grant {
        grant_id: record.grant_id,
        expires_at: shared.grant_expiry(now),
    }))
}
