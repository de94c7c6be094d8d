//! `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`: the
//! discovery metadata (RFC 8414, OpenID Connect Discovery), with endpoint URLs taken from the
//! routing table.

use super::{Endpoint, path};
use crate::issuer::Issuer;
use crate::protocol::response::{self, ResponseBody};
use http::Response;
use serde_json::json;

/// The discovery document (both paths serve the same one).
pub(crate) fn handle(issuer: &Issuer) -> Response<ResponseBody> {
    let ledger = &issuer.ledger;
    let base = ledger.issuer().trim_end_matches('/');
    let url = |endpoint| format!("{base}{}", path(endpoint));
    // Mutual TLS on the same endpoints (RFC 8705 §5: no `mtls_endpoint_aliases`).
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ];
    let algorithms: Vec<&str> = ledger
        .keys()
        .signing_key()
        .map(|k| vec![k.algorithm().as_str()])
        .unwrap_or_default();
    response::public_json(&json!({
        "issuer": ledger.issuer(),
        "token_endpoint": url(Endpoint::Token),
        "revocation_endpoint": url(Endpoint::Revocation),
        "introspection_endpoint": url(Endpoint::Introspection),
        "userinfo_endpoint": url(Endpoint::Userinfo),
        "jwks_uri": url(Endpoint::Jwks),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        // No authorization endpoint: no response type is supported.
        "response_types_supported": [],
        "scopes_supported": issuer.clients.scopes_supported(),
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "access_token_signing_alg_values_supported": algorithms,
        "subject_types_supported": ["public"],
        "tls_client_certificate_bound_access_tokens": true,
    }))
}
