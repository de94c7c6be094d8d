//! `GET /.well-known/jwks.json`: the public keys of every `kid` still valid for verification.

use crate::issuer::Issuer;
use crate::protocol::response::{self, ResponseBody};
use http::Response;

/// The JWKS (never private or symmetric key material).
pub(crate) fn handle(issuer: &Issuer) -> Response<ResponseBody> {
    response::public_json(&issuer.ledger.keys().to_jwks())
}
