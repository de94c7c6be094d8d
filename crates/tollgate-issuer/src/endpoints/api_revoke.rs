//! `POST /api/id/v1/auth/token/revoke` (the Revoke Auth Token API): `/connect/revocation`'s
//! semantics, with a strict `token_type_hint` (alias `token_type`) and its own error shape.

use crate::issuer::Issuer;
use crate::protocol::form::Form;
use crate::protocol::response::Failure;
use http::request::Parts;

/// The hint, when given, must be `access_token` or `refresh_token`.
pub(crate) async fn handle(issuer: &Issuer, request: &Parts, form: &Form) -> Result<(), Failure> {
    let client = issuer.clients.authenticate(request, form).await?;
    let token = form
        .get("token")
        .ok_or(Failure::invalid_request("token is required"))?;
    let hint = match (form.get("token_type_hint"), form.get("token_type")) {
        (Some(_), Some(_)) => {
            return Err(Failure::invalid_request(
                "send token_type_hint or token_type, not both",
            ));
        }
        (Some(hint), None) | (None, Some(hint)) => Some(hint),
        (None, None) => None,
    };
    if hint.is_some_and(|h| h != "access_token" && h != "refresh_token") {
        return Err(Failure::invalid_request(
            "token_type_hint must be access_token or refresh_token",
        ));
    }
    Ok(issuer.ledger.revoke(&client.id, token).await?)
}
