//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, kept in the repository
//! (`crates/tollgate-issuer/openapi.json`) and checked against the routing table by a test.

use crate::protocol::response::{self, ResponseBody};
use bytes::Bytes;
use http::Response;

/// The description, as committed.
pub(crate) const DESCRIPTION: &str = include_str!("../../openapi.json");

/// The description, cacheable like the discovery documents.
pub(crate) fn handle() -> Response<ResponseBody> {
    response::public_json_bytes(Bytes::from_static(DESCRIPTION.as_bytes()))
}
