//! `GET`/`POST /connect/userinfo` (OpenID Connect Core §5.3), behind tollgate's own Layer: who
//! the verified token is for.

use crate::issuer::Issuer;
use crate::protocol::response::{self, ResponseBody};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::Claims;

/// The token's subject, tenant and roles, and the user's profile claims when the subject is a
/// user.
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
                map.insert("preferred_username".into(), json!(user.username));
                for (name, value) in &user.profile {
                    map.entry(name.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "user directory lookup failed for userinfo"),
    }
    response::json(StatusCode::OK, &body)
}
