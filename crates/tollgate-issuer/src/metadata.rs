//! What the service publishes about itself and about a token's subject: discovery metadata
//! (RFC 8414, OpenID Connect Discovery), the JWKS, and `/connect/userinfo`.

use crate::issuer::Shared;
use crate::response::{self, ResponseBody};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::Claims;

/// Paths the service serves.
pub(crate) mod paths {
    pub(crate) const TOKEN: &str = "/connect/token";
    pub(crate) const REVOCATION: &str = "/connect/revocation";
    pub(crate) const INTROSPECTION: &str = "/connect/introspect";
    pub(crate) const USERINFO: &str = "/connect/userinfo";
    pub(crate) const JWKS: &str = "/.well-known/jwks.json";
    pub(crate) const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub(crate) const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
    pub(crate) const API_REVOKE: &str = "/api/id/v1/auth/token/revoke";
    pub(crate) const BATCH_REVOCATION: &str = "/api/v2/identity/token/batch-revocation";
}

/// The discovery document.
pub(crate) fn discovery(shared: &Shared) -> Value {
    let base = shared.issuer.trim_end_matches('/');
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    let algorithms: Vec<&str> = shared
        .keys
        .signing_key()
        .map(|k| vec![k.algorithm().as_str()])
        .unwrap_or_default();
    json!({
        "issuer": shared.issuer,
        "token_endpoint": format!("{base}{}", paths::TOKEN),
        "revocation_endpoint": format!("{base}{}", paths::REVOCATION),
        "introspection_endpoint": format!("{base}{}", paths::INTROSPECTION),
        "userinfo_endpoint": format!("{base}{}", paths::USERINFO),
        "jwks_uri": format!("{base}{}", paths::JWKS),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        // No authorization endpoint: no response type is supported.
        "response_types_supported": [],
        "scopes_supported": shared.clients.scopes_supported(),
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "access_token_signing_alg_values_supported": algorithms,
        "subject_types_supported": ["public"],
    })
}

/// The JWKS of every key still valid for verification.
pub(crate) fn jwks(shared: &Shared) -> Response<ResponseBody> {
    response::public_json(&shared.keys.to_jwks())
}

/// Who the (already verified) token is for: its subject, tenant and roles, and the user's
/// profile claims when the subject is a user.
pub(crate) async fn userinfo(shared: &Shared, claims: &Claims) -> Response<ResponseBody> {
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
    match shared.users.by_subject(&claims.sub).await {
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
