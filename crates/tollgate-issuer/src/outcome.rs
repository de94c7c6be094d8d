//! What a response of the [`TokenService`](crate::TokenService) did, carried in the response's
//! extensions, for a layer that measures the service from outside (metrics) without parsing
//! bodies or reaching into the service.
//!
//! The service sets them only on success; they cost one small allocation on the responses that
//! carry them and nothing on the others. Together with
//! [`TokenService::route`](crate::TokenService::route), which names the endpoint a request path
//! is served by, they are everything a metrics layer needs.
//!
//! # Example
//!
//! ```
//! use http::Response;
//! use tollgate_issuer::outcome::{BatchRevoked, TokenIssued};
//!
//! fn observe<B>(response: &Response<B>) {
//!     if let Some(issued) = response.extensions().get::<TokenIssued>() {
//!         println!("issued through {}", issued.grant.as_str());
//!     }
//!     if let Some(batch) = response.extensions().get::<BatchRevoked>() {
//!         println!("a batch revocation revoked {} tokens", batch.count);
//!     }
//! }
//! # observe(&Response::new(()));
//! ```

use crate::GrantType;

/// In the extensions of a `200` from `/connect/token`: the grant the tokens were issued through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenIssued {
    /// The grant of the request.
    pub grant: GrantType,
}

impl TokenIssued {
    /// What the service sets; public for services that stand in for it (tests, fakes).
    pub fn new(grant: GrantType) -> Self {
        TokenIssued { grant }
    }
}

/// In the extensions of a `200` from the batch revocation: the count it answered, the live
/// tokens it turned from accepted to refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchRevoked {
    /// The `count` of the answer.
    pub count: u64,
}

impl BatchRevoked {
    /// What the service sets; public for services that stand in for it (tests, fakes).
    pub fn new(count: u64) -> Self {
        BatchRevoked { count }
    }
}
