//! `POST /connect/revocation` (RFC 7009): revoke an access token, or a refresh token with its
//! whole grant.
//!
//! `token_type_hint` needs no search order: the shape of a token tells a JWT from an opaque
//! refresh token, so a wrong or unknown hint changes nothing (RFC 7009 §2.1).

use crate::issuer::Issuer;
use crate::protocol::form::Form;
use crate::protocol::response::Failure;
use http::request::Parts;

/// Unknown, expired, already revoked or foreign tokens are a successful no-op (RFC 7009 §2.2);
/// another client's token is refused and left alone (§2.1).
pub(crate) async fn handle(issuer: &Issuer, request: &Parts, form: &Form) -> Result<(), Failure> {
    let client = issuer.clients.authenticate(request, form).await?;
    let token = form
        .get("token")
        .ok_or(Failure::invalid_request("token is required"))?;
    Ok(issuer.ledger.revoke(&client.id, token).await?)
}
