//! `GET`/`POST /connect/userinfo` (OpenID Connect Core §5.3), behind tollgate's own Layer, which
//! accepts only this issuer's tokens for the service's own audiences and with the `openid` scope:
//! who the verified token is for, with the user's claims released by scope (§5.4).

use crate::issuer::Issuer;
use crate::protocol::response::{self, ResponseBody};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::Claims;

/// The token's subject, tenant and roles; for a user, the profile claims its scopes release.
pub(crate) async fn handle(issuer: &Issuer, claims: &Claims) -> Response<ResponseBody> {
    let mut body = json!({
        "sub": claims.sub,
        "tenant": claims.tenant(),
        "roles": claims.roles,
        "client_id": claims.client_id,
        "scope": claims.scope,
    });
    // A client-credentials token is about the client, never about a user who happens to share
    // its name.
    let about_a_client = claims.grant_id.is_none() && claims.sub == claims.client_id;
    if about_a_client {
        return response::json(StatusCode::OK, &body);
    }
    match issuer.users.user(&claims.sub).await {
        Ok(Some(user)) => {
            if let Value::Object(map) = &mut body {
                let granted = |scope: &str| claims.scopes().any(|s| s == scope);
                if granted("profile") {
                    map.insert("preferred_username".into(), json!(user.username));
                }
                for (name, value) in &user.profile {
                    if granted(scope_of(name)) {
                        map.entry(name.clone()).or_insert_with(|| value.clone());
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "user directory lookup failed for userinfo"),
    }
    response::json(StatusCode::OK, &body)
}

/// The scope that releases a profile claim (OpenID Connect Core §5.4); claims the standard does
/// not name are profile claims.
fn scope_of(claim: &str) -> &'static str {
    match claim {
        "email" | "email_verified" => "email",
        "phone_number" | "phone_number_verified" => "phone",
        "address" => "address",
        _ => "profile",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn standard_claims_are_released_by_their_scope() {
        assert_eq!(super::scope_of("email"), "email");
        assert_eq!(super::scope_of("email_verified"), "email");
        assert_eq!(super::scope_of("phone_number"), "phone");
        assert_eq!(super::scope_of("address"), "address");
        assert_eq!(super::scope_of("name"), "profile");
        assert_eq!(super::scope_of("department"), "profile");
    }
}
