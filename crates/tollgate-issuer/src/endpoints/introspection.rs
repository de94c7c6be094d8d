//! `POST /connect/introspect` (RFC 7662): whether a token is active, and what it is, for the
//! client it was issued to or a client allowed to introspect any token.

use crate::issuer::Issuer;
use crate::ledger::Found;
use crate::protocol::form::Form;
use crate::protocol::response::{self, Failure, ResponseBody};
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::{Audience, Confirmation};

/// Anything not active, or not the caller's to see, is exactly `{"active": false}`.
pub(crate) async fn handle(
    issuer: &Issuer,
    request: &Parts,
    form: &Form,
) -> Result<Response<ResponseBody>, Failure> {
    let client = issuer.clients.authenticate(request, form).await?;
    let token = form
        .get("token")
        .ok_or(Failure::invalid_request("token is required"))?;
    let ledger = &issuer.ledger;
    let now = ledger.now();
    let answer = ledger
        .find(token)
        .await?
        .filter(|found| client.introspect_any || found.client_id() == client.id)
        .and_then(|found| match found {
            // A validator's leeway is for clock skew between servers; this issuer's own clock
            // decides what has expired.
            Found::Access(c) if c.exp > now.as_secs() => Some(with_cnf(
                &c.cnf,
                json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": c.scope,
                    "client_id": c.client_id,
                    "sub": c.sub,
                    "iss": c.iss,
                    "aud": match &c.aud {
                        Audience::One(a) => json!(a),
                        Audience::Many(all) => json!(all),
                    },
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    "tenant": c.tenant(),
                    "roles": c.roles,
                }),
            )),
            // An exchanged refresh token is dead to everyone but reuse detection.
            Found::Refresh(r) if !r.rotated => Some(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": r.scope,
                "client_id": r.client_id,
                "sub": r.subject,
                "iss": ledger.issuer(),
                "exp": r.expires_at.as_secs(),
                "iat": r.issued_at.as_secs(),
                "tenant": r.tenant,
            })),
            _ => None,
        });
    let body = answer.unwrap_or_else(|| json!({"active": false}));
    Ok(response::json::<Value>(StatusCode::OK, &body))
}

/// RFC 8705 §3.2: the binding of a bound token, so that a resource server that introspects can
/// check it.
fn with_cnf(cnf: &Option<Confirmation>, mut answer: Value) -> Value {
    if let (Some(cnf), Some(fields)) = (cnf, answer.as_object_mut()) {
        fields.insert("cnf".to_owned(), json!(cnf));
    }
    answer
}
