//! `POST /connect/introspect` (RFC 7662): whether a token is active, and what it is, for the
//! client it was issued to or a client allowed to introspect any token.

use crate::client_auth;
use crate::form::Form;
use crate::issuer::Shared;
use crate::live::refresh_identity;
use crate::response::{self, Failure, ResponseBody};
use crate::token_endpoint::hash_refresh_token;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

/// Handles an introspection request whose form has been parsed.
pub(crate) async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response<ResponseBody>, Failure> {
    let client = client_auth::authenticate(shared, headers, form).await?;
    let token = form
        .get("token")
        .ok_or(Failure::invalid_request("token is required"))?;
    let may_see = |owner: &str| client.introspect_any || owner == client.id;
    let now = shared.clock.now();
    let answer = if token.split('.').count() == 3 {
        shared
            .verifier
            .verify(token)
            .ok()
            // The verifier's leeway is for clock skew between servers; this issuer's own clock
            // decides what has expired.
            .filter(|c| c.exp > now.as_secs() && may_see(&c.client_id))
            .map(|c| {
                let mut body = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": c.scope,
                    "client_id": c.client_id,
                    "sub": c.sub,
                    "iss": c.iss,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    "tenant": c.tenant(),
                    "roles": c.roles,
                });
                let aud = match &c.aud {
                    tollgate_core::Audience::One(a) => json!(a),
                    tollgate_core::Audience::Many(all) => json!(all),
                };
                body["aud"] = aud;
                body
            })
    } else {
        shared
            .live
            .refresh(&hash_refresh_token(token))
            .filter(|r| {
                !r.rotated
                    && r.expires_at > now
                    && may_see(&r.client_id)
                    && shared.index.check(&refresh_identity(r)).is_ok()
            })
            .map(|r| {
                json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": r.scope,
                    "client_id": r.client_id,
                    "sub": r.subject,
                    "iss": shared.issuer,
                    "exp": r.expires_at.as_secs(),
                    "iat": r.issued_at.as_secs(),
                    "tenant": r.tenant,
                })
            })
    };
    let body = answer.unwrap_or_else(|| json!({"active": false}));
    Ok(response::json::<Value>(StatusCode::OK, &body))
}
